-- Nexmark q4. Average closing price per category: the highest bid of each auction
-- while it is open (an interval join: auctions last at most 20 s), final
-- when the auction expires, then a running average per category (updates).
--
-- rill run examples/nexmark/q4.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

CREATE TABLE auction (
  id BIGINT NOT NULL,
  item_name STRING NOT NULL,
  description STRING NOT NULL,
  initial_bid BIGINT NOT NULL,
  reserve BIGINT NOT NULL,
  date_time TIMESTAMP(3) NOT NULL,
  expires TIMESTAMP(3) NOT NULL,
  seller BIGINT NOT NULL,
  category BIGINT NOT NULL,
  extra STRING NOT NULL,
  WATERMARK FOR date_time AS date_time
) WITH ('connector' = 'nexmark', 'kind' = 'auction', 'events' = '1000000');

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

CREATE TABLE out (category BIGINT, avg_final DOUBLE) WITH ('connector' = 'blackhole');

CREATE VIEW open_bids AS
SELECT A.id, A.category, A.expires, B.price
FROM auction AS A JOIN bid AS B
  ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.date_time + INTERVAL '20' SECOND
WHERE B.date_time <= A.expires;

-- One closing price per auction, when event time passes its expiry
-- (window_time carries event time on to the average).
CREATE VIEW closing AS
SELECT id, category, MAX(price) AS final, window_time
FROM TABLE(TUMBLE(TABLE open_bids, DESCRIPTOR(expires), INTERVAL '1' MILLISECOND))
GROUP BY id, category, window_start, window_end, window_time;

INSERT INTO out SELECT category, AVG(final) AS avg_final FROM closing GROUP BY category;
