//! Fuzzes the streams runtime's message body decoder in every format
//! (JSON, CSV, raw, Debezium change events): bodies come from anyone who
//! can send to a topic, so no input may make it panic. The schema has a
//! struct, a list and text columns, so nested values bound for text (taken
//! as their JSON text) are fuzzed too.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rill_streams::{Decoder, Format, Metadata, SourceRecord};

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(
            "ctx",
            DataType::Struct(vec![Field::new("user", DataType::Utf8, true), Field::new("ms", DataType::Int32, true)].into()),
            true,
        ),
        Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
    ]));
    let records: Vec<SourceRecord> = data
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, body)| SourceRecord {
            topic: "t".into(),
            queue: 0,
            offset: i as u64,
            tag: None,
            store_time: 0,
            properties: Default::default(),
            body: bytes::Bytes::copy_from_slice(body),
        })
        .collect();
    for format in [Format::Json, Format::Csv { delimiter: b',' }, Format::DebeziumJson] {
        if let Ok(d) = Decoder::new(Arc::clone(&schema), vec![Metadata::Offset]) {
            let _ = d.with_format(format).decode(&records);
        }
    }
});
