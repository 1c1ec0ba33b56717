-- IoT devices publish readings over MQTT (`<prefix>/<device>/telemetry`,
-- JSON: device, temp, humidity, ts); per device and minute of event time
-- this job reports how many readings came, the average and highest
-- temperature and the lowest humidity, once the minute is complete (the
-- watermark trails the newest reading by 2 s).
--
-- examples/iot-mqtt/run.sh runs it against the machine's Mosquitto.
SET 'pipeline.name' = 'iot-mqtt';
SET 'execution.checkpointing.interval' = '500 ms';
SET 'state.checkpoints.dir' = '${WORK}/checkpoints';

CREATE TABLE readings (
  device STRING,
  temp DOUBLE,
  humidity DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'mqtt',
  'url' = 'mqtt://127.0.0.1:1883',
  'topics' = '${PREFIX}/+/telemetry',
  'client-id' = '${CLIENT_ID}',
  'topic-pattern' = '${PREFIX}/{device}/{kind}',
  'key' = '{device}'
);

CREATE TABLE per_device_minute (
  device STRING,
  minute TIMESTAMP(3),
  readings BIGINT,
  avg_temp DOUBLE,
  max_temp DOUBLE,
  min_humidity DOUBLE
) WITH ('connector' = 'filesystem', 'path' = '${WORK}/out', 'format' = 'json');

INSERT INTO per_device_minute
SELECT device, window_start, COUNT(*), AVG(temp), MAX(temp), MIN(humidity)
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY device, window_start, window_end;
