-- A GROUP BY without a window: a running count and top price per auction,
-- updated as event time moves (an upsert stream keyed by auction). The file
-- sink appends each update; the latest row per auction is the result.
-- explain: running aggregate (updates per key), keys [auction]
-- upsert key: auction
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
  'consumer-group' = 'sql-running',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, bids BIGINT, top BIGINT) WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out SELECT auction, COUNT(*), MAX(price) FROM bids GROUP BY auction;
