-- Orders straight from MariaDB's binlog (a snapshot first), enriched with
-- their total and a size band, indexed for search one document per order,
-- and summed per country into a MySQL table — both kept up to date as rows
-- change: an update replaces the order's document and moves its country's
-- sums, a delete or a cancellation takes it out of both.
SET 'state.checkpoints.dir' = '${CHECKPOINTS}';
SET 'execution.checkpointing.interval' = '500 ms';

CREATE TABLE orders (
  id BIGINT NOT NULL,
  customer STRING,
  country STRING,
  product STRING,
  quantity INT,
  unit_price DECIMAL(10, 2),
  status STRING,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'mysql-cdc',
  'hostname' = '127.0.0.1',
  'port' = '${MYSQL_PORT}',
  'username' = 'root',
  'database-name' = 'shop',
  'table-name' = 'orders'
);

CREATE TABLE orders_index (
  id BIGINT, customer STRING, country STRING, product STRING, quantity INT,
  total DECIMAL(20, 2), size STRING, status STRING,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'elasticsearch',
  'hosts' = '${ES_URL}',
  'index' = 'orders',
  'sink.bulk-flush.interval' = '200 ms'
);

CREATE TABLE revenue_by_country (
  country STRING, orders BIGINT, revenue DECIMAL(30, 2), large_orders BIGINT,
  PRIMARY KEY (country) NOT ENFORCED
) WITH (
  'connector' = 'mysql',
  'url' = 'mysql://root@127.0.0.1:${MYSQL_PORT}/report',
  'table-name' = 'revenue_by_country',
  'sink.auto-create' = 'true'
);

-- Each order with its total and size band (a view: both outputs read it).
CREATE VIEW enriched AS
SELECT id, customer, UPPER(country) AS country, product, quantity,
       quantity * unit_price AS total,
       CASE WHEN quantity * unit_price >= 100 THEN 'large'
            WHEN quantity * unit_price >= 20 THEN 'medium'
            ELSE 'small' END AS size,
       status
FROM orders;

INSERT INTO orders_index SELECT * FROM enriched;

INSERT INTO revenue_by_country
SELECT country, COUNT(*), SUM(total), SUM(CASE WHEN size = 'large' THEN 1 ELSE 0 END)
FROM enriched
WHERE status <> 'cancelled'
GROUP BY country;
