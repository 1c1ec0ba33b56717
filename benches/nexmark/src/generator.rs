//! The Nexmark event generator: persons, auctions and bids in the
//! benchmark's standard proportions (1 : 3 : 46 of every 50 events), with
//! its id scheme (ids start at 1000; new auctions and bids pick among the
//! recent ones, and "hot" auctions, sellers and bidders take most of the
//! traffic), log-distributed prices and five categories.
//!
//! Event `n` happens at `base + n * 1000 / rate` ms; `disorder` moves each
//! event up to that many ms earlier, so input can be out of order within a
//! known bound. Chunks come as Arrow batches, one per event type, with a
//! watermark no later event can be behind.
//!
//! Deterministic for a seed. Auction lengths are drawn uniformly from 1 to
//! 20 s (the original derives them from the configured rates).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::Result;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50;
const FIRST_ID: i64 = 1000;
const FIRST_CATEGORY: i64 = 10;
const CATEGORIES: i64 = 5;
const HOT_RATIO: u64 = 100;
const HOT_AUCTION_ODDS: u32 = 2;
const HOT_SELLER_ODDS: u32 = 4;
const HOT_BIDDER_ODDS: u32 = 4;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const ACTIVE_PEOPLE: u64 = 1000;
const ID_LEAD: u64 = 10;

const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// The longest an auction runs (ms after it opens).
pub const MAX_AUCTION_MS: i64 = 20_000;

