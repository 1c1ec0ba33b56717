-- error: 2:56: table 'bids' is read from, and connector 'kafka' cannot be; connectors that can: datagen, rocketmq
CREATE TABLE bids (auction BIGINT, price BIGINT) WITH ('connector' = 'kafka');
CREATE TABLE out (auction BIGINT) WITH ('connector' = 'print');
INSERT INTO out SELECT auction FROM bids;
