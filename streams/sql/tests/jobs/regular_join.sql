-- A regular join: every bid with its auction's seller and category. The
-- filter on the auctions runs before the join; the one on both sides after.
-- explain: join on auction = id (state grows with both inputs)
-- explain: filter: category = Int64(10)
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
  'consumer-group' = 'sql-regular-join',
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
  'consumer-group' = 'sql-regular-join',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, seller BIGINT, bidder BIGINT, price BIGINT) WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT B.auction, A.seller, B.bidder, B.price
FROM bids AS B JOIN auctions AS A ON B.auction = A.id
WHERE A.category = 10 AND B.price > A.seller - 80;
