-- Tumbling windows of 10 s per auction, a watermark 5 s behind. The bid
-- at …03 s is read after later bids of its queue, but before event time
-- passes the end of its window, so it counts.
SET 'state.checkpoints.dir' = '${OUT}/checkpoints';

CREATE TABLE bids (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'rocketmq',
  'endpoints' = '${BROKER}',
  'topic' = 'sql-bids',
  'consumer-group' = 'sql-tumble',
  'scan.bounded' = 'true'
);

CREATE TABLE out (
  auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, top BIGINT, total BIGINT
) WITH ('connector' = 'filesystem', 'path' = '${OUT}/out');

INSERT INTO out
SELECT auction, window_start, window_end, COUNT(*), MAX(price), SUM(price)
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
