//! JSON bodies into a declared schema: good messages in order with their
//! metadata, bad ones set aside with the reason and their coordinates.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMillisecondType, UInt64Type};
use rill_streams::{Decoder, Metadata, SourceRecord};

fn record(offset: u64, body: &str) -> SourceRecord {
    SourceRecord {
        topic: "bids".into(),
        queue: 3,
        offset,
        tag: offset.is_multiple_of(2).then(|| "even".to_owned()),
        store_time: 1_700_000_000_000 + offset as i64,
        properties: [("region".to_owned(), format!("r{}", offset % 3))].into_iter().filter(|_| offset != 4).collect(),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn decoder() -> Decoder {
    let data = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Utf8, true),
        Field::new("price", DataType::Int64, false),
    ]));
    Decoder::new(data, vec![Metadata::Offset, Metadata::Tag, Metadata::StoreTime]).unwrap()
}

#[test]
fn good_messages_decode_with_their_metadata() {
    let d = decoder();
    let out = d
        .decode(&[
            record(10, r#"{"auction": 1, "bidder": "ann", "price": 5}"#),
            record(11, r#"{"auction": 2, "price": 7}"#),
        ])
        .unwrap();
    assert!(out.dead.is_empty());
    let b = out.batch;
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.schema().field(3).name(), "queue_offset");
    assert_eq!(b.column(2).as_primitive::<Int64Type>().values(), &[5, 7]);
    assert!(b.column(1).is_null(1), "a missing nullable field is null");
    assert_eq!(b.column(3).as_primitive::<UInt64Type>().values(), &[10, 11]);
    assert_eq!(b.column(4).as_string::<i32>().value(0), "even");
    assert!(b.column(4).is_null(1));
    assert_eq!(b.column(5).as_primitive::<TimestampMillisecondType>().value(1), 1_700_000_000_011);
}

#[test]
fn bad_messages_are_set_aside_with_reason_and_coordinates() {
    let d = decoder();
    let records = [
        record(1, r#"{"auction": 1, "price": 5}"#),
        record(2, r#"{"auction": 2, "price": "#),
        record(3, r#"{"auction": "two", "price": 5}"#),
        record(4, r#"{"auction": 4}"#),
        record(5, r#"{"auction": 5, "price": 1} {"auction": 6, "price": 1}"#),
        record(6, ""),
        record(7, r#"{"auction": 7, "price": 9}"#),
    ];
    let out = d.decode(&records).unwrap();
    assert_eq!(out.batch.num_rows(), 2);
    assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().values(), &[1, 7], "good ones kept, in order");
    let dead: Vec<u64> = out.dead.iter().map(|d| d.message().unwrap().2).collect();
    assert_eq!(dead, [2, 3, 4, 5, 6]);
    for d in &out.dead {
        assert_eq!(d.message().map(|m| (m.0, m.1)), Some(("bids", 3)));
        assert!(!d.reason.is_empty());
    }
    let reason = |o: u64| out.dead.iter().find(|d| d.message().unwrap().2 == o).unwrap().reason.clone();
    assert!(reason(3).to_lowercase().contains("two") || reason(3).to_lowercase().contains("int"), "{}", reason(3));
    assert!(reason(4).contains("price"), "{}", reason(4));
    assert!(reason(5).contains("more than one"), "{}", reason(5));
}

#[test]
fn a_metadata_column_may_not_shadow_a_data_column() {
    let data = Arc::new(Schema::new(vec![Field::new("tag", DataType::Utf8, true)]));
    let err = Decoder::new(data, vec![Metadata::Tag]).unwrap_err();
    assert!(err.to_string().contains("'tag'"), "{err}");
}

#[test]
fn csv_bodies_decode_one_record_each_and_bad_ones_are_set_aside() {
    let d = decoder().with_format(rill_streams::Format::Csv { delimiter: b';' });
    let out = d
        .decode(&[record(1, "1;ann;5"), record(2, "2;;7\n"), record(3, "x;bob;1"), record(4, "3;a;1\n4;b;2")])
        .unwrap();
    assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
    assert!(out.batch.column(1).is_null(1), "an empty field of a nullable column is null");
    let dead: Vec<u64> = out.dead.iter().map(|d| d.message().unwrap().2).collect();
    assert_eq!(dead, vec![3, 4], "a wrong type and two lines in one body: {:?}", out.dead);
    assert!(out.dead[1].reason.contains("more than one CSV line"), "{}", out.dead[1].reason);
}

#[test]
fn raw_bodies_become_one_column_with_their_metadata() {
    let d = rill_streams::Decoder::raw(vec![Metadata::Offset]).unwrap();
    let out = d.decode(&[record(7, "anything"), record(8, "\u{1F600} bytes")]).unwrap();
    assert!(out.dead.is_empty());
    assert_eq!(out.batch.column(0).as_binary::<i32>().value(1), "\u{1F600} bytes".as_bytes());
    assert_eq!(out.batch.column(1).as_primitive::<UInt64Type>().values(), &[7, 8]);

    let text = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, false)]));
    let d = Decoder::new(text, vec![]).unwrap().with_format(rill_streams::Format::Raw);
    let mut bad = record(9, "");
    bad.body = bytes::Bytes::from_static(&[0xff, 0xfe]);
    let out = d.decode(&[record(8, "fine"), bad]).unwrap();
    assert_eq!(out.batch.num_rows(), 1);
    assert!(out.dead[0].reason.contains("not UTF-8"), "{}", out.dead[0].reason);
}

#[test]
fn properties_become_columns_and_a_missing_one_is_null() {
    let d = decoder().with_properties(vec!["region".into()]).unwrap();
    let records: Vec<SourceRecord> =
        (3..6).map(|o| record(o, r#"{"auction": 1, "bidder": "a", "price": 2}"#)).collect();
    let out = d.decode(&records).unwrap();
    assert!(out.dead.is_empty());
    let column = out.batch.column_by_name("property.region").unwrap();
    let regions: Vec<Option<&str>> = column.as_string::<i32>().iter().collect();
    assert_eq!(regions, [Some("r0"), None, Some("r2")]);
    assert!(decoder().with_properties(vec!["x".into(), "x".into()]).is_err());
}

#[test]
fn debezium_events_become_changelog_rows_with_their_kind_and_metadata() {
    let d = decoder().with_format(rill_streams::Format::DebeziumJson).with_properties(vec!["region".into()]).unwrap();
    let names: Vec<String> = d.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names.last().map(String::as_str), Some("__op"), "the row kind is the last column: {names:?}");
    let out = d
        .decode(&[
            record(1, r#"{"before": null, "after": {"auction": 1, "price": 5}, "op": "c", "ts_ms": 1}"#),
            record(2, r#"{"before": {"auction": 1, "price": 5}, "after": {"auction": 1, "price": 9}, "op": "u"}"#),
            record(3, r#"{"before": {"auction": 1, "price": 9}, "after": null, "op": "d"}"#),
            record(5, r#"{"before": null, "after": {"auction": 2, "price": 1}, "op": "r"}"#),
            record(6, r#"{"before": null, "after": {"auction": 3, "price": 1}, "op": "u"}"#),
            record(7, r#"{"before": null, "after": {"auction": 3, "price": 1}, "op": "x"}"#),
            record(8, r#"{"before": null, "after": {"price": 1}, "op": "c"}"#),
        ])
        .unwrap();
    let b = &out.batch;
    let ops: Vec<&str> = b.column(b.num_columns() - 1).as_string::<i32>().iter().map(Option::unwrap).collect();
    assert_eq!(ops, ["+I", "-U", "+U", "-D", "+I"]);
    let prices: Vec<i64> = b.column(2).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(prices, [5, 5, 9, 9, 1]);
    // Metadata and properties follow their message into every row it gives.
    let offsets: Vec<u64> = b.column(3).as_primitive::<UInt64Type>().values().to_vec();
    assert_eq!(offsets, [1, 2, 2, 3, 5]);
    let regions: Vec<Option<&str>> = b.column(6).as_string::<i32>().iter().collect();
    assert_eq!(regions, [Some("r1"), Some("r2"), Some("r2"), Some("r0"), Some("r2")]);
    let reasons: Vec<(u64, &str)> = out.dead.iter().map(|d| (d.message().unwrap().2, d.reason.as_str())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].0 == 6 && reasons[0].1.contains("without its before image"), "{reasons:?}");
    assert!(reasons[1].0 == 7 && reasons[1].1.contains("unknown Debezium op 'x'"), "{reasons:?}");
    assert!(reasons[2].0 == 8 && reasons[2].1.contains("auction"), "a missing NOT NULL column is named: {reasons:?}");
}

mod arbitrary_bodies {
    use super::*;
    use proptest::prelude::*;
    use rill_streams::Format;

    fn formats() -> [Format; 4] {
        [Format::Json, Format::Csv { delimiter: b',' }, Format::Raw, Format::DebeziumJson]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Bodies come from anyone who can send to a topic: whatever the
        /// bytes, decoding returns rows or dead letters, never a panic,
        /// and every message is accounted for.
        #[test]
        fn any_bytes_decode_or_are_set_aside(
            bodies in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..64),
                    "[{}\\[\\]\":,a-z0-9 ]{0,48}".prop_map(String::into_bytes),
                    Just(br#"{"before": null, "after": {"auction": 1, "price": 2}, "op": "c"}"#.to_vec()),
                ],
                1..8,
            ),
        ) {
            for format in formats() {
                let d = decoder().with_format(format);
                let records: Vec<SourceRecord> = bodies
                    .iter()
                    .enumerate()
                    .map(|(i, b)| SourceRecord { body: bytes::Bytes::copy_from_slice(b), ..record(i as u64, "") })
                    .collect();
                let out = d.decode(&records).unwrap();
                let dead: std::collections::HashSet<u64> = out.dead.iter().map(|d| d.message().unwrap().2).collect();
                // A message gives one row (two for a changelog update) unless it is a dead letter.
                prop_assert!(out.batch.num_rows() >= records.len() - dead.len());
                prop_assert!(out.batch.num_rows() <= 2 * (records.len() - dead.len()));
            }
        }
    }
}

#[test]
fn nested_json_lands_as_structs_or_as_text_by_the_declared_type() {
    use datafusion::arrow::datatypes::Int32Type;
    let device =
        DataType::Struct(vec![Field::new("id", DataType::Utf8, true), Field::new("fw", DataType::Int32, true)].into());
    let data = Arc::new(Schema::new(vec![
        Field::new("device", device, true),
        Field::new("payload", DataType::Utf8, true),
        Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
        Field::new("code", DataType::Utf8, true),
    ]));
    let d = Decoder::new(data, vec![]).unwrap();
    let out = d
        .decode(&[
            record(1, r#"{"device": {"id": "d1", "fw": 3}, "payload": {"t": [1, 2], "ok": true}, "tags": ["a", {"b": 1}], "code": 404}"#),
            record(2, r#"{"device": {"id": "d2"}, "payload": "plain", "code": "E1"}"#),
            record(3, r#"{"device": "not an object"}"#),
        ])
        .unwrap();
    let b = out.batch;
    assert_eq!(b.num_rows(), 2, "{:?}", out.dead);
    let device = b.column(0).as_struct();
    assert_eq!(device.column(0).as_string::<i32>().value(0), "d1");
    assert_eq!(device.column(1).as_primitive::<Int32Type>().value(0), 3);
    assert!(device.column(1).is_null(1));
    let payload = b.column(1).as_string::<i32>();
    assert_eq!(payload.value(0), r#"{"t": [1, 2], "ok": true}"#, "an object bound for text is its JSON, as written");
    assert_eq!(payload.value(1), "plain");
    let tags = b.column(2).as_list::<i32>().value(0);
    let tags = tags.as_string::<i32>();
    assert_eq!((tags.value(0), tags.value(1)), ("a", r#"{"b": 1}"#));
    let code = b.column(3).as_string::<i32>();
    assert_eq!((code.value(0), code.value(1)), ("404", "E1"), "a number bound for text is its digits");
    assert_eq!(out.dead.len(), 1, "text where an object is declared is still a mistake");
    assert!(out.dead[0].reason.contains("device") || out.dead[0].reason.contains("struct"), "{}", out.dead[0].reason);
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z \\\\\"{}\\[\\]é😀]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Whatever an object or array holds, a text column gets exactly its JSON text, spaced as sent.
    #[test]
    fn nested_values_bound_for_text_keep_their_exact_text(value in json_value(), pretty in proptest::bool::ANY) {
        let nested = matches!(value, serde_json::Value::Object(_) | serde_json::Value::Array(_));
        proptest::prop_assume!(nested);
        let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
        let body = format!("{{\"n\": 1, \"payload\": {text}}}");
        let data = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, true),
        ]));
        let out = Decoder::new(data, vec![]).unwrap().decode(&[record(1, &body)]).unwrap();
        proptest::prop_assert!(out.dead.is_empty(), "{:?}", out.dead);
        proptest::prop_assert_eq!(out.batch.column(1).as_string::<i32>().value(0), text.as_str());
    }
}
