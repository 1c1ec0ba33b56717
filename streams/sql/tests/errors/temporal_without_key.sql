-- error: 15:65: a table read FOR SYSTEM_TIME AS OF is versioned by its key: declare PRIMARY KEY
CREATE TABLE orders (id BIGINT, currency STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'orders',
  'consumer-group' = 'g'
);
CREATE TABLE rates (currency STRING, rate DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '127.0.0.1:8081',
  'topic' = 'rates',
  'consumer-group' = 'g'
);
CREATE TABLE out (id BIGINT, rate DOUBLE) WITH ('connector' = 'print');
INSERT INTO out SELECT o.id, r.rate FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r
  ON o.currency = r.currency;
