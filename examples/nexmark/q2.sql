-- Nexmark q2. Selection: the bids on every 123rd auction.
--
-- rill run examples/nexmark/q2.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');

INSERT INTO out SELECT auction, price FROM bid WHERE auction % 123 = 0;
