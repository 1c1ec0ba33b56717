-- A database table's changes read straight from its binlog (snapshot
-- first) → orders and revenue per category, kept up to date in a MySQL
-- table: the classic CDC → aggregate → upsert pipeline.
SET 'state.checkpoints.dir' = '${CHECKPOINTS}';
SET 'execution.checkpointing.interval' = '300 ms';

CREATE TABLE orders (
  id BIGINT NOT NULL,
  category STRING,
  amount DECIMAL(10, 2),
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'mysql-cdc',
  'hostname' = '127.0.0.1',
  'port' = '${MYSQL_PORT}',
  'username' = 'root',
  'database-name' = 'shop',
  'table-name' = 'orders'
);

CREATE TABLE per_category (category STRING, orders BIGINT, revenue DECIMAL(20, 2), PRIMARY KEY (category) NOT ENFORCED)
WITH (
  'connector' = 'mysql',
  'url' = 'mysql://root@127.0.0.1:${MYSQL_PORT}/report',
  'table-name' = 'per_category',
  'sink.auto-create' = 'true'
);

INSERT INTO per_category
SELECT category, COUNT(*), SUM(amount) FROM orders GROUP BY category;
