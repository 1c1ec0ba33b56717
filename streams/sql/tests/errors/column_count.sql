-- error: 9:13: out takes 1 column (auction); the query gives 2
CREATE TABLE bids (auction BIGINT, price BIGINT) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction, price FROM bids;
