-- A message property as a column, and predicates on it and on the tag
-- pushed into the broker subscription as one SQL92 filter.
-- explain: pushed down: SQL92 'TAGS IN ('web') AND (region IN ('eu', 'apac'))'
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE bids (
  auction BIGINT,
  price BIGINT,
  channel STRING METADATA FROM 'tag',
  region STRING METADATA FROM 'properties.region'
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-bids',
  'consumer-group' = 'sql-properties',
  'scan.bounded' = 'true'
);

CREATE TABLE out (auction BIGINT, price BIGINT, region STRING) WITH (
  'connector' = 'filesystem',
  'path' = '${OUT}/out'
);

INSERT INTO out
SELECT auction, price, region FROM bids WHERE region IN ('eu', 'apac') AND channel = 'web';
