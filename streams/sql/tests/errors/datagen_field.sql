-- error: 2:1: option 'fields.nope.kind' names column 'nope', which is not a field of the table
CREATE TABLE t (a BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen', 'fields.nope.kind' = 'random');
CREATE TABLE out (a BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT a FROM t;
