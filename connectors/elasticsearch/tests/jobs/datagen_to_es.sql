-- 50 generated clicks indexed by the day of their event time, and a count
-- per user kept up to date in a second index (a changelog: each user's
-- document is replaced as the count moves, by id = user_id).
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

CREATE TABLE click_index (user_id BIGINT, n BIGINT, ts TIMESTAMP(3), PRIMARY KEY (n) NOT ENFORCED)
WITH ('connector' = 'elasticsearch', 'hosts' = '${ES}', 'index' = 'clicks-{ts|yyyy.MM.dd}');

CREATE TABLE per_user (user_id BIGINT, clicks BIGINT, last_n BIGINT, PRIMARY KEY (user_id) NOT ENFORCED)
WITH ('connector' = 'opensearch', 'hosts' = '${ES}', 'index' = 'per-user', 'sink.bulk-flush.max-actions' = '7');

INSERT INTO click_index SELECT user_id, n, ts FROM clicks;

INSERT INTO per_user SELECT user_id, COUNT(*), MAX(n) FROM clicks GROUP BY user_id;
