//! Message bodies → Arrow: decodes bodies (JSON objects by default, one
//! CSV record each, or the raw bytes) into a declared schema, adds
//! the message metadata columns asked for, and sets aside every message
//! that does not fit (bad JSON, a wrong type, a missing required field)
//! with the reason and where it came from — a bad message never stops the
//! others and is never dropped without a trace.
//!
//! A JSON field bound for a text column is taken as text whatever its JSON
//! type (an object or array as its JSON text); one bound for a struct
//! (`ROW<…>`) or list column as that.
//!
//! It owns decoding only; where messages come from and where dead letters
//! go are the caller's.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;

use crate::{Error, Result};

/// A message as a source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Topic it was read from.
    pub topic: String,
    /// Queue of the topic.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// Tag, if any.
    pub tag: Option<String>,
    /// When the broker stored it (ms since the epoch).
    pub store_time: i64,
    /// Its user properties.
    pub properties: std::collections::HashMap<String, String>,
    /// The payload.
    pub body: bytes::Bytes,
}

/// Message metadata that can be added as columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// `topic` (Utf8).
    Topic,
    /// `queue_id` (UInt32).
    Queue,
    /// `queue_offset` (UInt64).
    Offset,
    /// `tag` (Utf8, null without a tag).
    Tag,
    /// `store_time` (Timestamp ms).
    StoreTime,
    /// `proc_time` (Timestamp ms): when the row was decoded, for
    /// processing-time windows.
    ProcessingTime,
}

impl Metadata {
    fn field(self) -> Field {
        match self {
            Metadata::Topic => Field::new("topic", DataType::Utf8, false),
            Metadata::Queue => Field::new("queue_id", DataType::UInt32, false),
            Metadata::Offset => Field::new("queue_offset", DataType::UInt64, false),
            Metadata::Tag => Field::new("tag", DataType::Utf8, true),
            Metadata::StoreTime => Field::new("store_time", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Metadata::ProcessingTime => {
                Field::new("proc_time", DataType::Timestamp(TimeUnit::Millisecond, None), false)
            }
        }
    }

    fn column(self, records: &[&SourceRecord]) -> ArrayRef {
        match self {
            Metadata::Topic => Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.topic.as_str()))),
            Metadata::Queue => Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.queue))),
            Metadata::Offset => Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.offset))),
            Metadata::Tag => Arc::new(StringArray::from_iter(records.iter().map(|r| r.tag.as_deref()))),
            Metadata::StoreTime => {
                Arc::new(TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.store_time)))
            }
            Metadata::ProcessingTime => {
                let now = wall_clock_ms();
                Arc::new(TimestampMillisecondArray::from_iter_values(records.iter().map(|_| now)))
            }
        }
    }
}

/// Milliseconds since the epoch now.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where a dead letter came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A message that did not decode into its source's schema.
    Message {
        /// Topic it was read from.
        topic: String,
        /// Queue of the topic.
        queue: u32,
        /// Offset in the queue.
        offset: u64,
    },
    /// A row a sink refused (the sink's name, as its connector reports it).
    Sink(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Message { topic, queue, offset } => write!(f, "message at {topic}/{queue}/{offset}"),
            Origin::Sink(name) => write!(f, "row refused by sink {name}"),
        }
    }
}

/// A message that did not decode, or a row a sink refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it came from.
    pub origin: Origin,
    /// What was wrong.
    pub reason: String,
    /// The message's body as read, or the refused row as JSON.
    pub body: bytes::Bytes,
}

impl DeadLetter {
    /// Topic, queue and offset of a message that did not decode (none for a refused row).
    pub fn message(&self) -> Option<(&str, u32, u64)> {
        match &self.origin {
            Origin::Message { topic, queue, offset } => Some((topic, *queue, *offset)),
            Origin::Sink(_) => None,
        }
    }
}

/// The outcome of decoding a batch of messages.
#[derive(Debug)]
pub struct Decoded {
    /// The rows of every message that fit the schema, in order.
    pub batch: RecordBatch,
    /// The messages that did not.
    pub dead: Vec<DeadLetter>,
}

/// How message bodies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One JSON object per body, fields by name.
    #[default]
    Json,
    /// One CSV record per body, columns in schema order.
    Csv {
        /// The field separator (`b','`).
        delimiter: u8,
    },
    /// The body itself, as one `body` column (Binary, or Utf8 when so declared).
    Raw,
    /// A change event as Debezium writes it — `{"before": {…}, "after": {…},
    /// "op": "c" | "r" | "u" | "d"}` — giving one changelog row (two for an
    /// update: `-U` before, `+U` after) with its kind in a last `__op` column.
    DebeziumJson,
}

