-- Filters, projections, scalar functions and CASE over a topic; the tag
-- predicate goes into the broker subscription.
-- explain: pushed down: tag 'app || web'
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE bids (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ts TIMESTAMP(3),
  channel STRING METADATA FROM 'tag'
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-bids',
  'consumer-group' = 'sql-filter-project',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, cents BIGINT, channel STRING, expensive BOOLEAN) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT}/out'
);

INSERT INTO out
SELECT auction, price * 100, UPPER(channel), CASE WHEN price > 100 THEN true ELSE false END
FROM bids
WHERE price > 10 AND channel IN ('web', 'app');
