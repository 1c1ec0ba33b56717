-- error: 2:5: variable NOPE in '${NOPE}/checkpoints' is not set
SET 'state.checkpoints.dir' = '${NOPE}/checkpoints';
CREATE TABLE gen (n BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen');
CREATE TABLE out (n BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT n FROM gen;
