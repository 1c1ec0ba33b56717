-- Front-end monitoring: browsers send a beacon per page view (JSON: page,
-- latency_ms, status, country, ts) to the topic `beacons`; per page and
-- minute of event time this job reports the views, the 95th percentile of
-- the latency and the server errors, once the minute is complete (the
-- watermark trails the newest beacon by 5 s, so a beacon up to 5 s late
-- still counts).
--
-- examples/frontend-monitoring/run-from-topic.sh runs it on a broker of its own
-- (run.sh runs http-job.sql: the same metrics from beacons over HTTP).
SET 'pipeline.name' = 'frontend-monitoring';

CREATE TABLE beacons (
  page STRING,
  latency_ms BIGINT,
  status INT,
  country STRING,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${RILL_SERVER:-127.0.0.1:8081}',
  'topic' = 'beacons',
  'consumer-group' = 'frontend-monitoring',
  'scan.startup.mode' = 'earliest',
  'scan.bounded' = '${RILL_BOUNDED:-true}'
);

CREATE TABLE page_stats (
  page STRING,
  minute TIMESTAMP(3),
  views BIGINT,
  p95_latency_ms DOUBLE,
  errors BIGINT
) WITH ('connector' = 'print');

INSERT INTO page_stats
SELECT
  page,
  window_start,
  COUNT(*),
  APPROX_PERCENTILE_CONT(latency_ms, 0.95),
  SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END)
FROM TABLE(TUMBLE(TABLE beacons, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY page, window_start, window_end;
