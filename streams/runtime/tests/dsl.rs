//! The DSL as a user meets it: jobs built from streams, run by pushing
//! batches and watermarks into a dataflow.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::prelude::{col, lit};
use rill_streams::dsl::{Job, Tumbling};
use rill_streams::{CollectSink, Sink, agg};

fn schema(value: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new(value, DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]))
}

fn batch(s: &SchemaRef, rows: &[(&str, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(s),
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
    let i = b.schema().index_of(name).unwrap();
    b.column(i).as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn a_mistake_is_reported_by_build_naming_the_step() {
    let job = Job::new();
    job.source("in", schema("v"), "ts")
        .filter(col("v").gt(lit(1)))
        .filter(col("nope").eq(lit(1)))
        .sink(CollectSink::new());
    let err = job.build().unwrap_err().to_string();
    assert!(err.contains("filter") && err.contains("nope"), "{err}");

    let job = Job::new();
    job.source("in", schema("v"), "missing").sink(CollectSink::new());
    let err = job.build().unwrap_err().to_string();
    assert!(err.contains("event-time column 'missing'"), "{err}");

    let job = Job::new();
    job.source("in", schema("v"), "ts")
        .select(vec![col("k"), col("v")])
        .key_by(&["k"])
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(vec![agg::count("v")])
        .sink(CollectSink::new());
    let err = job.build().unwrap_err().to_string();
    assert!(err.contains("needs event time"), "a window after dropping the time column: {err}");
}

#[test]
fn a_union_fires_windows_only_when_every_input_has_reached_the_end() {
    let s = schema("v");
    let job = Job::new();
    let a = job.source("a", Arc::clone(&s), "ts");
    let b = job.source("b", Arc::clone(&s), "ts");
    let out = CollectSink::new();
    a.union(vec![b])
        .key_by(&["k"])
        .window(Tumbling::of(Duration::from_millis(10)))
        .aggregate(vec![agg::sum("v").alias("total")])
        .sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("a", batch(&s, &[("x", 1, 1), ("x", 2, 5)])).unwrap();
    flow.push("b", batch(&s, &[("x", 10, 3)])).unwrap();
    flow.watermark("a", 20).unwrap();
    assert_eq!(out.rows(), 0, "input b is still at the start");
    flow.watermark("b", 9).unwrap();
    assert_eq!(ints(&out.batches()[0], "total"), vec![13]);
    let m = flow.metrics();
    let window = m.iter().find(|n| n.name.starts_with("window")).unwrap();
    assert_eq!((window.rows_in, window.rows_out, window.watermark), (3, 1, 9));
}

#[test]
fn late_rows_go_to_the_late_output_and_are_counted() {
    let s = schema("v");
    let job = Job::new();
    let late = CollectSink::new();
    job.late_rows(late.clone());
    job.source("in", Arc::clone(&s), "ts")
        .key_by(&["k"])
        .window(Tumbling::of(Duration::from_millis(10)))
        .aggregate(vec![agg::count("v")])
        .sink(CollectSink::new());
    let mut flow = job.build().unwrap();
    flow.push("in", batch(&s, &[("x", 1, 1)])).unwrap();
    flow.watermark("in", 15).unwrap();
    flow.push("in", batch(&s, &[("x", 2, 4), ("x", 3, 16)])).unwrap();
    assert_eq!(ints(&late.concat(&s).unwrap(), "v"), vec![2]);
    assert_eq!(flow.metrics().iter().map(|m| m.late).sum::<u64>(), 1);
}

#[test]
fn top_n_keeps_ties_and_fires_at_the_window_end() {
    let s = schema("price");
    let job = Job::new();
    let out = CollectSink::new();
    job.source("bids", Arc::clone(&s), "ts")
        .window_all(Tumbling::of(Duration::from_millis(10)))
        .top_n(2, "price")
        .sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("bids", batch(&s, &[("a", 5, 1), ("b", 9, 2), ("c", 7, 3), ("d", 9, 4), ("e", 1, 12)])).unwrap();
    flow.watermark("bids", 8).unwrap();
    assert_eq!(out.rows(), 0);
    flow.watermark("bids", 9).unwrap();
    // Two rows share rank 1 (price 9); 7 would be rank 3.
    assert_eq!(ints(&out.batches()[0], "price"), vec![9, 9]);
    flow.finish().unwrap();
    assert_eq!(ints(&out.batches()[1], "price"), vec![1]);
}

#[test]
fn an_interval_join_pairs_rows_within_the_bounds_and_forgets_old_ones() {
    let (l, r) = (schema("lv"), schema("rv"));
    let job = Job::new();
    let out = CollectSink::new();
    let right = job
        .source("r", Arc::clone(&r), "ts")
        .select(vec![col("k").alias("rk"), col("rv"), col("ts").alias("rts")])
        .with_event_time("rts");
    job.source("l", Arc::clone(&l), "ts").interval_join(&right, &["k"], &["rk"], -5..=0).sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("r", batch(&r, &[("x", 100, 10), ("y", 200, 10)])).unwrap();
    // A left row meets right rows of its key with right - 5 <= left <= right.
    flow.push("l", batch(&l, &[("x", 1, 5), ("x", 2, 10), ("x", 3, 4), ("z", 4, 8), ("y", 5, 11)])).unwrap();
    let joined = out.concat(&flow_schema(&out)).unwrap();
    let mut pairs: Vec<(i64, i64)> = ints(&joined, "lv").into_iter().zip(ints(&joined, "rv")).collect();
    pairs.sort_unstable();
    assert_eq!(pairs, vec![(1, 100), (2, 100)]);
    let state = |f: &rill_streams::Dataflow| f.metrics().iter().map(|m| m.state).sum::<usize>();
    assert_eq!(state(&flow), 7);
    flow.watermark("l", 100).unwrap();
    flow.watermark("r", 100).unwrap();
    assert_eq!(state(&flow), 0, "rows no future row can meet are dropped");
}

fn flow_schema(sink: &CollectSink) -> SchemaRef {
    sink.batches()[0].schema()
}

#[test]
fn a_map_that_breaks_its_declared_schema_fails_the_job() {
    let s = schema("v");
    let job = Job::new();
    let declared = Arc::clone(&s);
    job.source("in", Arc::clone(&s), "ts").map_batches(declared, |b| Ok(b.project(&[0, 1])?)).sink(CollectSink::new());
    let mut flow = job.build().unwrap();
    let err = flow.push("in", batch(&s, &[("x", 1, 1)])).unwrap_err().to_string();
    assert!(err.contains("map function returned columns"), "{err}");
}

#[test]
fn dedup_remembers_keys_across_a_restore() {
    let s = schema("v");
    let build = |out: &CollectSink| {
        let job = Job::new();
        job.source("in", Arc::clone(&s), "ts").dedup(&["k"], Duration::from_millis(100)).sink(out.clone());
        job.build().unwrap()
    };
    let (first, second) = (CollectSink::new(), CollectSink::new());
    let mut flow = build(&first);
    flow.push("in", batch(&s, &[("a", 1, 10), ("b", 2, 20)])).unwrap();
    flow.watermark("in", 30).unwrap();
    let snapshot = flow.snapshot().unwrap();
    assert_eq!(snapshot.states.len(), 1, "dedup keeps its keys as state");
    let mut flow = build(&second);
    flow.restore(&snapshot).unwrap();
    // "a" again within 100 ms of its first row: a duplicate; "c" is new.
    flow.push("in", batch(&s, &[("a", 3, 50), ("c", 4, 60)])).unwrap();
    assert_eq!(ints(&second.concat(&s).unwrap(), "v"), vec![4]);
    assert_eq!(first.rows(), 2);
}

#[test]
fn a_checkpoint_of_another_job_is_refused() {
    let s = schema("v");
    let job = Job::new();
    job.source("in", Arc::clone(&s), "ts").dedup(&["k"], Duration::from_millis(100)).sink(CollectSink::new());
    let mut flow = job.build().unwrap();
    flow.push("in", batch(&s, &[("a", 1, 10)])).unwrap();
    let snapshot = flow.snapshot().unwrap();
    let other = Job::new();
    other.source("in", Arc::clone(&s), "ts").filter(col("v").gt(lit(0))).sink(CollectSink::new());
    let err = other.build().unwrap().restore(&snapshot).unwrap_err().to_string();
    assert!(err.contains("another job"), "{err}");
}

/// A sink that refuses the first `refuse` writes.
struct Flaky {
    refuse: usize,
    out: CollectSink,
}

impl Sink for Flaky {
    fn write(&mut self, batch: RecordBatch) -> rill_streams::Result<()> {
        if self.refuse > 0 {
            self.refuse -= 1;
            return Err(rill_streams::Error::Sink("database unavailable".into()));
        }
        self.out.write(batch)
    }
}

#[test]
fn a_refusing_sink_is_retried_and_a_checkpoint_fails_rather_than_drop_rows() {
    use rill_streams::RetryingSink;
    let s = schema("v");
    let out = CollectSink::new();
    let mut sink = RetryingSink::new(Flaky { refuse: 3, out: out.clone() }, 5, Duration::from_millis(1));
    sink.write(batch(&s, &[("a", 1, 1)])).unwrap();
    sink.write(batch(&s, &[("b", 2, 2)])).unwrap();
    assert_eq!((out.rows(), sink.pending()), (0, 2), "refused rows are kept, not dropped");
    sink.prepare(1).unwrap();
    assert_eq!(ints(&out.concat(&s).unwrap(), "v"), vec![1, 2], "delivered in order at the checkpoint");

    let out = CollectSink::new();
    let mut sink = RetryingSink::new(Flaky { refuse: 100, out: out.clone() }, 2, Duration::from_millis(1));
    sink.write(batch(&s, &[("a", 1, 1)])).unwrap();
    let err = sink.prepare(7).unwrap_err().to_string();
    assert!(err.contains("checkpoint 7 failed") && err.contains("database unavailable"), "{err}");
    assert_eq!(sink.pending(), 1);
}

#[test]
fn windows_without_keys_aggregate_all_rows() {
    let s = schema("v");
    let job = Job::new();
    let out = CollectSink::new();
    job.source("in", Arc::clone(&s), "ts")
        .window_all(Tumbling::of(Duration::from_millis(10)))
        .aggregate(vec![agg::sum("v").alias("total"), agg::count_distinct("k")])
        .sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("in", batch(&s, &[("a", 1, 1), ("b", 2, 2), ("a", 4, 12)])).unwrap();
    flow.finish().unwrap();
    let b = out.concat(&out.batches()[0].schema()).unwrap();
    assert_eq!(ints(&b, "total"), vec![3, 4]);
    assert_eq!(ints(&b, "count_distinct_k"), vec![2, 1]);
}

#[test]
fn a_snapshot_leaves_accumulators_that_hand_over_their_values_intact() {
    use datafusion::functions_aggregate::median::median_udaf;
    let s = schema("v");
    let job = Job::new();
    let out = CollectSink::new();
    job.source("in", Arc::clone(&s), "ts")
        .key_by(&["k"])
        .window(Tumbling::of(Duration::from_millis(100)))
        .aggregate(vec![rill_streams::Aggregate::new(median_udaf(), "v").alias("median")])
        .sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("in", batch(&s, &[("a", 1, 1), ("a", 2, 2), ("a", 9, 3)])).unwrap();
    flow.snapshot().unwrap();
    flow.push("in", batch(&s, &[("a", 10, 4), ("a", 11, 5)])).unwrap();
    flow.finish().unwrap();
    let b = &out.batches()[0];
    let median =
        datafusion::arrow::compute::cast(b.column(b.schema().index_of("median").unwrap()), &DataType::Float64).unwrap();
    assert_eq!(
        median.as_primitive::<datafusion::arrow::datatypes::Float64Type>().value(0),
        9.0,
        "median of 1, 2, 9, 10, 11"
    );
}

#[test]
fn join_keys_that_are_null_meet_nothing() {
    let (l, r) = (schema("lv"), schema("rv"));
    let nullable = |s: &SchemaRef| {
        Arc::new(Schema::new(
            s.fields().iter().map(|f| f.as_ref().clone().with_nullable(f.name() == "k")).collect::<Vec<_>>(),
        ))
    };
    let (l, r) = (nullable(&l), nullable(&r));
    let rows = |s: &SchemaRef, keys: Vec<Option<&str>>, v: i64| {
        let n = keys.len();
        RecordBatch::try_new(
            Arc::clone(s),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(vec![v; n])),
                Arc::new(Int64Array::from(vec![1; n])),
            ],
        )
        .unwrap()
    };
    let job = Job::new();
    let out = CollectSink::new();
    let right =
        job.source("r", Arc::clone(&r), "ts").select(vec![col("k").alias("rk"), col("rv"), col("ts").alias("rts")]);
    job.source("l", Arc::clone(&l), "ts").join(&right, &["k"], &["rk"]).sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("r", rows(&r, vec![None, Some("x")], 7)).unwrap();
    flow.push("l", rows(&l, vec![None, Some("x"), None], 1)).unwrap();
    assert_eq!(out.rows(), 1, "only x meets x");
}

#[test]
fn a_regular_join_with_a_ttl_forgets_rows_once_event_time_passes_it() {
    let (l, r) = (schema("lv"), schema("rv"));
    let job = Job::new();
    let out = CollectSink::new();
    let right = job
        .source("r", Arc::clone(&r), "ts")
        .select(vec![col("k").alias("rk"), col("rv"), col("ts").alias("rts")])
        .with_event_time("rts");
    job.source("l", Arc::clone(&l), "ts")
        .join_with_ttl(&right, &["k"], &["rk"], Duration::from_millis(50))
        .sink(out.clone());
    let mut flow = job.build().unwrap();
    flow.push("r", batch(&r, &[("x", 100, 10), ("y", 200, 40)])).unwrap();
    // No time condition: a left row far after the right one still meets it while it is remembered.
    flow.push("l", batch(&l, &[("x", 1, 45)])).unwrap();
    flow.watermark("l", 60).unwrap();
    flow.watermark("r", 60).unwrap();
    // x's right row (10 + 50 <= 60) is forgotten; y's (40 + 50 > 60) is not.
    flow.push("l", batch(&l, &[("x", 2, 70), ("y", 3, 70)])).unwrap();
    let joined = out.concat(&flow_schema(&out)).unwrap();
    let mut pairs: Vec<(i64, i64)> = ints(&joined, "lv").into_iter().zip(ints(&joined, "rv")).collect();
    pairs.sort_unstable();
    assert_eq!(pairs, vec![(1, 100), (3, 200)]);

    let bad = Job::new();
    let left = bad.source("l", Arc::clone(&l), "ts");
    let other = bad.source("r", Arc::clone(&r), "ts").select(vec![col("k").alias("rk"), col("rv")]);
    left.join_with_ttl(&other, &["k"], &["rk"], Duration::from_secs(1)).sink(CollectSink::new());
    let err = bad.build().unwrap_err().to_string();
    assert!(err.contains("needs an event-time column on both sides"), "{err}");
}
