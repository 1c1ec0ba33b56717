-- Keep-last deduplication: each auction's latest bid by event time. The
-- result is a changelog (a later bid replaces the one kept: -U, +U; a bid
-- read late but older than the one kept changes nothing); applied in
-- order, it leaves one row per auction.
-- explain: dedup: last row per [auction]
-- changelog key: auction
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';
SET 'table.exec.state.ttl' = '1 h';

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
  'consumer-group' = 'sql-keep-last',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT auction, bidder, price, ts FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY ts DESC) AS rn FROM bids
) WHERE rn = 1;
