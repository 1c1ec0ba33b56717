-- Nexmark q0. Pass-through: every bid as it is (the cost of reading and writing).
--
-- rill run examples/nexmark/q0.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra STRING)
WITH ('connector' = 'blackhole');

INSERT INTO out SELECT auction, bidder, price, date_time, extra FROM bid;
