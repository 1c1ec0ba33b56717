//! The running aggregate over a changelog against a model: random inserts,
//! updates and deletes of a keyed table, fed in random batches (with a
//! checkpoint and restore at a random point), must leave — once the
//! aggregate's own changelog is applied — exactly the counts and sums of
//! the final table per category, whether its groups stay in memory or
//! spill to disk past the smallest memory budget.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use proptest::prelude::*;
use rill_state::{MIN_BUDGET, StateConfig};
use rill_streams::{Aggregate, GroupAggregate, Operator, Output, agg};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("category", DataType::Int64, false),
        Field::new("amount", DataType::Int64, false),
        Field::new("__op", DataType::Utf8, false),
    ]))
}

fn aggregates() -> Vec<Aggregate> {
    vec![
        agg::count("amount").alias("n"),
        agg::sum("amount").alias("total"),
        agg::min("amount").alias("low"),
        agg::max("amount").alias("high"),
    ]
}

/// Per category: count, sum, min, max.
type Stats = (i64, i64, i64, i64);

/// A changelog row: id, category, amount, kind.
type Change = (i64, i64, i64, &'static str);

/// The changelog of `actions` — (id, Some((category, amount))) to set, None
/// to delete — and the table they leave (id → (category, amount)).
fn changelog(actions: &[(i64, Option<(i64, i64)>)]) -> (Vec<Change>, BTreeMap<i64, (i64, i64)>) {
    let mut table: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut rows = Vec::new();
    for (id, set) in actions {
        match (table.get(id).copied(), set) {
            (None, Some((c, a))) => rows.push((*id, *c, *a, "+I")),
            (Some((c0, a0)), Some((c, a))) => {
                rows.push((*id, c0, a0, "-U"));
                rows.push((*id, *c, *a, "+U"));
            }
            (Some((c0, a0)), None) => rows.push((*id, c0, a0, "-D")),
            (None, None) => continue,
        }
        match set {
            Some(v) => table.insert(*id, *v),
            None => table.remove(id),
        };
    }
    (rows, table)
}

fn batch(rows: &[Change]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap()
}

/// Applies the aggregate's changelog to a table category → stats.
fn apply(results: &mut BTreeMap<i64, Stats>, out: &RecordBatch) {
    let int = |c: usize| out.column(c).as_primitive::<Int64Type>().clone();
    let (category, n, total, low, high) = (int(0), int(1), int(2), int(3), int(4));
    let op = out.column(5).as_string::<i32>();
    for i in 0..out.num_rows() {
        let k = category.value(i);
        let row = (n.value(i), total.value(i), low.value(i), high.value(i));
        match op.value(i) {
            "+I" => assert!(results.insert(k, row).is_none(), "+I of a key already there"),
            "+U" => assert!(results.insert(k, row).is_none(), "+U without its -U"),
            "-U" | "-D" => {
                let had = results.remove(&k);
                assert_eq!(had, Some(row), "a retraction names the row it retracts");
            }
            other => panic!("unknown kind {other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn applied_results_equal_the_final_table_aggregated(
        actions in prop::collection::vec((0i64..60, prop::option::weighted(0.8, (0i64..30, 0i64..100))), 1..200),
        cuts in prop::collection::vec(1usize..12, 1..20),
        restore_at in 0usize..20,
        spill in any::<bool>(),
    ) {
        let (rows, table) = changelog(&actions);
        let dir = tempfile::tempdir().unwrap();
        let fresh = || {
            let op = GroupAggregate::new(schema(), &["category"], &aggregates()).unwrap();
            if spill { op.with_state(StateConfig::new(MIN_BUDGET, dir.path()).unwrap()) } else { op }
        };
        let mut op = fresh();
        let mut results = BTreeMap::new();
        let (mut start, mut step) = (0, 0);
        while start < rows.len() {
            let end = (start + cuts[step % cuts.len()]).min(rows.len());
            let mut out = Output::default();
            op.process(0, batch(&rows[start..end]), &mut out).unwrap();
            for b in &out.rows {
                apply(&mut results, b);
            }
            if step == restore_at {
                let state = op.snapshot().unwrap();
                op = fresh();
                if let Some(s) = state {
                    op.restore(&s).unwrap();
                }
            }
            start = end;
            step += 1;
        }
        let mut want: BTreeMap<i64, Stats> = BTreeMap::new();
        for (c, a) in table.values() {
            let e = want.entry(*c).or_insert((0, 0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 += a;
            e.2 = e.2.min(*a);
            e.3 = e.3.max(*a);
        }
        prop_assert_eq!(results, want);
    }
}

#[test]
fn thousands_of_keys_spill_within_the_budget_and_come_back_for_their_changes() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 << 10;
    let mut op = GroupAggregate::new(schema(), &["category"], &aggregates())
        .unwrap()
        .with_state(StateConfig::new(budget, dir.path()).unwrap());
    let mut results = BTreeMap::new();
    // 5,000 categories with one row each, then every category's row updated.
    let inserts: Vec<Change> = (0..5_000).map(|i| (i, i, i % 100, "+I")).collect();
    let mut updates: Vec<Change> = Vec::new();
    for i in 0..5_000 {
        updates.push((i, i, i % 100, "-U"));
        updates.push((i, i, i % 100 + 1, "+U"));
    }
    for chunk in inserts.chunks(500).chain(updates.chunks(1_000)) {
        let mut out = Output::default();
        op.process(0, batch(chunk), &mut out).unwrap();
        for b in &out.rows {
            apply(&mut results, b);
        }
        assert!(op.memory_bytes() <= budget, "{} bytes in memory", op.memory_bytes());
    }
    assert!(op.spilled_groups() > 2_000, "{}", op.spilled_groups());
    assert_eq!(results.len(), 5_000);
    assert!(results.iter().all(|(k, s)| *s == (1, k % 100 + 1, k % 100 + 1, k % 100 + 1)));
    // A checkpoint holds the spilled groups too.
    assert_eq!(op.snapshot().unwrap().unwrap().num_rows(), 5_000);
}

#[test]
fn aggregates_that_cannot_retract_exactly_are_refused_by_name() {
    let err =
        GroupAggregate::new(schema(), &["category"], &[agg::count_distinct("amount").alias("kinds")]).unwrap_err();
    assert!(err.to_string().contains("kinds over a changelog is not supported"), "{err}");
}

#[test]
fn the_last_row_per_key_replaces_older_ones_ignores_stale_ones_and_survives_a_restore() {
    use rill_streams::LastRow;
    let input =
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("t", DataType::Int64, false)]));
    let rows = |pairs: &[(i64, i64)]| {
        RecordBatch::try_new(
            Arc::clone(&input),
            vec![
                Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.0))),
                Arc::new(Int64Array::from_iter_values(pairs.iter().map(|p| p.1))),
            ],
        )
        .unwrap()
    };
    let changes = |op: &mut LastRow, pairs: &[(i64, i64)]| {
        let mut out = Output::default();
        op.process(0, rows(pairs), &mut out).unwrap();
        let mut seen = Vec::new();
        for b in &out.rows {
            for i in 0..b.num_rows() {
                let k = b.column(0).as_primitive::<Int64Type>().value(i);
                let t = b.column(1).as_primitive::<Int64Type>().value(i);
                seen.push(format!("{}({k},{t})", b.column(2).as_string::<i32>().value(i)));
            }
        }
        seen
    };
    let mut op = LastRow::new(Arc::clone(&input), &["k"], "t", 1_000).unwrap();
    // A key twice in one batch: its first row, then the replacement.
    assert_eq!(changes(&mut op, &[(1, 10), (2, 5), (1, 12)]), ["+I(1,10)", "+I(2,5)", "-U(1,10)", "+U(1,12)"]);
    // Older than the row kept: nothing; equal time: the later arrival wins.
    assert_eq!(changes(&mut op, &[(1, 11), (2, 5)]), ["-U(2,5)", "+U(2,5)"]);
    let state = op.snapshot().unwrap().unwrap();
    let mut op = LastRow::new(Arc::clone(&input), &["k"], "t", 1_000).unwrap();
    op.restore(&state).unwrap();
    assert_eq!(changes(&mut op, &[(1, 20)]), ["-U(1,12)", "+U(1,20)"]);
    // Past its TTL a key is forgotten: its next row is new again.
    op.advance(1_010, &mut Output::default()).unwrap();
    assert_eq!(op.state_size(), 1, "key 2 (time 5) is past 5 + 1000 < 1010; key 1 (time 20) is not");
    assert_eq!(changes(&mut op, &[(2, 1_200)]), ["+I(2,1200)"]);
}

