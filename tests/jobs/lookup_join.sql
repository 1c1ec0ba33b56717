-- Orders enriched with their customer from a MySQL table, read by key as
-- the table is when each order arrives (a lookup join, with a cache of
-- customers). Inner join: only orders of active customers, over 1.0.
-- Left join: every order, with its customer's name when there is one.
-- Two lookups in a row: every order of a known product with its price,
-- and its customer's name when there is one.
SET 'state.checkpoints.dir' = '${CHECKPOINTS}';

CREATE TABLE orders (
  id BIGINT,
  customer_id INT,
  amount DOUBLE,
  sku STRING,
  proc_time AS PROCTIME()
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${RILL_SERVER}',
  'topic' = 'lookup-orders',
  'consumer-group' = 'lookup-join',
  'scan.bounded' = 'true'
);

CREATE TABLE customers (
  id BIGINT,
  name STRING,
  tier STRING,
  active BOOLEAN,
  PRIMARY KEY (id) NOT ENFORCED
) WITH (
  'connector' = 'mysql',
  'url' = '${MYSQL_URL}',
  'table-name' = '${CUSTOMERS}',
  'lookup.cache' = 'PARTIAL',
  'lookup.partial-cache.max-rows' = '1000',
  'lookup.partial-cache.expire-after-write' = '10 min'
);

CREATE TABLE products (sku STRING, price DOUBLE) WITH (
  'connector' = 'mysql',
  'url' = '${MYSQL_URL}',
  'table-name' = '${PRODUCTS}'
);

CREATE TABLE enriched (id BIGINT, name STRING, tier STRING, amount DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/enriched');

CREATE TABLE all_orders (id BIGINT, customer_id INT, name STRING)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/all_orders');

CREATE TABLE priced (id BIGINT, name STRING, price DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/priced');

INSERT INTO enriched
SELECT o.id, c.name, c.tier, o.amount
FROM orders AS o
JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id AND c.active
WHERE o.amount > 1.0;

INSERT INTO all_orders
SELECT o.id, o.customer_id, c.name
FROM orders AS o
LEFT JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id;

INSERT INTO priced
SELECT o.id, c.name, p.price
FROM orders AS o
LEFT JOIN customers FOR SYSTEM_TIME AS OF o.proc_time AS c ON o.customer_id = c.id
JOIN products FOR SYSTEM_TIME AS OF o.proc_time AS p ON o.sku = p.sku;
