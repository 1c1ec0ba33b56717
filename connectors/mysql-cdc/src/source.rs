//! The streams runtime's view of change capture: a [`Source`] whose rows
//! are one database table's changes as a changelog (`+I` for snapshot
//! reads and inserts, `-U`/`+U` for updates, `-D` for deletes, in a last
//! `__op` column), and the `mysql-cdc` connector SQL job files name, with
//! the option names Flink CDC users know:
//!
//! ```sql
//! CREATE TABLE orders (id BIGINT, amount DECIMAL(10, 2), ts TIMESTAMP(3), PRIMARY KEY (id) NOT ENFORCED)
//! WITH ('connector' = 'mysql-cdc', 'hostname' = '127.0.0.1', 'port' = '3306', 'username' = 'root',
//!       'database-name' = 'shop', 'table-name' = 'orders');
//! ```
//!
//! Rows are decoded from the change events' envelopes by the runtime's
//! Debezium decoder, so a table declared over a topic of those envelopes
//! and one reading the database directly see the same rows. A change that
//! does not fit the declared columns stops the job with the table, the
//! binlog position and the reason.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rill_sql::{Connectors, OptionSpec, Options, SourceConnector, TableDef, opt};
use rill_streams::{Decoder, Format, Metadata, Polled, Source, SourceRecord};

use crate::{CdcConfig, CdcReader, Position, Startup};

/// Changes handed to the job per poll, at most (about).
const BATCH: usize = 4096;
/// How long a poll waits for a change.
const WAIT: Duration = Duration::from_millis(200);

/// One table's changes as a changelog source (see the module docs).
pub struct CdcSource {
    config: CdcConfig,
    decoder: Decoder,
    reader: Option<CdcReader>,
    from: Option<Position>,
    position: Option<Position>,
    handed: u64,
}

impl std::fmt::Debug for CdcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcSource").field("tables", &self.config.tables).field("position", &self.position).finish()
    }
}

fn source_error(e: impl std::fmt::Display) -> rill_streams::Error {
    rill_streams::Error::Source(format!("mysql-cdc: {e}"))
}

impl CdcSource {
    /// A source of the changes `config` selects, decoded into `schema` (the table's columns).
    /// Without a TIMESTAMP column, a `store_time` column (when the server wrote the change) is added for event time.
    pub fn new(config: CdcConfig, schema: SchemaRef) -> rill_streams::Result<Self> {
        let timed = schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Timestamp(..)));
        let metadata = if timed { Vec::new() } else { vec![Metadata::StoreTime] };
        let decoder = Decoder::new(schema, metadata)?.with_format(Format::DebeziumJson);
        Ok(Self { config, decoder, reader: None, from: None, position: None, handed: 0 })
    }

    async fn next(&mut self) -> rill_streams::Result<Option<datafusion::arrow::array::RecordBatch>> {
        if self.reader.is_none() {
            let reader = CdcReader::open(self.config.clone(), self.from.clone()).await.map_err(source_error)?;
            self.position = Some(reader.position());
            self.reader = Some(reader);
        }
        let Some(reader) = self.reader.as_mut() else { return Ok(None) };
        let events = reader.next(BATCH, WAIT).await.map_err(source_error)?;
        let position = reader.position();
        if events.is_empty() {
            self.position = Some(position);
            return Ok(None);
        }
        let records: Vec<SourceRecord> = events
            .iter()
            .map(|e| {
                self.handed += 1;
                SourceRecord {
                    topic: e.shape.qualified(),
                    queue: 0,
                    offset: self.handed,
                    tag: Some(e.shape.table.clone()),
                    store_time: e.source.ts_ms,
                    properties: Default::default(),
                    body: bytes::Bytes::from(e.envelope()),
                }
            })
            .collect();
        let decoded = self.decoder.decode(&records)?;
        if let Some(dead) = decoded.dead.first() {
            let rill_streams::Origin::Message { topic, offset, .. } = &dead.origin else {
                return Err(source_error(format!("{}: {}", dead.origin, dead.reason)));
            };
            let e = &events[usize::try_from(offset - records[0].offset).unwrap_or_default()];
            return Err(source_error(format!(
                "a change of {topic} at {}:{} does not fit the table's columns: {}",
                e.source.file, e.source.pos, dead.reason
            )));
        }
        self.position = Some(position);
        Ok(Some(decoded.batch))
    }
}

