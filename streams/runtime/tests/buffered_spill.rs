//! Operators that hold whole rows (top-N, window joins, interval and
//! regular joins) within a tiny memory budget, their rows moving to disk,
//! give the results of the same operators holding everything in memory —
//! across a checkpoint restored mid-stream too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use proptest::prelude::*;
use rill_state::StateConfig;
use rill_streams::join::{IntervalJoin, JoinSide, WindowJoin};
use rill_streams::topn::{TopNWindows, WindowTopN};
use rill_streams::{Operator, Output};
use rill_time::WindowSpec;

fn schema(prefix: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(format!("{prefix}key"), DataType::Int64, false),
        Field::new(format!("{prefix}ts"), DataType::Int64, false),
        Field::new(format!("{prefix}v"), DataType::Int64, false),
        Field::new(format!("{prefix}pad"), DataType::Utf8, false),
    ]))
}

fn batch(schema: &SchemaRef, rows: &[(i64, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            // Some bulk, so that a small budget holds few rows.
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| format!("{:0>200}", r.2)))),
        ],
    )
    .unwrap()
}

/// A join side keyed by `{prefix}key` with event time `{prefix}ts`.
fn side(schema: &SchemaRef, prefix: &str) -> JoinSide {
    JoinSide { schema: Arc::clone(schema), keys: vec![format!("{prefix}key")], time: Some(format!("{prefix}ts")) }
}

