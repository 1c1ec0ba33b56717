-- Nexmark q1. Currency conversion: bid prices from dollars to euros.
--
-- rill run examples/nexmark/q1.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (auction BIGINT, bidder BIGINT, price DOUBLE, date_time TIMESTAMP(3), extra STRING)
WITH ('connector' = 'blackhole');

INSERT INTO out SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid;
