-- Nexmark q5. Hot items: the auctions with the most bids in 10 s windows every 2 s.
--
-- rill run examples/nexmark/q5.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (auction BIGINT, num BIGINT, window_start TIMESTAMP(3)) WITH ('connector' = 'blackhole');

CREATE VIEW counts AS
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;

INSERT INTO out
SELECT auction, num, window_start FROM (
  SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rk FROM counts
) WHERE rk <= 1;
