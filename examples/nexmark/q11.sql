-- Nexmark q11. User sessions: bids per bidder session (a session ends after 10 s without a bid).
--
-- rill run examples/nexmark/q11.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3))
WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT bidder, COUNT(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
