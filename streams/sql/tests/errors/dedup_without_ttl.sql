-- error: 4:17: deduplication remembers keys for a while: SET 'table.exec.state.ttl'
CREATE TABLE clicks (user_id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'datagen');
CREATE TABLE out (user_id BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT user_id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts) AS rn FROM clicks) WHERE rn = 1;
