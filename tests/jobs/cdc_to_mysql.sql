-- Change events of an orders table (Debezium JSON) → orders and revenue
-- per category, kept up to date in a MySQL table: inserts, updates that
-- move an order between categories, deletes, and a category whose last
-- order goes is deleted from the table.
SET 'state.checkpoints.dir' = '${CHECKPOINTS}';

CREATE TABLE orders (
  id BIGINT NOT NULL,
  category STRING,
  amount DOUBLE,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${RILL_SERVER}',
  'topic' = 'cdc-orders',
  'consumer-group' = 'cdc-to-mysql',
  'format' = 'debezium-json',
  'scan.bounded' = 'true'
);

CREATE TABLE per_category (category STRING, orders BIGINT, revenue DOUBLE, PRIMARY KEY (category) NOT ENFORCED)
WITH (
  'connector' = 'mysql',
  'url' = '${MYSQL_URL}',
  'table-name' = '${MYSQL_TABLE}',
  'sink.auto-create' = 'true'
);

INSERT INTO per_category
SELECT category, COUNT(*), SUM(amount) FROM orders WHERE amount < 100 GROUP BY category;