/// How to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Events in all.
    pub events: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Largest amount (ms) an event may be earlier than its place in the order.
    pub disorder: i64,
    /// Events per chunk.
    pub chunk: u64,
    /// Seed of the random choices.
    pub seed: u64,
    /// Event time of event 0 (ms since the epoch).
    pub base_time: i64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { events: 100_000, rate: 10_000, disorder: 0, chunk: 10_000, seed: 42, base_time: 1_767_225_600_000 }
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// Schema of `person` rows.
pub fn person_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("email_address", DataType::Utf8, false),
        Field::new("credit_card", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("date_time", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// Schema of `auction` rows.
pub fn auction_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item_name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("initial_bid", DataType::Int64, false),
        Field::new("reserve", DataType::Int64, false),
        Field::new("date_time", ts(), false),
        Field::new("expires", ts(), false),
        Field::new("seller", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// Schema of `bid` rows.
pub fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("date_time", ts(), false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

/// One chunk of events.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// New persons (maybe empty).
    pub person: RecordBatch,
    /// New auctions.
    pub auction: RecordBatch,
    /// New bids.
    pub bid: RecordBatch,
    /// No later event has an event time at or before this.
    pub watermark: i64,
}

impl Chunk {
    /// Events in the chunk.
    pub fn events(&self) -> usize {
        self.person.num_rows() + self.auction.num_rows() + self.bid.num_rows()
    }
}

#[derive(Default)]
struct Persons {
    id: Vec<i64>,
    name: Vec<String>,
    email: Vec<String>,
    card: Vec<String>,
    city: Vec<&'static str>,
    state: Vec<&'static str>,
    time: Vec<i64>,
    extra: Vec<String>,
}

#[derive(Default)]
struct Auctions {
    id: Vec<i64>,
    item: Vec<String>,
    description: Vec<String>,
    initial: Vec<i64>,
    reserve: Vec<i64>,
    time: Vec<i64>,
    expires: Vec<i64>,
    seller: Vec<i64>,
    category: Vec<i64>,
    extra: Vec<String>,
}

#[derive(Default)]
struct Bids {
    auction: Vec<i64>,
    bidder: Vec<i64>,
    price: Vec<i64>,
    channel: Vec<String>,
    url: Vec<String>,
    time: Vec<i64>,
    extra: Vec<String>,
}

/// The generator (an iterator of [`Chunk`]s).
pub struct Generator {
    config: GeneratorConfig,
    next: u64,
    rng: SmallRng,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").field("config", &self.config).field("next", &self.next).finish()
    }
}

fn last_person(event: u64) -> u64 {
    // The epoch's persons come first, so every event of an epoch sees all of
    // them (with one person per epoch, the epoch number is the person).
    let epoch = event / TOTAL_PROPORTION;
    epoch * PERSON_PROPORTION + PERSON_PROPORTION - 1
}

fn last_auction(event: u64) -> u64 {
    let mut epoch = event / TOTAL_PROPORTION;
    let mut offset = event % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        Self { config, next: 0, rng: SmallRng::seed_from_u64(config.seed) }
    }

    fn time_of(&self, event: u64) -> i64 {
        let rate = self.config.rate.max(1);
        self.config.base_time + i64::try_from(event.saturating_mul(1000) / rate).unwrap_or(i64::MAX / 2)
    }

    fn jitter(&mut self, t: i64) -> i64 {
        if self.config.disorder > 0 { t - self.rng.random_range(0..=self.config.disorder) } else { t }
    }

    fn next_person(&mut self, event: u64) -> u64 {
        let people = last_person(event) + 1;
        let active = people.min(ACTIVE_PEOPLE);
        people - active + self.rng.random_range(0..active + ID_LEAD)
    }

    fn next_auction(&mut self, event: u64) -> u64 {
        let last = last_auction(event);
        let min = last.saturating_sub(IN_FLIGHT_AUCTIONS);
        min + self.rng.random_range(0..last - min + 1 + ID_LEAD)
    }

    fn text(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'a' + self.rng.random_range(0..26u8))).collect()
    }

    fn person(&mut self, event: u64, time: i64, p: &mut Persons) {
        let id = FIRST_ID + i64::try_from(last_person(event)).unwrap_or(0);
        let first = FIRST_NAMES[self.rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[self.rng.random_range(0..LAST_NAMES.len())];
        p.id.push(id);
        p.name.push(format!("{first} {last}"));
        p.email.push(format!("{}@{}.com", self.text(7), self.text(5)));
        p.card.push(format!(
            "{:04} {:04} {:04} {:04}",
            self.rng.random_range(0..10_000),
            self.rng.random_range(0..10_000),
            self.rng.random_range(0..10_000),
            self.rng.random_range(0..10_000)
        ));
        p.city.push(CITIES[self.rng.random_range(0..CITIES.len())]);
        p.state.push(STATES[self.rng.random_range(0..STATES.len())]);
        p.time.push(time);
        let len = self.rng.random_range(80..160);
        p.extra.push(self.text(len));
    }

    fn auction(&mut self, event: u64, time: i64, a: &mut Auctions) {
        let id = FIRST_ID + i64::try_from(last_auction(event)).unwrap_or(0);
        let seller = if self.rng.random_range(0..HOT_SELLER_ODDS) > 0 {
            (last_person(event) / HOT_RATIO) * HOT_RATIO
        } else {
            self.next_person(event)
        };
        let initial = self.price();
        a.id.push(id);
        a.item.push(self.text(20));
        a.description.push(self.text(100));
        a.initial.push(initial);
        a.reserve.push(initial + self.price());
        a.time.push(time);
        a.expires.push(time + self.rng.random_range(1_000..=MAX_AUCTION_MS));
        a.seller.push(FIRST_ID + i64::try_from(seller).unwrap_or(0));
        a.category.push(FIRST_CATEGORY + self.rng.random_range(0..CATEGORIES));
        let len = self.rng.random_range(200..400);
        a.extra.push(self.text(len));
    }

    fn price(&mut self) -> i64 {
        let exp: f64 = self.rng.random::<f64>() * 6.0;
        (10f64.powf(exp) * 100.0).round() as i64
    }

    fn bid(&mut self, event: u64, time: i64, b: &mut Bids) {
        let auction = if self.rng.random_range(0..HOT_AUCTION_ODDS) > 0 {
            (last_auction(event) / HOT_RATIO) * HOT_RATIO
        } else {
            self.next_auction(event)
        };
        let bidder = if self.rng.random_range(0..HOT_BIDDER_ODDS) > 0 {
            (last_person(event) / HOT_RATIO) * HOT_RATIO + 1
        } else {
            self.next_person(event)
        };
        b.auction.push(FIRST_ID + i64::try_from(auction).unwrap_or(0));
        b.bidder.push(FIRST_ID + i64::try_from(bidder).unwrap_or(0));
        b.price.push(self.price());
        let pick = self.rng.random_range(0..10usize);
        let channel = if pick < CHANNELS.len() { CHANNELS[pick].to_owned() } else { format!("channel-{pick}") };
        b.url.push(format!("https://www.nexmark.com/{}/item.htm?query=1&channel={channel}", self.text(5)));
        b.channel.push(channel);
        b.time.push(time);
        let len = self.rng.random_range(10..30);
        b.extra.push(self.text(len));
    }

    fn build(p: Persons, a: Auctions, b: Bids) -> Result<(RecordBatch, RecordBatch, RecordBatch)> {
        fn strings<S: AsRef<str>>(v: Vec<S>) -> ArrayRef {
            Arc::new(StringArray::from_iter_values(v))
        }
        fn ints(v: Vec<i64>) -> ArrayRef {
            Arc::new(Int64Array::from(v))
        }
        fn times(v: Vec<i64>) -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(v))
        }
        let person = RecordBatch::try_new(
            person_schema(),
            vec![
                ints(p.id),
                strings(p.name),
                strings(p.email),
                strings(p.card),
                strings(p.city),
                strings(p.state),
                times(p.time),
                strings(p.extra),
            ],
        )?;
        let auction = RecordBatch::try_new(
            auction_schema(),
            vec![
                ints(a.id),
                strings(a.item),
                strings(a.description),
                ints(a.initial),
                ints(a.reserve),
                times(a.time),
                times(a.expires),
                ints(a.seller),
                ints(a.category),
                strings(a.extra),
            ],
        )?;
        let bid = RecordBatch::try_new(
            bid_schema(),
            vec![
                ints(b.auction),
                ints(b.bidder),
                ints(b.price),
                strings(b.channel),
                strings(b.url),
                times(b.time),
                strings(b.extra),
            ],
        )?;
        Ok((person, auction, bid))
    }

    /// Events generated so far.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next chunk, or `None` after the last event.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.next >= self.config.events {
            return Ok(None);
        }
        let end = (self.next + self.config.chunk.max(1)).min(self.config.events);
        let (mut p, mut a, mut b) = (Persons::default(), Auctions::default(), Bids::default());
        for event in self.next..end {
            let time = self.time_of(event);
            let time = self.jitter(time);
            match event % TOTAL_PROPORTION {
                r if r < PERSON_PROPORTION => self.person(event, time, &mut p),
                r if r < PERSON_PROPORTION + AUCTION_PROPORTION => self.auction(event, time, &mut a),
                _ => self.bid(event, time, &mut b),
            }
        }
        self.next = end;
        // Later events are at least their place in time minus the disorder.
        let watermark = self.time_of(end) - self.config.disorder - 1;
        let (person, auction, bid) = Self::build(p, a, b)?;
        Ok(Some(Chunk { person, auction, bid, watermark }))
    }
}

impl Iterator for Generator {
    type Item = Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}
