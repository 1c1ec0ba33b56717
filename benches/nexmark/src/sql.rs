//! Nexmark in SQL: the `nexmark` source connector for job files, and a
//! runner that plans a query's job file (`examples/nexmark/qN.sql`) and
//! feeds it the generator's events exactly as [`crate::run`] feeds the
//! Rust DSL version — so the two can be compared row for row and for speed.
//!
//! ```sql
//! CREATE TABLE bid (auction BIGINT NOT NULL, …, date_time TIMESTAMP(3) NOT NULL, …,
//!   WATERMARK FOR date_time AS date_time
//! ) WITH ('connector' = 'nexmark', 'kind' = 'bid', 'events' = '1000000');
//! ```
//!
//! Each table reads its own generator (same seed, so the three kinds agree);
//! its position is the number of events generated, and a restart
//! generates again up to there.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use rill_sql::{ColumnKind, OptionSpec, Options, SinkConnector, SourceConnector, SqlJob, TableDef, opt};
use rill_streams::{CollectSink, Polled, Sink, Source};

use crate::generator::{Generator, GeneratorConfig, auction_schema, bid_schema, person_schema};
use crate::{Error, Query, Result, Run};

/// Options of the `nexmark` connector.
const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("kind", true, &["person", "auction", "bid"]),
    opt("events", false, &[]),
    opt("events-per-second", false, &[]),
    opt("disorder-ms", false, &[]),
    opt("seed", false, &[]),
];

/// The `nexmark` source connector: one kind of the generator's events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NexmarkConnector;

fn number(options: &Options, key: &str, default: u64) -> std::result::Result<u64, String> {
    options
        .get(key)
        .map_or(Ok(default), |v| v.trim().parse().map_err(|_| format!("option '{key}' is '{v}', not a whole number")))
}

impl SourceConnector for NexmarkConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn bounded(&self, _options: &Options) -> bool {
        true
    }

    fn build(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        options: &Options,
    ) -> std::result::Result<Box<dyn Source>, String> {
        let kind = options.get("kind").unwrap_or("bid").to_owned();
        let expected = match kind.as_str() {
            "person" => person_schema(),
            "auction" => auction_schema(),
            _ => bid_schema(),
        };
        if schema.fields() != expected.fields() {
            let columns: Vec<String> =
                expected.fields().iter().map(|f| format!("{} {}", f.name(), sql_type(f.data_type()))).collect();
            return Err(format!(
                "table '{}' reads nexmark {kind} events, whose columns are ({}), all NOT NULL",
                table.name,
                columns.join(", ")
            ));
        }
        let defaults = GeneratorConfig::default();
        let config = GeneratorConfig {
            events: number(options, "events", 1_000_000)?,
            rate: number(options, "events-per-second", defaults.rate)?,
            disorder: i64::try_from(number(options, "disorder-ms", 0)?)
                .map_err(|_| "disorder-ms is too large".to_owned())?,
            seed: number(options, "seed", defaults.seed)?,
            ..defaults
        };
        Ok(Box::new(NexmarkSource { kind, schema, config, generator: Generator::new(config), done: false }))
    }
}

/// A SQL type name for a generator column.
fn sql_type(t: &datafusion::arrow::datatypes::DataType) -> &'static str {
    use datafusion::arrow::datatypes::DataType;
    match t {
        DataType::Int64 => "BIGINT",
        DataType::Timestamp(..) => "TIMESTAMP(3)",
        _ => "STRING",
    }
}

/// One kind of events from a generator.
struct NexmarkSource {
    kind: String,
    schema: SchemaRef,
    config: GeneratorConfig,
    generator: Generator,
    done: bool,
}

impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn start(&mut self, position: Option<&str>) -> rill_streams::Result<()> {
        self.generator = Generator::new(self.config);
        self.done = false;
        let Some(p) = position else { return Ok(()) };
        let events: u64 = p
            .parse()
            .map_err(|_| rill_streams::Error::Source(format!("nexmark position '{p}' is not a number of events")))?;
        while self.generator.position() < events {
            if self.generator.next_chunk().map_err(|e| rill_streams::Error::Source(e.to_string()))?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn poll(&mut self) -> Polled<'_> {
        let batch = loop {
            match self.generator.next_chunk() {
                Ok(Some(chunk)) => {
                    let rows = match self.kind.as_str() {
                        "person" => chunk.person,
                        "auction" => chunk.auction,
                        _ => chunk.bid,
                    };
                    if rows.num_rows() > 0 {
                        break RecordBatch::try_new(SchemaRef::clone(&self.schema), rows.columns().to_vec())
                            .map(Some)
                            .map_err(rill_streams::Error::from);
                    }
                }
                Ok(None) => {
                    self.done = true;
                    break Ok(None);
                }
                Err(e) => break Err(rill_streams::Error::Source(e.to_string())),
            }
        };
        Box::pin(async move { batch })
    }

    fn position(&self) -> String {
        self.generator.position().to_string()
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// A sink connector handing rows to one [`CollectSink`] (stands in for `blackhole` in runs that check results).
struct Collect(CollectSink);

impl SinkConnector for Collect {
    fn options(&self) -> &'static [OptionSpec] {
        &[OptionSpec { key: "connector", required: true, values: &[] }]
    }

    fn build(&self, _table: &TableDef, _options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        Ok(Box::new(self.0.clone()))
    }
}

/// The job file of `query` (`examples/nexmark/q5.sql`): its name and text.
pub fn job_file(query: Query) -> (&'static str, &'static str) {
    macro_rules! file {
        ($name:literal) => {
            (
                concat!("examples/nexmark/", $name, ".sql"),
                include_str!(concat!("../../../examples/nexmark/", $name, ".sql")),
            )
        };
    }
    match query {
        Query::Q0 => file!("q0"),
        Query::Q1 => file!("q1"),
        Query::Q2 => file!("q2"),
        Query::Q3 => file!("q3"),
        Query::Q4 => file!("q4"),
        Query::Q5 => file!("q5"),
        Query::Q7 => file!("q7"),
        Query::Q8 => file!("q8"),
        Query::Q11 => file!("q11"),
    }
}

/// Plans `query`'s job file with its tables fed by the generator and its
/// `blackhole` sink collecting, then feeds it `config`'s events chunk by
/// chunk, as [`crate::run`] does the DSL version.
pub fn run_sql(query: Query, config: GeneratorConfig) -> Result<Run> {
    let (path, text) = job_file(query);
    let mut job = SqlJob::parse(Path::new(path), text).map_err(|e| Error::Sql(e.to_string()))?;
    let sink = CollectSink::new();
    job.connectors_mut().register_sink("blackhole", Arc::new(Collect(sink.clone())));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::Sql(format!("cannot start a runtime to plan: {e}")))?;
    let schema = sink_schema(&job)?;
    let planned = runtime.block_on(job.build_fed()).map_err(|e| Error::Sql(e.to_string()))?;
    crate::drive(planned.build()?, &sink, schema, config)
}

/// The columns of the job's `blackhole` table.
fn sink_schema(job: &SqlJob) -> Result<SchemaRef> {
    let table = job
        .tables()
        .iter()
        .find(|t| t.option("connector").is_some_and(|(c, _)| c == "blackhole"))
        .ok_or_else(|| Error::Sql("the job has no table with 'connector' = 'blackhole' to collect".into()))?;
    let fields: Vec<Field> = table
        .columns
        .iter()
        .filter_map(|c| match &c.kind {
            ColumnKind::Physical { data_type, nullable } => Some(Field::new(&c.name, data_type.clone(), *nullable)),
            _ => None,
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}