/// Decodes message bodies into a declared schema.
#[derive(Debug, Clone)]
pub struct Decoder {
    data: SchemaRef,
    metadata: Vec<Metadata>,
    /// User properties added as `property.<key>` columns, after the metadata.
    properties: Vec<String>,
    output: SchemaRef,
    format: Format,
}

impl Decoder {
    /// Raw bodies as a `body` Binary column, then `metadata` columns.
    pub fn raw(metadata: Vec<Metadata>) -> Result<Self> {
        let data = Arc::new(Schema::new(vec![Field::new("body", DataType::Binary, false)]));
        Ok(Self::new(data, metadata)?.with_format(Format::Raw))
    }

    /// Bodies in `format` instead of JSON.
    pub fn with_format(mut self, format: Format) -> Self {
        let was = self.format == Format::DebeziumJson;
        self.format = format;
        let is = format == Format::DebeziumJson;
        if is != was {
            let mut fields: Vec<Field> = self.output.fields().iter().map(|f| f.as_ref().clone()).collect();
            if is {
                fields.push(Field::new(crate::changelog::OP_COLUMN, DataType::Utf8, false));
            } else {
                fields.pop();
            }
            self.output = Arc::new(Schema::new(fields));
        }
        self
    }

    /// Bodies are JSON objects with the fields of `data`; `metadata`
    /// columns follow the data columns.
    pub fn new(data: SchemaRef, metadata: Vec<Metadata>) -> Result<Self> {
        let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
        for m in &metadata {
            let f = m.field();
            if data.index_of(f.name()).is_ok() {
                return Err(Error::Plan(format!(
                    "metadata column '{}' clashes with a data column of that name",
                    f.name()
                )));
            }
            fields.push(f);
        }
        Ok(Self { data, metadata, properties: Vec::new(), output: Arc::new(Schema::new(fields)), format: Format::Json })
    }

