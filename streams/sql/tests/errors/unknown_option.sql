-- error: 9:3: unknown option 'topik' for connector 'rocketmq'; did you mean 'topic'?
CREATE TABLE bids (
  auction BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topik' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction FROM bids;
