-- An interval join: bids placed within 10 s after their auction opened.
-- Both tables have a column ts; the joined rows tell them apart by table.
-- explain: interval join on auction = id: left time - right time in [0 ms, 10000 ms]
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
  'consumer-group' = 'sql-interval-join',
  'scan.bounded' = 'true'
);

CREATE TABLE auctions (
  id BIGINT,
  seller BIGINT,
  category BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-auctions',
  'consumer-group' = 'sql-interval-join',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, category BIGINT, price BIGINT, opened TIMESTAMP(3), placed TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT B.auction, A.category, B.price, A.ts, B.ts
FROM bids AS B, auctions AS A
WHERE B.auction = A.id AND B.ts BETWEEN A.ts AND A.ts + INTERVAL '10' SECOND;