#[test]
fn last_rows_past_the_budget_spill_and_still_give_the_same_changes() {
    use rill_streams::LastRow;
    let input = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("t", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let rows = |keys: std::ops::Range<i64>, t: i64| {
        RecordBatch::try_new(
            Arc::clone(&input),
            vec![
                Arc::new(Int64Array::from_iter_values(keys.clone())),
                Arc::new(Int64Array::from_iter_values(keys.clone().map(|_| t))),
                Arc::new(StringArray::from_iter_values(keys.map(|k| format!("row {k} at {t}")))),
            ],
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let budget = 32 << 10;
    let mut small = LastRow::new(Arc::clone(&input), &["k"], "t", 10_000)
        .unwrap()
        .with_state(StateConfig::new(budget, dir.path()).unwrap());
    let mut roomy = LastRow::new(Arc::clone(&input), &["k"], "t", 10_000).unwrap();
    // Three rounds over 3,000 keys: every key replaced twice.
    for t in [100, 200, 300] {
        for start in (0..3_000).step_by(500) {
            let batch = rows(start..start + 500, t);
            let (mut a, mut b) = (Output::default(), Output::default());
            small.process(0, batch.clone(), &mut a).unwrap();
            roomy.process(0, batch, &mut b).unwrap();
            assert_eq!(a.rows, b.rows);
        }
        small.advance(t, &mut Output::default()).unwrap();
        roomy.advance(t, &mut Output::default()).unwrap();
        assert!(small.state().memory_bytes() <= budget);
    }
    assert!(small.state().on_disk() > 1_000, "{:?}", small.state());
    let (snap_small, snap_roomy) = (small.snapshot().unwrap().unwrap(), roomy.snapshot().unwrap().unwrap());
    assert_eq!(snap_small.num_rows(), 3_000);
    assert_eq!(snap_roomy.num_rows(), 3_000);
}
