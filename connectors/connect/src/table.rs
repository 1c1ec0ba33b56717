//! The record sources as SQL table sources: `file-tail`, `http` and
//! `mqtt` in `CREATE TABLE … WITH ('connector' = …)` and in Rust jobs, as
//! the streams runtime's [`Source`]. Each record's body is decoded into
//! the table's columns — JSON objects by field name, or, for a table of a
//! single STRING or BYTES column, the body as it is — and, when the table
//! declares no TIMESTAMP column, a `store_time` column (when the record
//! was taken) is added for event time. The source's position goes into
//! the job's checkpoints; once a checkpoint is stored, the records it
//! covers are acknowledged upstream (HTTP requests answered, MQTT
//! messages acknowledged). A record the source flagged, or one that does
//! not fit the columns, stops the job with where it came from and why
//! (`rill connect` sends such records to a dead-letter topic instead).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rill_sql::{OptionSpec, Options, SourceConnector, TableDef};
use rill_streams::{Decoder, Format, Metadata, Polled, Source, SourceRecord};

use crate::source::{RecordSource, RecordSourceConnector};

/// A record source connector offered to SQL.
pub struct TableConnector {
    inner: Arc<dyn RecordSourceConnector>,
}

impl std::fmt::Debug for TableConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableConnector").finish_non_exhaustive()
    }
}

impl TableConnector {
    /// `inner` as a SQL source connector.
    pub fn new(inner: Arc<dyn RecordSourceConnector>) -> Self {
        Self { inner }
    }
}

impl SourceConnector for TableConnector {
    fn options(&self) -> &'static [OptionSpec] {
        self.inner.options()
    }

    fn bounded(&self, _options: &Options) -> bool {
        false
    }

    fn implicit_time(&self) -> Option<&'static str> {
        Some("store_time")
    }

    fn build(&self, table: &TableDef, schema: SchemaRef, options: &Options) -> Result<Box<dyn Source>, String> {
        let source = self.inner.build(options)?;
        RecordTable::new(&table.name, source, schema).map(|t| Box::new(t) as Box<dyn Source>)
    }
}

/// A record source's records as rows (see the module docs).
pub struct RecordTable {
    name: String,
    inner: Box<dyn RecordSource>,
    decoder: Decoder,
    from: Option<String>,
    open: bool,
    handed: u64,
}

impl std::fmt::Debug for RecordTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTable").field("name", &self.name).field("handed", &self.handed).finish()
    }
}

impl RecordTable {
    /// Rows of `schema` (the table's columns) from `inner`, for table `name`.
    pub fn new(name: &str, inner: Box<dyn RecordSource>, schema: SchemaRef) -> Result<Self, String> {
        let timed = schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Timestamp(..)));
        let metadata = if timed { Vec::new() } else { vec![Metadata::StoreTime] };
        let whole = schema.fields().len() == 1
            && matches!(schema.field(0).data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary);
        let mut decoder = Decoder::new(schema, metadata).map_err(|e| e.to_string())?;
        if whole {
            decoder = decoder.with_format(Format::Raw);
        }
        Ok(Self { name: name.to_owned(), inner, decoder, from: None, open: false, handed: 0 })
    }

    fn fail(&self, e: impl std::fmt::Display) -> rill_streams::Error {
        rill_streams::Error::Source(format!("table {}: {e}", self.name))
    }

    async fn next(&mut self) -> rill_streams::Result<Option<RecordBatch>> {
        if !self.open {
            self.inner.open(self.from.clone()).await.map_err(|e| self.fail(e))?;
            self.open = true;
        }
        let records = self.inner.poll().await.map_err(|e| self.fail(e))?;
        if records.is_empty() {
            return Ok(None);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let first = self.handed;
        let mut rows = Vec::with_capacity(records.len());
        // Records are taken apart as they are; their locations stay for a decoding error.
        let mut locations = Vec::with_capacity(records.len());
        for r in records {
            let location = self.inner.locate(&r);
            if let Some(reason) = &r.error {
                return Err(self.fail(format!("{}: {reason}", location.as_deref().unwrap_or("a record"))));
            }
            rows.push(SourceRecord {
                topic: self.name.clone(),
                queue: 0,
                offset: self.handed,
                tag: r.tag,
                store_time: r.origin_ms.unwrap_or(now),
                properties: r.properties.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                body: bytes::Bytes::from(r.body),
            });
            locations.push(location);
            self.handed += 1;
        }
        let decoded = self.decoder.decode(&rows)?;
        if let Some(dead) = decoded.dead.first() {
            let at = match dead.message() {
                Some((_, _, offset)) => locations
                    .get_mut(usize::try_from(offset - first).unwrap_or(usize::MAX))
                    .and_then(Option::take)
                    .unwrap_or_else(|| format!("record {offset}")),
                None => dead.origin.to_string(),
            };
            return Err(self.fail(format!("{at} does not fit the table's columns: {}", dead.reason)));
        }
        Ok(Some(decoded.batch))
    }
}

impl Source for RecordTable {
    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn start(&mut self, position: Option<&str>) -> rill_streams::Result<()> {
        self.from = position.map(str::to_owned);
        Ok(())
    }

    fn poll(&mut self) -> Polled<'_> {
        Box::pin(self.next())
    }

    fn position(&self) -> String {
        if self.open { self.inner.position() } else { self.from.clone().unwrap_or_default() }
    }

    fn committed(&mut self, position: &str) -> rill_streams::Result<()> {
        self.inner.acknowledge_through(position);
        Ok(())
    }
}

/// Adds the record sources (`file-tail`, `http`, `mqtt`) to the connectors SQL job files can name.
pub fn register(connectors: &mut rill_sql::Connectors, sources: &crate::source::Sources) {
    for name in ["file-tail", "http", "mqtt"] {
        if let Some(c) = sources.get(name) {
            connectors.register_source(name, Arc::new(TableConnector::new(Arc::clone(c))));
        }
    }
}
