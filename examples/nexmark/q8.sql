-- Nexmark q8. Monitor new users: people who opened an auction in the same 10 s
-- window they joined in (a window join).
--
-- rill run examples/nexmark/q8.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

CREATE TABLE person (
  id BIGINT NOT NULL,
  name STRING NOT NULL,
  email_address STRING NOT NULL,
  credit_card STRING NOT NULL,
  city STRING NOT NULL,
  state STRING NOT NULL,
  date_time TIMESTAMP(3) NOT NULL,
  extra STRING NOT NULL,
  WATERMARK FOR date_time AS date_time
) WITH ('connector' = 'nexmark', 'kind' = 'person', 'events' = '1000000');

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

CREATE TABLE out (id BIGINT, name STRING, starttime TIMESTAMP(3)) WITH ('connector' = 'blackhole');

CREATE VIEW new_people AS
SELECT id, name, window_start, window_end
FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY id, name, window_start, window_end;

CREATE VIEW sellers AS
SELECT seller, window_start, window_end
FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY seller, window_start, window_end;

INSERT INTO out
SELECT P.id, P.name, P.window_start
FROM new_people AS P JOIN sellers AS A
  ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end;