    /// Also adds the user property `key` of each message as a Utf8 column
    /// `property.<key>` (null where a message lacks it), for each of `keys`.
    pub fn with_properties(mut self, keys: Vec<String>) -> Result<Self> {
        let mut fields: Vec<Field> = self.output.fields().iter().map(|f| f.as_ref().clone()).collect();
        // The row kind of a changelog stays last.
        let op = (self.format == Format::DebeziumJson).then(|| fields.pop()).flatten();
        for k in &keys {
            let name = format!("property.{k}");
            if fields.iter().any(|f| *f.name() == name) {
                return Err(Error::Plan(format!("property column '{name}' is asked for twice or clashes")));
            }
            fields.push(Field::new(name, DataType::Utf8, true));
        }
        fields.extend(op);
        self.output = Arc::new(Schema::new(fields));
        self.properties = keys;
        Ok(self)
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// Decodes `records`: all at once when they all fit, else one by one
    /// to find and set aside the ones that do not.
    pub fn decode(&self, records: &[SourceRecord]) -> Result<Decoded> {
        let all: Vec<&SourceRecord> = records.iter().collect();
        if let Ok(batch) = self.decode_all(&all) {
            return Ok(Decoded { batch, dead: Vec::new() });
        }
        let mut good = Vec::new();
        let mut batches = Vec::new();
        let mut dead = Vec::new();
        for r in records {
            match self.decode_all(&[r]) {
                Ok(b) => {
                    good.push(r);
                    batches.push(b);
                }
                Err(reason) => {
                    let origin = Origin::Message { topic: r.topic.clone(), queue: r.queue, offset: r.offset };
                    dead.push(DeadLetter { origin, reason, body: r.body.clone() });
                }
            }
        }
        let batch = concat_batches(&self.output, &batches)?;
        // One row per good message, except that a changelog's update gives two.
        debug_assert!(self.format == Format::DebeziumJson || batch.num_rows() == good.len());
        Ok(Decoded { batch, dead })
    }

    /// Decodes every record or says why not.
    fn decode_all(&self, records: &[&SourceRecord]) -> Result<RecordBatch, String> {
        let mut ops = None;
        let expanded: Vec<&SourceRecord>;
        let (data, records) = match self.format {
            Format::Json => (self.json(records)?, records),
            Format::Csv { delimiter } => (self.csv(records, delimiter)?, records),
            Format::Raw => (self.raw_rows(records)?, records),
            Format::DebeziumJson => {
                let (data, from, kinds) = self.debezium(records)?;
                expanded = from.iter().map(|i| records[*i]).collect();
                ops = Some(kinds);
                (data, expanded.as_slice())
            }
        };
        let mut columns = data.columns().to_vec();
        columns.extend(self.metadata.iter().map(|m| m.column(records)));
        for k in &self.properties {
            columns.push(Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.properties.get(k).map(String::as_str)),
            )));
        }
        if let Some(ops) = ops {
            columns.push(Arc::new(StringArray::from(ops)));
        }
        RecordBatch::try_new(Arc::clone(&self.output), columns).map_err(|e| e.to_string())
    }

    fn raw_rows(&self, records: &[&SourceRecord]) -> Result<RecordBatch, String> {
        let column: ArrayRef = match self.data.field(0).data_type() {
            DataType::Utf8 => {
                let texts = records
                    .iter()
                    .map(|r| std::str::from_utf8(&r.body).map_err(|e| format!("the body is not UTF-8: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(StringArray::from(texts))
            }
            _ => Arc::new(BinaryArray::from_iter_values(records.iter().map(|r| &r.body[..]))),
        };
        RecordBatch::try_new(Arc::clone(&self.data), vec![column]).map_err(|e| e.to_string())
    }

    /// Each body one CSV record: all bodies as lines of one document, and
    /// exactly one row per body.
    fn csv(&self, records: &[&SourceRecord], delimiter: u8) -> Result<RecordBatch, String> {
        let mut text = Vec::new();
        for r in records {
            let body = r.body.strip_suffix(b"\n").unwrap_or(&r.body);
            if body.contains(&b'\n') {
                return Err("the body holds more than one CSV line".into());
            }
            text.extend_from_slice(body);
            text.push(b'\n');
        }
        let reader = datafusion::arrow::csv::ReaderBuilder::new(Arc::clone(&self.data))
            .with_delimiter(delimiter)
            .with_batch_size(records.len().max(1))
            .build(std::io::Cursor::new(text))
            .map_err(|e| e.to_string())?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let batch = concat_batches(&self.data, &batches).map_err(|e| e.to_string())?;
        if batch.num_rows() != records.len() {
            return Err(format!("{} CSV records for {} bodies", batch.num_rows(), records.len()));
        }
        Ok(batch)
    }

    /// Debezium change events: the rows (data columns), the record each
    /// came from and its kind.
    #[allow(clippy::type_complexity)]
    fn debezium(&self, records: &[&SourceRecord]) -> Result<(RecordBatch, Vec<usize>, Vec<&'static str>), String> {
        use crate::changelog::{DELETE, INSERT, UPDATE_AFTER, UPDATE_BEFORE};
        let image: Vec<Field> = self.data.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let image = DataType::Struct(image.into());
        let envelope = Arc::new(Schema::new(vec![
            Field::new("before", image.clone(), true),
            Field::new("after", image, true),
            Field::new("op", DataType::Utf8, false),
        ]));
        let events = self.json_as(records, &envelope)?;
        let before = events.column(0).as_struct();
        let after = events.column(1).as_struct();
        let op = events.column(2).as_string::<i32>();
        // (0 = before, 1 = after, event) per row.
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let (mut from, mut kinds) = (Vec::new(), Vec::new());
        for i in 0..events.num_rows() {
            let has = |image: &datafusion::arrow::array::StructArray, what: &str| {
                if image.is_valid(i) {
                    Ok(())
                } else {
                    Err(format!("a '{}' event without its {what} image", op.value(i)))
                }
            };
            let rows: &[(usize, &'static str)] = match op.value(i) {
                "c" | "r" => {
                    has(after, "after")?;
                    &[(1, INSERT)]
                }
                "u" => {
                    has(before, "before")?;
                    has(after, "after")?;
                    &[(0, UPDATE_BEFORE), (1, UPDATE_AFTER)]
                }
                "d" => {
                    has(before, "before")?;
                    &[(0, DELETE)]
                }
                other => return Err(format!("unknown Debezium op '{other}' (expected c, r, u or d)")),
            };
            for (image, kind) in rows {
                picks.push((*image, i));
                from.push(i);
                kinds.push(*kind);
            }
        }
        let mut columns = Vec::with_capacity(self.data.fields().len());
        for c in 0..self.data.fields().len() {
            let sides = [before.column(c).as_ref(), after.column(c).as_ref()];
            columns.push(datafusion::arrow::compute::interleave(&sides, &picks).map_err(|e| e.to_string())?);
        }
        let data = RecordBatch::try_new(Arc::clone(&self.data), columns).map_err(|e| e.to_string())?;
        Ok((data, from, kinds))
    }

    /// Each body exactly one JSON object.
    fn json(&self, records: &[&SourceRecord]) -> Result<RecordBatch, String> {
        self.json_as(records, &self.data)
    }

    /// Each body exactly one JSON object of `schema`. A text column takes
    /// any JSON value as text: numbers and booleans as written, objects and
    /// arrays as their JSON (where a ROW column would take an object as a
    /// struct), so nested data lands as structs or strings by the column's
    /// declared type.
    fn json_as(&self, records: &[&SourceRecord], schema: &SchemaRef) -> Result<RecordBatch, String> {
        let bodies = records.iter().map(|r| &r.body[..]);
        match json_rows(bodies, records.len(), schema) {
            Err(e) if has_text(schema.fields()) => {
                // Nested values bound for text columns, as their JSON text; other mistakes stay mistakes.
                let rewritten: Vec<std::borrow::Cow<'_, [u8]>> =
                    records.iter().map(|r| as_text(&r.body, schema.fields())).collect();
                json_rows(rewritten.iter().map(|b| b.as_ref()), records.len(), schema).map_err(|_| e)
            }
            decoded => decoded,
        }
    }
}

/// Decodes `n` bodies, each exactly one JSON object of `schema`.
fn json_rows<'a>(bodies: impl Iterator<Item = &'a [u8]>, n: usize, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(n.max(1))
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for body in bodies {
        let before = decoder.len();
        let used = decoder.decode(body).map_err(|e| e.to_string())?;
        if used != body.len() || decoder.len() != before + 1 {
            let rest = body.len() - used;
            return Err(if decoder.len() == before {
                "the body is not a complete JSON object".to_owned()
            } else {
                format!("the body holds more than one JSON value ({rest} bytes left)")
            });
        }
    }
    Ok(decoder.flush().map_err(|e| e.to_string())?.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
}

/// Whether any of `fields`, at any depth, is text.
fn has_text(fields: &datafusion::arrow::datatypes::Fields) -> bool {
    fields.iter().any(|f| match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Struct(inner) => has_text(inner),
        DataType::List(item) | DataType::LargeList(item) => has_text(&[Arc::clone(item)].into()),
        _ => false,
    })
}

/// `body` with every object or array that a text field of `fields` gets
/// replaced by its JSON text, exactly as written (unchanged when there is
/// none, or it is not JSON).
fn as_text<'a>(body: &'a [u8], fields: &datafusion::arrow::datatypes::Fields) -> std::borrow::Cow<'a, [u8]> {
    let Ok(raw) = serde_json::from_slice::<&serde_json::value::RawValue>(body) else {
        return std::borrow::Cow::Borrowed(body);
    };
    match stringify(raw, &DataType::Struct(fields.clone())) {
        Some(text) => std::borrow::Cow::Owned(text.into_bytes()),
        None => std::borrow::Cow::Borrowed(body),
    }
}

