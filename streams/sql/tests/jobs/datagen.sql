-- A datagen source: 50 rows, one per millisecond of event time from a fixed
-- instant, n counting 1, 2, …; values depend only on the row's number, so
-- every run (and every restart) makes the same rows. Windows of 10 ms hold
-- 10 rows each: sums 55, 155, 255, 355, 455.
-- explain: source clicks: datagen (bounded), event time ts
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

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

CREATE TABLE out (window_start TIMESTAMP(3), clicks BIGINT, total BIGINT, users BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT window_start, COUNT(*), SUM(n), COUNT(DISTINCT user_id)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' MILLISECOND))
GROUP BY window_start, window_end;
