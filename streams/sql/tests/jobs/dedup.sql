-- Deduplication: each user's first click (in event time, which datagen
-- makes in row order), the user remembered for an hour of event time.
-- explain: dedup: first row per [user_id]
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';
SET 'table.exec.state.ttl' = '1 h';

CREATE TABLE clicks (
  user_id BIGINT,
  n BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' MILLISECOND
) WITH (
  'connector' = 'datagen',
  'rows-per-second' = '1000',
  'number-of-rows' = '50',
  'fields.user_id.kind' = 'random',
  'fields.user_id.min' = '1',
  'fields.user_id.max' = '3',
  'fields.n.kind' = 'sequence',
  'fields.n.start' = '1',
  'fields.ts.start' = '1700000000000'
);

CREATE TABLE out (user_id BIGINT, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT user_id, n FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts ASC) AS rn FROM clicks
) WHERE rn = 1;
