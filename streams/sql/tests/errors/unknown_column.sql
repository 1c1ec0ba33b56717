-- error: 9:33: pric
CREATE TABLE bids (auction BIGINT, price BIGINT) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction, pric FROM bids;