impl Source for CdcSource {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn start(&mut self, position: Option<&str>) -> rill_streams::Result<()> {
        self.from = position.map(Position::decode).transpose().map_err(source_error)?;
        self.reader = None;
        Ok(())
    }

    fn poll(&mut self) -> Polled<'_> {
        Box::pin(self.next())
    }

    fn position(&self) -> String {
        self.position.as_ref().or(self.from.as_ref()).map(Position::encode).unwrap_or_default()
    }
}

/// Options of `mysql-cdc`.
const CDC_OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("hostname", true, &[]),
    opt("port", false, &[]),
    opt("username", true, &[]),
    opt("password", false, &[]),
    opt("database-name", true, &[]),
    opt("table-name", true, &[]),
    opt("server-id", false, &[]),
    opt("scan.startup.mode", false, &["initial", "latest-offset"]),
    opt("scan.snapshot.fetch.size", false, &[]),
    opt("connect.max-retry-timeout", false, &[]),
];

/// The `mysql-cdc` connector (see the module docs).
#[derive(Debug)]
pub struct MysqlCdcConnector;

/// A number option's value, or an error naming it.
fn number<T: std::str::FromStr>(options: &Options, key: &str) -> Result<Option<T>, String> {
    options.get(key).map(|v| v.parse().map_err(|_| format!("option '{key}' = '{v}' is not a number"))).transpose()
}

impl MysqlCdcConnector {
    /// The options it takes (for SQL tables and connect files alike).
    pub const OPTIONS: &'static [OptionSpec] = CDC_OPTIONS;

    /// What checked options ask to read.
    pub fn config(options: &Options) -> Result<CdcConfig, String> {
        let host = options.get("hostname").unwrap_or("127.0.0.1");
        let port = options.get("port").unwrap_or("3306");
        let user = options.get("username").unwrap_or("root");
        let database = options.get("database-name").unwrap_or_default();
        let credentials = match options.get("password") {
            Some(p) if !p.is_empty() => format!("{user}:{p}"),
            _ => user.to_owned(),
        };
        let mut config = CdcConfig::new(&format!("mysql://{credentials}@{host}:{port}/{database}"));
        config.databases = database.to_owned();
        config.tables = options.get("table-name").unwrap_or_default().to_owned();
        if let Some(id) = number(options, "server-id")? {
            config.server_id = id;
        }
        if options.get("scan.startup.mode") == Some("latest-offset") {
            config.startup = Startup::Latest;
        }
        if let Some(n) = number(options, "scan.snapshot.fetch.size")? {
            config.fetch_size = n;
        }
        if let Some(s) = number::<u64>(options, "connect.max-retry-timeout")? {
            config.reconnect_for = Duration::from_secs(s);
        }
        config.selection().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

impl SourceConnector for MysqlCdcConnector {
    fn options(&self) -> &'static [OptionSpec] {
        CDC_OPTIONS
    }

    fn bounded(&self, _options: &Options) -> bool {
        false
    }

    fn changelog(&self) -> bool {
        true
    }

    fn implicit_time(&self) -> Option<&'static str> {
        Some("store_time")
    }

    fn build(&self, _table: &TableDef, schema: SchemaRef, options: &Options) -> Result<Box<dyn Source>, String> {
        let config = Self::config(options)?;
        CdcSource::new(config, schema).map(|s| Box::new(s) as Box<dyn Source>).map_err(|e| e.to_string())
    }
}

/// Adds `mysql-cdc` to the connectors SQL job files can name.
pub fn register(connectors: &mut Connectors) {
    connectors.register_source("mysql-cdc", Arc::new(MysqlCdcConnector));
}
