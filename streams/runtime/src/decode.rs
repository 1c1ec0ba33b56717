//! Message bodies → Arrow: decodes JSON bodies into a declared schema, adds
//! the message metadata columns asked for, and sets aside every message
//! that does not fit (bad JSON, a wrong type, a missing required field)
//! with the reason and where it came from — a bad message never stops the
//! others and is never dropped without a trace.
//!
//! It owns decoding only; where messages come from and where dead letters
//! go are the caller's.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
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
}

impl Metadata {
    fn field(self) -> Field {
        match self {
            Metadata::Topic => Field::new("topic", DataType::Utf8, false),
            Metadata::Queue => Field::new("queue_id", DataType::UInt32, false),
            Metadata::Offset => Field::new("queue_offset", DataType::UInt64, false),
            Metadata::Tag => Field::new("tag", DataType::Utf8, true),
            Metadata::StoreTime => Field::new("store_time", DataType::Timestamp(TimeUnit::Millisecond, None), false),
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
        }
    }
}

/// A message that did not decode, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic it was read from.
    pub topic: String,
    /// Queue of the topic.
    pub queue: u32,
    /// Offset in the queue.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

/// The outcome of decoding a batch of messages.
#[derive(Debug)]
pub struct Decoded {
    /// The rows of every message that fit the schema, in order.
    pub batch: RecordBatch,
    /// The messages that did not.
    pub dead: Vec<DeadLetter>,
}

/// Decodes JSON message bodies into a declared schema.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    data: SchemaRef,
    metadata: Vec<Metadata>,
    output: SchemaRef,
}

impl JsonDecoder {
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
        Ok(Self { data, metadata, output: Arc::new(Schema::new(fields)) })
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
                    dead.push(DeadLetter { topic: r.topic.clone(), queue: r.queue, offset: r.offset, reason })
                }
            }
        }
        let batch = concat_batches(&self.output, &batches)?;
        debug_assert_eq!(batch.num_rows(), good.len());
        Ok(Decoded { batch, dead })
    }

    /// Decodes every record (each body must be exactly one JSON object) or
    /// says why not.
    fn decode_all(&self, records: &[&SourceRecord]) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.data))
            .with_batch_size(records.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for r in records {
            let before = decoder.len();
            let body = &r.body[..];
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
        let data = decoder
            .flush()
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.data)));
        let mut columns = data.columns().to_vec();
        columns.extend(self.metadata.iter().map(|m| m.column(records)));
        RecordBatch::try_new(Arc::clone(&self.output), columns).map_err(|e| e.to_string())
    }
}