/// The JSON `raw` with the objects and arrays it holds where `data_type`
/// has text turned into strings of their text; `None` when there are none.
fn stringify(raw: &serde_json::value::RawValue, data_type: &DataType) -> Option<String> {
    use serde_json::value::RawValue;
    let text = raw.get();
    let nested = text.starts_with('{') || text.starts_with('[');
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if nested => serde_json::to_string(text).ok(),
        DataType::Struct(fields) if text.starts_with('{') => {
            let members: Vec<(String, &RawValue)> =
                serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(text).ok()?.into_iter().collect();
            let mut changed = false;
            let mut out = Vec::with_capacity(members.len());
            for (name, value) in &members {
                let field = fields.iter().find(|f| f.name() == name);
                let new = field.and_then(|f| stringify(value, f.data_type()));
                changed |= new.is_some();
                out.push(format!("{}:{}", serde_json::to_string(name).ok()?, new.as_deref().unwrap_or(value.get())));
            }
            changed.then(|| format!("{{{}}}", out.join(",")))
        }
        DataType::List(item) | DataType::LargeList(item) if text.starts_with('[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            let new: Vec<Option<String>> = items.iter().map(|v| stringify(v, item.data_type())).collect();
            new.iter().any(Option::is_some).then(|| {
                let parts: Vec<&str> = items.iter().zip(&new).map(|(v, n)| n.as_deref().unwrap_or(v.get())).collect();
                format!("[{}]", parts.join(","))
            })
        }
        _ => None,
    }
}
