-- Nested JSON: objects declared as ROW<…> are structs whose fields the
-- query reads; an object in a STRING column is its JSON text; a list is
-- an ARRAY. Nested columns pass whole to the sink as nested JSON.
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE devices (
  device ROW<id STRING, fw ROW<major INT, minor INT>>,
  reading STRING,
  tags ARRAY<STRING>,
  ts TIMESTAMP(3)
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-devices',
  'consumer-group' = 'sql-nested',
  'scan.bounded' = 'true'
);

CREATE TABLE out (id STRING, major INT, reading STRING, first_tag STRING, device ROW<id STRING, fw ROW<major INT, minor INT>>)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT device['id'], device['fw']['major'], reading, tags[1], device
FROM devices;
