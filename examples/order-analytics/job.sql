-- Order analytics: shops send each order (JSON: order_id, customer,
-- amount, ts) to the topic `orders`, tagged with its category. Revenue and
-- order count per category and 5 minutes of event time, for the categories
-- this team owns. The condition on the tag is pushed into the broker
-- subscription (`books || games || music`): the broker does not even send
-- the other orders (see `rill run --explain`).
--
-- examples/order-analytics/run.sh runs it on a broker of its own.
SET 'pipeline.name' = 'order-analytics';

CREATE TABLE orders (
  order_id BIGINT,
  customer STRING,
  amount DOUBLE,
  ts TIMESTAMP(3),
  category STRING METADATA FROM 'tag',
  WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${RILL_SERVER:-127.0.0.1:8081}',
  'topic' = 'orders',
  'consumer-group' = 'order-analytics',
  'scan.startup.mode' = 'earliest',
  'scan.bounded' = '${RILL_BOUNDED:-true}'
);

CREATE TABLE revenue (
  category STRING,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  orders BIGINT,
  revenue DOUBLE,
  customers BIGINT
) WITH ('connector' = 'print');

INSERT INTO revenue
SELECT category, window_start, window_end, COUNT(*), ROUND(SUM(amount), 2), COUNT(DISTINCT customer)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '5' MINUTE))
WHERE category IN ('books', 'games', 'music')
GROUP BY category, window_start, window_end;
