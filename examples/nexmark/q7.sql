-- Nexmark q7. Highest bid: the bids at the highest price of each 10 s window.
--
-- rill run examples/nexmark/q7.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

CREATE TABLE bid (
  auction BIGINT NOT NULL,
  bidder BIGINT NOT NULL,
  price BIGINT NOT NULL,
  channel STRING NOT NULL,
  url STRING NOT NULL,
  date_time TIMESTAMP(3) NOT NULL,
  extra STRING NOT NULL,
  WATERMARK FOR date_time AS date_time
) WITH ('connector' = 'nexmark', 'kind' = 'bid', 'events' = '1000000');

CREATE TABLE out (auction BIGINT, price BIGINT, bidder BIGINT, date_time TIMESTAMP(3), window_start TIMESTAMP(3))
WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT auction, price, bidder, date_time, window_start FROM (
  SELECT auction, price, bidder, date_time, window_start,
         RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rk
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
) WHERE rk <= 1;
