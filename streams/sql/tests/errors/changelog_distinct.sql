-- error: 11:17: count(DISTINCT orders.amount) over a changelog is not supported yet
CREATE TABLE orders (id BIGINT, category STRING, amount DOUBLE) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'orders',
  'consumer-group' = 'g',
  'format' = 'debezium-json'
);
CREATE TABLE out (category STRING, kinds BIGINT) WITH ('connector' = 'print');

INSERT INTO out SELECT category, COUNT(DISTINCT amount) FROM orders GROUP BY category;
