-- error: 2:5: unknown setting 'parallelism'; did you mean 'parallelism.default'?
SET 'parallelism' = '2';
CREATE TABLE out (auction BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT 1;
