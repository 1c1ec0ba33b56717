-- error: 9:17: a GROUP BY without a window updates its results as event time moves
CREATE TABLE bids (auction BIGINT, price BIGINT) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction, COUNT(*) FROM bids GROUP BY auction;
