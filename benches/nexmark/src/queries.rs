//! The Nexmark queries, each twice: as a streaming job in the Rust DSL and
//! as a batch SQL query (the oracle) over the same rows, returning the same
//! columns.
//!
//! | query | what it asks | operators |
//! | --- | --- | --- |
//! | q0 | pass bids through | projection |
//! | q1 | bid prices in euros | projection with arithmetic |
//! | q2 | bids on some auctions | filter |
//! | q3 | sellers in OR/ID/CA with an auction in category 10 | regular join |
//! | q4 | average closing price per category | interval join, per-auction max when it closes, running average (upserts) |
//! | q5 | hottest auctions: most bids in 10 s windows every 2 s | hopping count, top-1 per window |
//! | q7 | highest bid every 10 s | tumbling top-1 |
//! | q8 | people who opened an auction in the 10 s they joined | tumbling aggregates, join on window |
//! | q11 | bids per bidder session (10 s gap) | session windows |

use std::time::Duration;

use datafusion::prelude::{col, lit};
use rill_streams::dsl::{Global, Hopping, Job, Session, Stream, Tumbling};

use crate::generator::MAX_AUCTION_MS;
use rill_streams::{TopicInput, agg};

use crate::generator::{auction_schema, bid_schema, person_schema};

/// A Nexmark query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (join).
    Q3,
    /// Average price per category (closing prices, running average).
    Q4,
    /// Hot items (hopping windows, top-1).
    Q5,
    /// Highest bid (tumbling top-1).
    Q7,
    /// Monitor new users (windowed join).
    Q8,
    /// User sessions.
    Q11,
}

impl Query {
    /// Every implemented query.
    pub const ALL: [Query; 9] =
        [Query::Q0, Query::Q1, Query::Q2, Query::Q3, Query::Q4, Query::Q5, Query::Q7, Query::Q8, Query::Q11];

    /// The query by name (`q5`).
    pub fn parse(name: &str) -> Option<Query> {
        Self::ALL.into_iter().find(|q| q.name().eq_ignore_ascii_case(name))
    }

