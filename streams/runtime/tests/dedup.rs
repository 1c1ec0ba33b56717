//! Deduplication within a time bound against a direct computation.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use proptest::prelude::*;
use rill_streams::Dedup;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false), Field::new("ts", DataType::Int64, false)]))
}

fn batch(rows: &[(String, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

proptest! {
    #[test]
    fn in_time_order_it_keeps_what_the_definition_keeps(
        within in 1i64..100,
        mut rows in proptest::collection::vec((0u8..5, 0i64..1_000), 1..200),
        cut in 1usize..30,
    ) {
        rows.sort_by_key(|r| r.1);
        let rows: Vec<(String, i64)> = rows.into_iter().map(|(k, t)| (format!("k{k}"), t)).collect();
        let mut d = Dedup::new(&schema(), &["id"], "ts", within).unwrap();
        let mut kept = Vec::new();
        for chunk in rows.chunks(cut) {
            let out = d.apply(&batch(chunk)).unwrap();
            let ids = out.column(0).as_string::<i32>();
            let ts = out.column(1).as_primitive::<Int64Type>();
            for i in 0..out.num_rows() {
                kept.push((ids.value(i).to_owned(), ts.value(i)));
            }
            // Event time has reached the chunk's last row.
            d.advance(chunk.last().unwrap().1 - 1).unwrap();
        }
        // Definition: a row is kept when its key's last kept row is `within` or more before it.
        let mut last: HashMap<String, i64> = HashMap::new();
        let mut want = Vec::new();
        for (k, t) in &rows {
            if last.get(k).is_none_or(|l| t - l >= within) {
                last.insert(k.clone(), *t);
                want.push((k.clone(), *t));
            }
        }
        prop_assert_eq!(kept, want);
        prop_assert!(d.keys() <= 5);
    }
}

#[test]
fn state_is_forgotten_behind_the_watermark_and_settings_are_checked() {
    let mut d = Dedup::new(&schema(), &["id"], "ts", 100).unwrap();
    let first = d.apply(&batch(&[("a".into(), 10), ("a".into(), 50), ("b".into(), 60)])).unwrap();
    assert_eq!(first.num_rows(), 2);
    d.advance(109).unwrap();
    assert_eq!(d.keys(), 2);
    // Expired keys are reclaimed each time event time moves an eighth of the bound.
    d.advance(121).unwrap();
    assert_eq!(d.keys(), 1, "a's bound ended at 110");
    assert!(Dedup::new(&schema(), &["id"], "ts", 0).is_err());
    assert!(Dedup::new(&schema(), &[], "ts", 10).is_err());
    assert!(Dedup::new(&schema(), &["nope"], "ts", 10).unwrap_err().to_string().contains("'nope'"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn with_keys_spilled_to_disk_it_keeps_the_same_rows(
        within in 1i64..400,
        mut rows in proptest::collection::vec((0u16..400, 0i64..2_000), 1..800),
    ) {
        rows.sort_by_key(|r| r.1);
        let rows: Vec<(String, i64)> = rows.into_iter().map(|(k, t)| (format!("key-{k:05}"), t)).collect();
        let dir = tempfile::tempdir().unwrap();
        let config = rill_state::StateConfig::new(rill_state::MIN_BUDGET, dir.path()).unwrap();
        let mut small = Dedup::new(&schema(), &["id"], "ts", within).unwrap().with_state(config);
        let mut roomy = Dedup::new(&schema(), &["id"], "ts", within).unwrap();
        for chunk in rows.chunks(16) {
            let a = small.apply(&batch(chunk)).unwrap();
            let b = roomy.apply(&batch(chunk)).unwrap();
            prop_assert_eq!(a, b);
            small.advance(chunk.last().unwrap().1 - 1).unwrap();
            roomy.advance(chunk.last().unwrap().1 - 1).unwrap();
            prop_assert!(small.state().memory_bytes() <= rill_state::MIN_BUDGET);
        }
        // A checkpoint of spilled state restores into a fresh operator.
        let (snap_small, snap_roomy) = (small.snapshot().unwrap(), roomy.snapshot().unwrap());
        prop_assert_eq!(snap_small.as_ref().map(|b| b.num_rows()), snap_roomy.as_ref().map(|b| b.num_rows()));
        if let Some(snap) = snap_small {
            let mut restored = Dedup::new(&schema(), &["id"], "ts", within).unwrap();
            restored.restore(&snap).unwrap();
            let probe: Vec<(String, i64)> = rows.iter().map(|(k, t)| (k.clone(), t + within / 2)).collect();
            prop_assert_eq!(restored.apply(&batch(&probe)).unwrap(), roomy.apply(&batch(&probe)).unwrap());
        }
    }
}
