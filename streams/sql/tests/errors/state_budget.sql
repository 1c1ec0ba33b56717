-- error: 2:5: 'rill.state.memory-budget' = 'plenty' is not a size (e.g. '64mb')
SET 'rill.state.memory-budget' = 'plenty';
CREATE TABLE bids (
  auction BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY auction, window_start, window_end;