    /// Its name (`q5`).
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q11 => "q11",
        }
    }

    /// Columns of the key its results are upserts by (the latest row per
    /// key is the result), for queries whose results are updated.
    pub fn upsert_key(self) -> Option<&'static [usize]> {
        match self {
            Query::Q4 => Some(&[0]),
            _ => None,
        }
    }

    /// Whether it keeps state (windows or joins).
    pub fn is_stateful(self) -> bool {
        !matches!(self, Query::Q0 | Query::Q1 | Query::Q2)
    }

    /// Builds the streaming job on `job` with sources fed by pushing
    /// batches; the returned stream carries the results.
    pub fn build(self, job: &Job) -> Stream {
        self.build_with(&mut |name| {
            let schema = match name {
                "person" => person_schema(),
                "auction" => auction_schema(),
                _ => bid_schema(),
            };
            job.source(name, schema, "date_time")
        })
    }

    /// Builds the streaming job on `job` reading broker topics: `inputs`
    /// feed the sources of the same name (see [`crate::broker::inputs`]).
    pub fn build_on(self, job: &Job, inputs: Vec<TopicInput>) -> Stream {
        let mut inputs: Vec<Option<TopicInput>> = inputs.into_iter().map(Some).collect();
        self.build_with(&mut |name| {
            let input = inputs.iter_mut().find(|i| i.as_ref().is_some_and(|i| i.source == name)).and_then(Option::take);
            match input {
                Some(input) => job.topic(input),
                None => job.source(name, bid_schema(), "date_time"),
            }
        })
    }

    fn build_with(self, source: &mut dyn FnMut(&str) -> Stream) -> Stream {
        let ten = Duration::from_secs(10);
        match self {
            Query::Q0 => {
                source("bid").select(vec![col("auction"), col("bidder"), col("price"), col("date_time"), col("extra")])
            }
            Query::Q1 => source("bid").select(vec![
                col("auction"),
                col("bidder"),
                (lit(0.908) * col("price")).alias("price"),
                col("date_time"),
                col("extra"),
            ]),
            Query::Q2 => {
                source("bid").filter((col("auction") % lit(123)).eq(lit(0))).select(vec![col("auction"), col("price")])
            }
            Query::Q3 => {
                let sellers = source("person")
                    .filter(col("state").in_list(vec![lit("OR"), lit("ID"), lit("CA")], false))
                    .select(vec![col("id").alias("person_id"), col("name"), col("city"), col("state")]);
                source("auction")
                    .filter(col("category").eq(lit(10)))
                    .select(vec![col("id"), col("seller")])
                    .join(&sellers, &["seller"], &["person_id"])
                    .select(vec![col("name"), col("city"), col("state"), col("id")])
            }
            Query::Q4 => {
                let bids = source("bid").select(vec![col("auction"), col("price"), col("date_time")]);
                source("auction")
                    .select(vec![col("id"), col("category"), col("date_time").alias("opened"), col("expires")])
                    .with_event_time("opened")
                    // Bids from the auction's start to its end (at most MAX_AUCTION_MS later).
                    .interval_join(&bids, &["id"], &["auction"], -MAX_AUCTION_MS..=0)
                    .filter(col("date_time").lt_eq(col("expires")))
                    .with_event_time("expires")
                    .key_by(&["id", "category"])
                    .window(Tumbling::of(Duration::from_millis(1)))
                    .aggregate(vec![agg::max("price").alias("final")])
                    .key_by(&["category"])
                    .window(Global::window())
                    .early_fire()
                    .aggregate(vec![agg::avg("final").alias("avg_final")])
                    .select(vec![col("category"), col("avg_final")])
            }
            Query::Q5 => source("bid")
                .key_by(&["auction"])
                .window(Hopping::of(ten, Duration::from_secs(2)))
                .aggregate(vec![agg::count("auction").alias("num")])
                .top_n_per_window(1, "num", &[])
                .select(vec![col("auction"), col("num"), col("window_start")]),
            Query::Q7 => source("bid").window_all(Tumbling::of(ten)).top_n(1, "price").select(vec![
                col("auction"),
                col("price"),
                col("bidder"),
                col("date_time"),
                col("window_start"),
            ]),
            Query::Q8 => {
                let new_people = source("person")
                    .key_by(&["id", "name"])
                    .window(Tumbling::of(ten))
                    .aggregate(vec![agg::count("id").alias("joined")]);
                let sellers = source("auction")
                    .key_by(&["seller"])
                    .window(Tumbling::of(ten))
                    .aggregate(vec![agg::count("seller").alias("opened")])
                    .select(vec![col("seller"), col("window_time").alias("seller_time")])
                    .with_event_time("seller_time");
                new_people.interval_join(&sellers, &["id"], &["seller"], 0..=0).select(vec![
                    col("id"),
                    col("name"),
                    col("window_start").alias("starttime"),
                ])
            }
            Query::Q11 => source("bid")
                .key_by(&["bidder"])
                .window(Session::with_gap(ten))
                .aggregate(vec![agg::count("bidder").alias("bid_count")])
                .select(vec![
                    col("bidder"),
                    col("bid_count"),
                    col("window_start").alias("starttime"),
                    col("window_end").alias("endtime"),
                ]),
        }
    }

    /// The same query as one batch SQL statement over tables `person`,
    /// `auction` and `bid` (times compared as epoch ms).
    pub fn oracle_sql(self) -> &'static str {
        match self {
            Query::Q0 => "SELECT auction, bidder, price, date_time, extra FROM bid",
            Query::Q1 => "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
            Query::Q2 => "SELECT auction, price FROM bid WHERE auction % 123 = 0",
            Query::Q3 => {
                "SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id \
                 WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')"
            }
            Query::Q4 => {
                "WITH q AS (SELECT MAX(B.price) AS final, A.category FROM auction A JOIN bid B ON A.id = B.auction \
                            WHERE B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id, A.category) \
                 SELECT category, AVG(final) AS avg_final FROM q GROUP BY category"
            }
            Query::Q5 => {
                "WITH t AS (SELECT auction, CAST(date_time AS BIGINT) AS ms FROM bid), \
                 w AS (SELECT auction, ms - ms % 2000 - k.k * 2000 AS window_start \
                       FROM t CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS k(k)), \
                 c AS (SELECT auction, window_start, COUNT(*) AS num FROM w GROUP BY auction, window_start), \
                 m AS (SELECT window_start, MAX(num) AS maxn FROM c GROUP BY window_start) \
                 SELECT c.auction, c.num, c.window_start FROM c JOIN m \
                 ON c.window_start = m.window_start AND c.num >= m.maxn"
            }
            Query::Q7 => {
                "WITH b AS (SELECT auction, price, bidder, date_time, \
                            CAST(date_time AS BIGINT) - CAST(date_time AS BIGINT) % 10000 AS ws FROM bid), \
                 m AS (SELECT ws, MAX(price) AS maxprice FROM b GROUP BY ws) \
                 SELECT b.auction, b.price, b.bidder, b.date_time, b.ws AS window_start \
                 FROM b JOIN m ON b.ws = m.ws AND b.price = m.maxprice"
            }
            Query::Q8 => {
                "WITH p AS (SELECT DISTINCT id, name, \
                            CAST(date_time AS BIGINT) - CAST(date_time AS BIGINT) % 10000 AS ws FROM person), \
                 a AS (SELECT DISTINCT seller, \
                            CAST(date_time AS BIGINT) - CAST(date_time AS BIGINT) % 10000 AS ws FROM auction) \
                 SELECT p.id, p.name, p.ws AS starttime FROM p JOIN a ON p.id = a.seller AND p.ws = a.ws"
            }
            Query::Q11 => {
                "WITH b AS (SELECT bidder, CAST(date_time AS BIGINT) AS ms FROM bid), \
                 s AS (SELECT bidder, ms, CASE WHEN ms - LAG(ms) OVER (PARTITION BY bidder ORDER BY ms) < 10000 \
                       THEN 0 ELSE 1 END AS fresh FROM b), \
                 g AS (SELECT bidder, ms, SUM(fresh) OVER (PARTITION BY bidder ORDER BY ms \
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session FROM s) \
                 SELECT bidder, COUNT(*) AS bid_count, MIN(ms) AS starttime, MAX(ms) + 10000 AS endtime \
                 FROM g GROUP BY bidder, session"
            }
        }
    }
}
