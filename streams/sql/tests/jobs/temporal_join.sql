-- An event-time temporal join: each order priced with the exchange rate
-- its currency had at the order's time (rates are versioned by currency;
-- each message is a new version). An order waits until event time passes
-- it, so a rate published later in processing but earlier in event time
-- still applies; an order whose currency has no rate yet is dropped.
-- explain: temporal join with rates as of ts (event time) on o.currency = r.currency
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE orders (
  id BIGINT,
  currency STRING,
  amount DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-orders',
  'consumer-group' = 'sql-temporal',
  'scan.bounded' = 'true'
);

CREATE TABLE rates (
  currency STRING,
  rate DOUBLE,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND,
  PRIMARY KEY (currency) NOT ENFORCED
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-rates',
  'consumer-group' = 'sql-temporal',
  'scan.bounded' = 'true'
);

CREATE TABLE out (id BIGINT, currency STRING, amount DOUBLE, rate DOUBLE, priced DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT o.id, o.currency, o.amount, r.rate, o.amount * r.rate
FROM orders AS o
JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency;
