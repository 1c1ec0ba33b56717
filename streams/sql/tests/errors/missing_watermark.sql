-- error: 10:6: DESCRIPTOR(ts): 'ts' is not a time attribute of 'bids'; declare WATERMARK FOR ts
CREATE TABLE bids (auction BIGINT, ts TIMESTAMP(3)) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction, COUNT(*)
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY auction, window_start, window_end;
