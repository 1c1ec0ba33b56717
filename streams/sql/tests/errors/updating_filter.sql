-- error: 10:1: filtering an updating result (a GROUP BY without a window) needs retractions
CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'bids',
  'consumer-group' = 'g'
);
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'print');
INSERT INTO out
SELECT auction, COUNT(*) FROM bids GROUP BY auction HAVING COUNT(*) > 2;
