-- Nexmark q3. Local item suggestion: sellers in Oregon, Idaho or California with an
-- auction in category 10 (a regular join; its state grows with both inputs).
--
-- rill run examples/nexmark/q3.sql     (rows go to a blackhole; `rill bench nexmark --sql` times it)

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

CREATE TABLE out (name STRING, city STRING, state STRING, id BIGINT) WITH ('connector' = 'blackhole');

INSERT INTO out
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
