-- Three window kinds in one job, each INSERT to its own sink: hopping
-- windows (10 s every 5 s) over all bids, cumulating windows (5 s steps
-- up to 20 s) per auction, and sessions per bidder with a 4 s gap, each
-- step within the smallest state budget (groups past it would spill).
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';
SET 'rill.state.memory-budget' = '4kb';
SET 'rill.state.spill-dir' = '${OUT}/spill';

CREATE TABLE bids (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-bids',
  'consumer-group' = 'sql-hop-cumulate-session',
  'scan.bounded' = 'true'
);

CREATE TABLE out (kind STRING, k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), v BIGINT)
WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

CREATE VIEW priced AS SELECT auction, bidder, price, ts FROM bids WHERE price >= 10;

INSERT INTO out
SELECT 'hop-avg', CAST(0 AS BIGINT), window_start, window_end, CAST(AVG(price) AS BIGINT)
FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end;

INSERT INTO out
SELECT 'cumulate-max', auction, window_start, window_end, MAX(price)
FROM TABLE(CUMULATE(TABLE priced, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND))
GROUP BY auction, window_start, window_end;

INSERT INTO out
SELECT 'session-count', bidder, window_start, window_end, COUNT(DISTINCT auction)
FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '4' SECOND))
GROUP BY bidder, window_start, window_end;
