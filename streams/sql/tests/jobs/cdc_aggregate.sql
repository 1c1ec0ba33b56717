-- A CDC changelog (Debezium JSON: inserts, updates, deletes of an orders
-- table) aggregated per category with retractions: an order that changes
-- category leaves one group and joins another, a deleted one leaves, and a
-- category whose last order goes is deleted. The sink writes the result's
-- changelog (`__op`); applied in order it must leave the table below.
-- explain: changelog aggregate (retractions), keys [category]
-- changelog key: category
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE orders (
  id BIGINT NOT NULL,
  category STRING,
  amount DOUBLE,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-cdc-orders',
  'consumer-group' = 'sql-cdc',
  'format' = 'debezium-json',
  'scan.bounded' = 'true'
);

CREATE TABLE per_category (
  category STRING, orders BIGINT, revenue DOUBLE, biggest DOUBLE, PRIMARY KEY (category) NOT ENFORCED
)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO per_category
SELECT category, COUNT(*), SUM(amount), MAX(amount) FROM orders WHERE amount < 100 GROUP BY category;
