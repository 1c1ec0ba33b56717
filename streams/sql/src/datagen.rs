//! `datagen`: made-up rows for trying a job out — sequences, random numbers
//! and strings, and timestamps that advance with the rows — at a set rate,
//! bounded (`number-of-rows`) or not. A row's values depend only on its
//! number, so after a restart the same rows come again from the
//! checkpointed position.
//!
//! ```sql
//! CREATE TABLE clicks (user_id BIGINT, page STRING, ts TIMESTAMP(3),
//!   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
//! ) WITH ('connector' = 'datagen', 'rows-per-second' = '1000', 'number-of-rows' = '100000',
//!   'fields.user_id.kind' = 'random', 'fields.user_id.min' = '1', 'fields.user_id.max' = '50',
//!   'fields.page.length' = '4');
//! ```

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rill_streams::{Polled, Source};

use crate::connector::{OptionSpec, Options, SourceConnector, opt};
use crate::ddl::TableDef;

/// Options of `datagen` (`#` stands for a column name).
pub(crate) const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("rows-per-second", false, &[]),
    opt("number-of-rows", false, &[]),
    opt("fields.#.kind", false, &["sequence", "random"]),
    opt("fields.#.start", false, &[]),
    opt("fields.#.end", false, &[]),
    opt("fields.#.min", false, &[]),
    opt("fields.#.max", false, &[]),
    opt("fields.#.length", false, &[]),
];

/// The `datagen` connector.
pub(crate) struct DataGenConnector;

impl SourceConnector for DataGenConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn bounded(&self, options: &Options) -> bool {
        options.get("number-of-rows").is_some()
    }

    fn build(&self, table: &TableDef, schema: SchemaRef, options: &Options) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(DataGen::new(table, schema, options)?))
    }
}

/// Most rows handed out by one poll.
const BATCH: u64 = 4096;

/// How one column is made.
#[derive(Debug, Clone)]
enum Gen {
    /// `start`, `start + 1`, …, `end`, then from `start` again.
    Sequence { start: i64, end: i64 },
    /// Uniform in `min..=max`.
    Random { min: f64, max: f64 },
    /// Random letters.
    Text { length: usize },
    /// Random true or false.
    Bool,
    /// The row's time: `base` plus its share of the rate.
    Time { start: Option<i64> },
}

/// The source (see the module docs).
#[derive(Debug)]
pub(crate) struct DataGen {
    schema: SchemaRef,
    gens: Vec<Gen>,
    rate: u64,
    total: Option<u64>,
    next: u64,
    /// Time of row 0 for time columns without a start.
    base: i64,
    /// When this run started, and the row it started at (for the rate).
    clock: Option<(Instant, u64)>,
    seed: u64,
}

fn number(options: &Options, key: &str) -> Result<Option<f64>, String> {
    options
        .get(key)
        .map(|v| v.trim().parse::<f64>().map_err(|_| format!("option '{key}' is '{v}', not a number")))
        .transpose()
}

impl DataGen {
    /// A generator for the physical columns of `def` (`schema`) configured by `options`.
    pub(crate) fn new(def: &TableDef, schema: SchemaRef, options: &Options) -> Result<Self, String> {
        let rate = number(options, "rows-per-second")?.unwrap_or(10_000.0);
        if !(rate >= 1.0 && rate.is_finite()) {
            return Err("option 'rows-per-second' must be at least 1".into());
        }
        let total = number(options, "number-of-rows")?.map(|n| n.max(0.0) as u64);
        let mut gens = Vec::new();
        for f in schema.fields() {
            let key = |what: &str| format!("fields.{}.{what}", f.name());
            let kind = options.get(&key("kind"));
            let numeric = f.data_type().is_numeric();
            let g = match (f.data_type(), kind) {
                (DataType::Timestamp(..), _) => Gen::Time { start: number(options, &key("start"))?.map(|s| s as i64) },
                (_, Some("sequence")) if numeric => Gen::Sequence {
                    start: number(options, &key("start"))?.unwrap_or(0.0) as i64,
                    end: number(options, &key("end"))?.unwrap_or(i64::MAX as f64) as i64,
                },
                (_, Some("sequence")) => return Err(format!("column {}: sequences are of numbers", f.name())),
                (DataType::Utf8, _) => {
                    Gen::Text { length: number(options, &key("length"))?.unwrap_or(10.0).clamp(1.0, 1e6) as usize }
                }
                (DataType::Boolean, _) => Gen::Bool,
                (_, _) if numeric => Gen::Random {
                    min: number(options, &key("min"))?.unwrap_or(0.0),
                    max: number(options, &key("max"))?.unwrap_or(1_000.0),
                },
                (other, _) => return Err(format!("datagen does not make {other} values (column {})", f.name())),
            };
            gens.push(g);
        }
        for (k, _, _) in &def.options {
            if let Some(column) = k.strip_prefix("fields.").and_then(|r| r.rsplit_once('.')).map(|(c, _)| c)
                && schema.index_of(column).is_err()
            {
                return Err(format!("option '{k}' names column '{column}', which is not a field of the table"));
            }
        }
        let seed =
            def.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Ok(Self { schema, gens, rate: rate as u64, total, next: 0, base: 0, clock: None, seed })
    }

