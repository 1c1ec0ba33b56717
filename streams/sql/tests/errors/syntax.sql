-- error: 2:35: expected ','
CREATE TABLE bids (auction BIGINT price BIGINT) WITH ('connector' = 'rocketmq');
