-- Front-end monitoring over HTTP: browsers send a beacon per page view
-- (JSON: page, latency_ms, status, country, ts) to the HTTP ingest source
-- (page/index.html shows how, with navigator.sendBeacon); per page and
-- minute of event time this job writes the views, the 95th percentile of
-- the latency and the server errors into a MySQL table (upserts by page
-- and minute) and a Parquet lake partitioned by day and hour.
--
-- examples/frontend-monitoring/run.sh runs it with a MariaDB of its own.
SET 'pipeline.name' = 'frontend-monitoring-http';
SET 'execution.checkpointing.interval' = '500 ms';
SET 'state.checkpoints.dir' = '${WORK}/checkpoints';

CREATE TABLE beacons (
  page STRING,
  latency_ms BIGINT,
  status INT,
  country STRING,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'http',
  'listen' = '${HTTP_LISTEN}',
  'token' = '${BEACON_TOKEN}',
  'topics' = 'beacons',
  'cors.allowed-origins' = '*',
  -- Browsers do not wait for a beacon's answer: queued is enough.
  'ack' = 'immediate'
);

CREATE VIEW page_minutes AS
SELECT
  page,
  window_start AS minute,
  COUNT(*) AS views,
  APPROX_PERCENTILE_CONT(latency_ms, 0.95) AS p95_latency_ms,
  SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors
FROM TABLE(TUMBLE(TABLE beacons, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY page, window_start, window_end;

CREATE TABLE page_stats (
  page STRING,
  minute TIMESTAMP(3),
  views BIGINT,
  p95_latency_ms DOUBLE,
  errors BIGINT,
  PRIMARY KEY (page, minute) NOT ENFORCED
) WITH (
  'connector' = 'mysql',
  'url' = 'mysql://root@127.0.0.1:${MYSQL_PORT}/report',
  'table-name' = 'page_stats',
  'sink.auto-create' = 'true'
);

CREATE TABLE lake (
  page STRING,
  minute TIMESTAMP(3),
  views BIGINT,
  p95_latency_ms DOUBLE,
  errors BIGINT
) WITH (
  'connector' = 'parquet',
  'path' = '${WORK}/lake',
  'partition.time-column' = 'minute'
);

INSERT INTO page_stats SELECT * FROM page_minutes;

INSERT INTO lake SELECT * FROM page_minutes;