    /// A number from 0 to 1 for column `c` of row `i` (the same every time).
    fn unit(&self, c: usize, i: u64) -> f64 {
        let mut z = self.seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn column(&self, c: usize, rows: std::ops::Range<u64>) -> Result<ArrayRef, String> {
        let data_type = self.schema.field(c).data_type();
        let g = &self.gens[c];
        let values: Vec<f64> = match g {
            Gen::Sequence { start, end } => {
                let span = (end.saturating_sub(*start)).saturating_add(1).max(1) as u64;
                rows.clone().map(|i| start.saturating_add((i % span) as i64) as f64).collect()
            }
            Gen::Random { min, max } => rows.clone().map(|i| min + (max - min) * self.unit(c, i)).collect(),
            Gen::Time { start } => {
                let base = start.unwrap_or(self.base);
                let ms: Vec<i64> = rows.map(|i| base + (i as u128 * 1000 / u128::from(self.rate)) as i64).collect();
                let tz = match data_type {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                return Ok(Arc::new(TimestampMillisecondArray::from(ms).with_timezone_opt(tz)));
            }
            Gen::Text { length } => {
                let text: Vec<String> = rows
                    .map(|i| {
                        (0..*length)
                            .map(|k| {
                                char::from(
                                    b'a' + (self.unit(c, i.wrapping_mul(131).wrapping_add(k as u64)) * 26.0) as u8 % 26,
                                )
                            })
                            .collect()
                    })
                    .collect();
                return Ok(Arc::new(StringArray::from(text)));
            }
            Gen::Bool => {
                return Ok(Arc::new(BooleanArray::from(rows.map(|i| self.unit(c, i) < 0.5).collect::<Vec<_>>())));
            }
        };
        let integral = |v: &f64| v.round() as i64;
        Ok(match data_type {
            DataType::Int8 => Arc::new(Int8Array::from(values.iter().map(|v| integral(v) as i8).collect::<Vec<_>>())),
            DataType::Int16 => {
                Arc::new(Int16Array::from(values.iter().map(|v| integral(v) as i16).collect::<Vec<_>>()))
            }
            DataType::Int32 => {
                Arc::new(Int32Array::from(values.iter().map(|v| integral(v) as i32).collect::<Vec<_>>()))
            }
            DataType::Int64 => Arc::new(Int64Array::from(values.iter().map(integral).collect::<Vec<_>>())),
            DataType::Float32 => Arc::new(Float32Array::from(values.iter().map(|v| *v as f32).collect::<Vec<_>>())),
            DataType::Float64 => Arc::new(Float64Array::from(values)),
            other => return Err(format!("datagen does not make {other} values")),
        })
    }
}

impl Source for DataGen {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn start(&mut self, position: Option<&str>) -> rill_streams::Result<()> {
        let bad = |p: &str| rill_streams::Error::Source(format!("datagen position '{p}' is not rows@base"));
        match position {
            Some(p) => {
                let (rows, base) = p.split_once('@').ok_or_else(|| bad(p))?;
                self.next = rows.parse().map_err(|_| bad(p))?;
                self.base = base.parse().map_err(|_| bad(p))?;
            }
            None => {
                self.next = 0;
                self.base = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
            }
        }
        self.clock = None;
        Ok(())
    }

    fn poll(&mut self) -> Polled<'_> {
        let (started, from) = *self.clock.get_or_insert((Instant::now(), self.next));
        let due = from + (started.elapsed().as_secs_f64() * self.rate as f64) as u64 + 1;
        let end = self.total.map_or(due, |t| due.min(t)).min(self.next + BATCH);
        let rows = self.next..end.max(self.next);
        let batch = if rows.is_empty() {
            Ok(None)
        } else {
            let columns: Result<Vec<ArrayRef>, String> =
                (0..self.gens.len()).map(|c| self.column(c, rows.clone())).collect();
            columns
                .map_err(rill_streams::Error::Source)
                .and_then(|c| Ok(RecordBatch::try_new(SchemaRef::clone(&self.schema), c)?))
                .map(Some)
        };
        if let Ok(Some(b)) = &batch {
            self.next += b.num_rows() as u64;
        }
        Box::pin(async move { batch })
    }

    fn position(&self) -> String {
        format!("{}@{}", self.next, self.base)
    }

    fn finished(&self) -> bool {
        self.total.is_some_and(|t| self.next >= t)
    }
}
