-- Window top-N: the two highest bids of each 10 s window, with their rank
-- (bids at the same price share a rank).
-- explain: top 2 per window by price desc
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE bids (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-bids',
  'consumer-group' = 'sql-top-n',
  'scan.bounded' = 'true'
);

CREATE TABLE out (window_start TIMESTAMP(3), auction BIGINT, price BIGINT, rk BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT window_start, auction, price, rk FROM (
  SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rk
  FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
) WHERE rk <= 2;