/// Output rows as sorted lines (operators may emit a window's rows in any order).
fn lines(out: &[RecordBatch]) -> Vec<String> {
    let mut lines: Vec<String> = out
        .iter()
        .filter(|b| b.num_rows() > 0)
        .flat_map(|b| {
            let text = pretty_format_batches(std::slice::from_ref(b)).unwrap().to_string();
            text.lines().filter(|l| l.starts_with("| ")).skip(1).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// Feeds `chunks` (port, rows) to both operators with watermarks behind
/// the rows; restores the small one from a checkpoint at `restore_at`;
/// returns both outputs (their late rows must agree).
fn run(
    small: &mut Box<dyn Operator>,
    roomy: &mut Box<dyn Operator>,
    fresh: &dyn Fn() -> Box<dyn Operator>,
    chunks: &[(usize, RecordBatch)],
    restore_at: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut a, mut b) = (Output::default(), Output::default());
    let mut max_ts = i64::MIN;
    for (i, (port, rows)) in chunks.iter().enumerate() {
        small.process(*port, rows.clone(), &mut a).unwrap();
        roomy.process(*port, rows.clone(), &mut b).unwrap();
        let ts = rows.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        max_ts = max_ts.max(ts.values().iter().copied().max().unwrap_or(i64::MIN));
        // Rows come at most 500 ms out of order.
        small.advance(max_ts - 500, &mut a).unwrap();
        roomy.advance(max_ts - 500, &mut b).unwrap();
        if i == restore_at {
            let state = small.snapshot().unwrap();
            *small = fresh();
            if let Some(s) = state {
                small.restore(&s).unwrap();
            }
            small.set_watermark(max_ts - 500);
        }
    }
    small.advance(i64::MAX, &mut a).unwrap();
    roomy.advance(i64::MAX, &mut b).unwrap();
    assert_eq!(lines(&a.late), lines(&b.late));
    (lines(&a.rows), lines(&b.rows))
}

/// Chunks of (input port, rows of key, time, value).
type Chunks = Vec<(usize, Vec<(i64, i64, i64)>)>;

fn rows_strategy() -> impl Strategy<Value = Chunks> {
    proptest::collection::vec((0usize..2, proptest::collection::vec((0i64..30, 0i64..400, 0i64..1_000), 1..30)), 1..40)
        .prop_map(|chunks| {
            // Time moves forward chunk by chunk, with jitter inside a chunk.
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, (port, rows))| {
                    (port, rows.into_iter().map(|(k, dt, v)| (k, i as i64 * 300 + dt, v)).collect())
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn top_n_with_buffers_on_disk_ranks_as_in_memory(
        chunks in rows_strategy(),
        n in 1usize..4,
        size in prop_oneof![Just(1_000i64), Just(3_000)],
        restore_at in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let input = schema("");
        let spec = WindowSpec::tumbling(size).unwrap();
        let make = |budget: Option<usize>| -> Box<dyn Operator> {
            let op = WindowTopN::new(Arc::clone(&input), &["key"], "v", n, TopNWindows::Assign { spec, time: 1 }).unwrap();
            match budget {
                Some(b) => Box::new(op.with_state(StateConfig::new(b, dir.path()).unwrap())),
                None => Box::new(op),
            }
        };
        let chunks: Vec<(usize, RecordBatch)> = chunks.iter().map(|(_, rows)| (0, batch(&input, rows))).collect();
        let (mut small, mut roomy) = (make(Some(16 << 10)), make(None));
        let (a, b) = run(&mut small, &mut roomy, &|| make(Some(16 << 10)), &chunks, restore_at);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn a_window_join_with_rows_on_disk_pairs_as_in_memory(
        chunks in rows_strategy(),
        size in prop_oneof![Just(1_000i64), Just(2_500)],
        restore_at in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (left, right) = (schema("l_"), schema("r_"));
        let spec = WindowSpec::tumbling(size).unwrap();
        let make = |budget: Option<usize>| -> Box<dyn Operator> {
            let op = WindowJoin::new(&side(&left, "l_"), &side(&right, "r_"), spec).unwrap();
            match budget {
                Some(b) => Box::new(op.with_state(StateConfig::new(b, dir.path()).unwrap())),
                None => Box::new(op),
            }
        };
        let chunks: Vec<(usize, RecordBatch)> = chunks
            .iter()
            .map(|(port, rows)| (*port, batch(if *port == 0 { &left } else { &right }, rows)))
            .collect();
        let (mut small, mut roomy) = (make(Some(16 << 10)), make(None));
        let (a, b) = run(&mut small, &mut roomy, &|| make(Some(16 << 10)), &chunks, restore_at);
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn interval_and_regular_joins_with_rows_on_disk_pair_as_in_memory(
        chunks in rows_strategy(),
        kind in 0u8..3,
        restore_at in 0usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (left, right) = (schema("l_"), schema("r_"));
        let make = |budget: Option<usize>| -> Box<dyn Operator> {
            let bounds = (kind == 0).then_some((-400, 300));
            let mut op = IntervalJoin::new(&side(&left, "l_"), &side(&right, "r_"), bounds).unwrap();
            if kind == 1 {
                op = op.with_ttl(700).unwrap();
            }
            match budget {
                Some(b) => Box::new(op.with_state(StateConfig::new(b, dir.path()).unwrap())),
                None => Box::new(op),
            }
        };
        let chunks: Vec<(usize, RecordBatch)> = chunks
            .iter()
            .map(|(port, rows)| (*port, batch(if *port == 0 { &left } else { &right }, rows)))
            .collect();
        let (mut small, mut roomy) = (make(Some(16 << 10)), make(None));
        let (a, b) = run(&mut small, &mut roomy, &|| make(Some(16 << 10)), &chunks, restore_at);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn a_regular_join_over_thousands_of_keys_moves_its_rows_out_of_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (left, right) = (schema("l_"), schema("r_"));
    let mut join = IntervalJoin::new(&side(&left, "l_"), &side(&right, "r_"), None)
        .unwrap()
        .with_ttl(1_000_000)
        .unwrap()
        .with_state(StateConfig::new(64 << 10, dir.path()).unwrap());
    let mut out = Output::default();
    // 3,000 keys on the left, then each key once on the right.
    for start in (0..3_000).step_by(300) {
        let rows: Vec<(i64, i64, i64)> = (start..start + 300).map(|i| (i, i, i)).collect();
        join.process(0, batch(&left, &rows), &mut out).unwrap();
    }
    assert!(join.rows_on_disk() > 2_000, "{}", join.rows_on_disk());
    for start in (0..3_000).step_by(300) {
        let rows: Vec<(i64, i64, i64)> = (start..start + 300).map(|i| (i, 5_000 + i, -i)).collect();
        join.process(1, batch(&right, &rows), &mut out).unwrap();
    }
    let joined: usize = out.rows.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(joined, 3_000, "every right row met its left row, in memory or not");
    let snapshot = join.snapshot().unwrap().unwrap();
    assert_eq!(snapshot.num_rows(), 6_000, "a checkpoint holds the rows out of memory too");
}

#[test]
fn buffers_past_the_budget_go_to_disk_and_come_back_when_their_window_fires() {
    let dir = tempfile::tempdir().unwrap();
    let (left, right) = (schema("l_"), schema("r_"));
    let spec = WindowSpec::tumbling(10_000).unwrap();
    let mut join = WindowJoin::new(&side(&left, "l_"), &side(&right, "r_"), spec)
        .unwrap()
        .with_state(StateConfig::new(64 << 10, dir.path()).unwrap());
    let mut out = Output::default();
    // 2,000 rows a side in one window: far past 64 KiB.
    for start in (0..2_000).step_by(200) {
        let rows: Vec<(i64, i64, i64)> = (start..start + 200).map(|i| (i, i, i)).collect();
        join.process(0, batch(&left, &rows), &mut out).unwrap();
        join.process(1, batch(&right, &rows), &mut out).unwrap();
    }
    assert!(join.rows_on_disk() > 3_000, "{}", join.rows_on_disk());
    assert_eq!(join.state_size(), 4_000);
    let snapshot = join.snapshot().unwrap().unwrap();
    assert_eq!(snapshot.num_rows(), 4_000, "a checkpoint holds the rows on disk too");
    join.advance(20_000, &mut out).unwrap();
    let joined: usize = out.rows.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(joined, 2_000, "every left row met its right row");
    assert_eq!(join.state_size(), 0);
    assert_eq!(join.rows_on_disk(), 0);
}
