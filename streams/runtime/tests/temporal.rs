//! The temporal join: probe rows meet the version their key had at their
//! time (event time: after the watermark passes; processing time: the one
//! held on arrival), deletes end a key's versions, late probe rows are set
//! aside, and a restore from a checkpoint continues exactly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use rill_streams::join::JoinSide;
use rill_streams::{Operator, Output, TemporalJoin};

fn probe() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("t", DataType::Int64, false)]))
}

fn table(changelog: bool) -> SchemaRef {
    let mut f = vec![
        Field::new("tk", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new("vt", DataType::Int64, false),
    ];
    if changelog {
        f.push(Field::new("__op", DataType::Utf8, false));
    }
    Arc::new(Schema::new(f))
}

fn probes(rows: &[(i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        probe(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

fn versions(rows: &[(i64, i64, i64, &str)], changelog: bool) -> RecordBatch {
    let mut columns: Vec<Arc<dyn datafusion::arrow::array::Array>> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    if changelog {
        columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))));
    }
    RecordBatch::try_new(table(changelog), columns).unwrap()
}

fn join(event_time: bool, changelog: bool) -> TemporalJoin {
    let p = JoinSide { schema: probe(), keys: vec!["k".into()], time: Some("t".into()) };
    let t = JoinSide { schema: table(changelog), keys: vec!["tk".into()], time: Some("vt".into()) };
    TemporalJoin::new(&p, &t, event_time).unwrap()
}

/// (k, t, v) of every joined row.
fn joined(out: &Output) -> Vec<(i64, i64, i64)> {
    let mut rows = Vec::new();
    for b in &out.rows {
        for i in 0..b.num_rows() {
            let get = |c: usize| b.column(c).as_primitive::<Int64Type>().value(i);
            rows.push((get(0), get(1), get(3)));
        }
    }
    rows
}

#[test]
fn in_event_time_a_probe_row_meets_the_version_at_its_time_once_the_watermark_passes() {
    let mut j = join(true, true);
    let mut out = Output::default();
    j.process(1, versions(&[(1, 10, 0, "+I"), (2, 20, 0, "+I")], true), &mut out).unwrap();
    j.process(0, probes(&[(1, 5), (1, 15), (2, 15), (3, 5)]), &mut out).unwrap();
    assert!(out.rows.is_empty(), "probe rows wait for the watermark");
    // A version at 10 arrives after the probe at 15, but before the watermark passes 15.
    j.process(1, versions(&[(1, 10, 0, "-U"), (1, 11, 10, "+U"), (2, 20, 12, "-D")], true), &mut out).unwrap();
    j.advance(20, &mut out).unwrap();
    let mut rows = joined(&out);
    rows.sort_unstable();
    // k=1 at 5 sees version 10; at 15 sees 11; k=2 at 15 is deleted (since 12); k=3 has none.
    assert_eq!(rows, [(1, 5, 10), (1, 15, 11)]);
    // Behind the watermark: late, not joined.
    let mut out = Output::default();
    j.process(0, probes(&[(1, 19)]), &mut out).unwrap();
    assert_eq!(out.late.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    // Through a checkpoint: the version kept for key 1 still answers.
    let state = j.snapshot().unwrap().unwrap();
    let mut restored = join(true, true);
    restored.restore(&state).unwrap();
    let mut out = Output::default();
    restored.process(0, probes(&[(1, 30)]), &mut out).unwrap();
    restored.advance(40, &mut out).unwrap();
    assert_eq!(joined(&out), [(1, 30, 11)]);
}

#[test]
fn in_processing_time_a_probe_row_meets_the_version_held_when_it_arrives() {
    let mut j = join(false, false);
    let mut out = Output::default();
    j.process(0, probes(&[(1, 1)]), &mut out).unwrap();
    j.process(1, versions(&[(1, 10, 500, "")], false), &mut out).unwrap();
    j.process(0, probes(&[(1, 2)]), &mut out).unwrap();
    j.process(1, versions(&[(1, 11, 0, "")], false), &mut out).unwrap();
    j.process(0, probes(&[(1, 3)]), &mut out).unwrap();
    // Arrival order decides, not the versions' own times.
    assert_eq!(joined(&out), [(1, 2, 10), (1, 3, 11)]);
}

#[test]
fn versions_and_waiting_probes_past_the_budget_spill_and_join_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut small = join(true, true).with_state(rill_state::StateConfig::new(32 << 10, dir.path()).unwrap());
    let mut roomy = join(true, true);
    let (mut a, mut b) = (Output::default(), Output::default());
    for round in 0..4i64 {
        // 2,000 keys get a new version (the first round inserts), then probes
        // for every key wait for the watermark.
        let op = if round == 0 { "+I" } else { "+U" };
        let table: Vec<(i64, i64, i64, &str)> = (0..2_000).map(|k| (k, k * 10 + round, round * 100, op)).collect();
        let probing: Vec<(i64, i64)> = (0..2_000).map(|k| (k, round * 100 + 50)).collect();
        for (op, out) in [(&mut small, &mut a), (&mut roomy, &mut b)] {
            op.process(1, versions(&table, true), out).unwrap();
            op.process(0, probes(&probing), out).unwrap();
        }
        assert!(small.versions().memory_bytes() <= 32 << 10);
        small.advance(round * 100 + 60, &mut a).unwrap();
        roomy.advance(round * 100 + 60, &mut b).unwrap();
    }
    assert!(small.versions().on_disk() > 1_000, "{:?}", small.versions());
    let (mut x, mut y) = (joined(&a), joined(&b));
    x.sort_unstable();
    y.sort_unstable();
    assert_eq!(x.len(), 8_000, "every probe met its key's version of its round");
    assert!(x.iter().all(|(k, t, v)| *v == k * 10 + (t - 50) / 100));
    assert_eq!(x, y);
    // A checkpoint of the spilled versions restores into a fresh join.
    let state = small.snapshot().unwrap().unwrap();
    let mut restored = join(true, true);
    restored.restore(&state).unwrap();
    let mut out = Output::default();
    restored.process(0, probes(&[(7, 500)]), &mut out).unwrap();
    restored.advance(600, &mut out).unwrap();
    assert_eq!(joined(&out), [(7, 500, 73)]);
}
