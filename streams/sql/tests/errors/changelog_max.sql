-- error: 11:17: max(orders.amount) over a changelog would need every value kept to retract one
CREATE TABLE orders (id BIGINT, category STRING, amount DOUBLE) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'orders',
  'consumer-group' = 'g',
  'format' = 'debezium-json'
);
CREATE TABLE out (category STRING, top DOUBLE) WITH ('connector' = 'print');

INSERT INTO out SELECT category, MAX(amount) FROM orders GROUP BY category;
