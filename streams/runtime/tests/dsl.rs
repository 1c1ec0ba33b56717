//! The DSL as a user meets it: jobs built from streams, run by pushing
//! batches and watermarks into a dataflow.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::prelude::{col, lit};
use rill_streams::dsl::{Job, Tumbling};
use rill_streams::{CollectSink, agg};

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
    job.source("in", schema("v"), "ts").filter(col("v").gt(lit(1))).filter(col("nope").eq(lit(1))).sink(CollectSink::new());
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
    job.source("bids", Arc::clone(&s), "ts").window_all(Tumbling::of(Duration::from_millis(10))).top_n(2, "price").sink(out.clone());
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
    let right = job.source("r", Arc::clone(&r), "ts").select(vec![col("k").alias("rk"), col("rv"), col("ts").alias("rts")]).with_event_time("rts");
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
    job.source("in", Arc::clone(&s), "ts")
        .map_batches(declared, |b| Ok(b.project(&[0, 1])?))
        .sink(CollectSink::new());
    let mut flow = job.build().unwrap();
    let err = flow.push("in", batch(&s, &[("x", 1, 1)])).unwrap_err().to_string();
    assert!(err.contains("map function returned columns"), "{err}");
}
