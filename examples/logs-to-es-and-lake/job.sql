-- Application logs → parsed (a stack trace stays with its error line) →
-- warnings and errors into a search index per day, every line into a
-- Parquet lake partitioned by service and hour.
--
-- examples/logs-to-es-and-lake/run.sh runs it with a log writer that
-- rotates its files while the job follows them.
SET 'pipeline.name' = 'logs-to-es-and-lake';
SET 'execution.checkpointing.interval' = '500 ms';
SET 'state.checkpoints.dir' = '${WORK}/checkpoints';

CREATE TABLE app_logs (
  ts TIMESTAMP(3),
  level STRING,
  service STRING,
  msg STRING,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'file-tail',
  'path' = '${LOG_DIR}/app.log*',
  'tag' = 'app',
  'multiline.pattern' = '^\d{4}-\d{2}-\d{2}T',
  'parse' = 'regex',
  'parse.pattern' = '(?s)^(?P<ts>\S+) (?P<level>[A-Z]+) \[(?P<service>[a-z]+)\] (?P<msg>.*)$'
);

CREATE TABLE problems (
  ts TIMESTAMP(3),
  level STRING,
  service STRING,
  msg STRING
) WITH (
  'connector' = 'elasticsearch',
  'hosts' = '${ES_URL}',
  'index' = 'logs-{ts|yyyy.MM.dd}',
  'sink.bulk-flush.interval' = '200 ms'
);

CREATE TABLE lake (
  ts TIMESTAMP(3),
  level STRING,
  service STRING,
  msg STRING
) WITH (
  'connector' = 'parquet',
  'path' = '${WORK}/lake',
  'partition.fields' = 'service',
  'partition.time-column' = 'ts'
);

INSERT INTO problems SELECT ts, level, service, msg FROM app_logs WHERE level IN ('WARN', 'ERROR');

INSERT INTO lake SELECT ts, level, service, msg FROM app_logs;
