//! Window aggregation within a tiny memory budget, its groups spilling to
//! disk all the time, against the same operator with all of its state in
//! memory: for any windows, lateness, early firing, out-of-order rows and a
//! checkpoint restored mid-stream, both give the same results and the same
//! late rows; with thousands of keys the spilling one keeps to its budget.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::max_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use proptest::prelude::*;
use rill_state::{MIN_BUDGET, StateConfig};
use rill_streams::{Aggregate, WindowAggregate, WindowAggregateConfig, Windows};
use rill_time::WindowSpec;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("amount", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(String, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

fn config(windows: Windows, allowed_lateness: i64, early_fire: bool) -> WindowAggregateConfig {
    let mut distinct = Aggregate::new(count_udaf(), "amount").alias("kinds");
    distinct.distinct = true;
    WindowAggregateConfig {
        time_column: "ts".into(),
        keys: vec!["user".into()],
        windows,
        aggregates: vec![
            Aggregate::new(count_udaf(), "amount").alias("n"),
            Aggregate::new(sum_udaf(), "amount").alias("total"),
            Aggregate::new(max_udaf(), "amount").alias("largest"),
            Aggregate::new(avg_udaf(), "amount").alias("mean"),
            distinct,
        ],
        allowed_lateness,
        early_fire,
    }
}

/// (user, start, end) → (n, total, largest, mean as text, distinct amounts)
type Results = BTreeMap<(String, i64, i64), (i64, i64, i64, String, i64)>;

fn collect(out: &mut Results, batches: &[RecordBatch]) {
    for b in batches {
        let users = b.column(0).as_string::<i32>();
        let starts = b.column(1).as_primitive::<TimestampMillisecondType>();
        let ends = b.column(2).as_primitive::<TimestampMillisecondType>();
        let int = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
        let mean = b.column(7).as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let (n, total, largest, kinds) = (int(4), int(5), int(6), int(8));
        for r in 0..b.num_rows() {
            // A later result of the same window replaces the earlier one.
            out.insert(
                (users.value(r).to_owned(), starts.value(r), ends.value(r)),
                (n.value(r), total.value(r), largest.value(r), format!("{:.6}", mean.value(r)), kinds.value(r)),
            );
        }
    }
}

fn windows() -> impl Strategy<Value = Windows> {
    prop_oneof![
        (1i64..400).prop_map(|s| Windows::Time(WindowSpec::tumbling(s).unwrap())),
        (1i64..300, 1i64..300).prop_map(|(size, slide)| Windows::Time(WindowSpec::hopping(size, slide).unwrap())),
        (1i64..100, 1i64..5).prop_map(|(step, n)| Windows::Time(WindowSpec::cumulate(step, step * n).unwrap())),
        (1i64..150).prop_map(|gap| Windows::Session { gap }),
        (1u64..6).prop_map(|size| Windows::Count { size }),
    ]
}

/// Both operators' outputs so far.
#[derive(Default)]
struct Seen {
    results: Results,
    late: usize,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn spilled_state_gives_the_results_of_state_in_memory(
        windows in windows(),
        lateness in prop_oneof![Just(0i64), 1i64..300],
        early_fire in any::<bool>(),
        delay in 0i64..200,
        rows in proptest::collection::vec((0u16..120, 0i64..3_000, 0i64..20), 1..400),
        cuts in proptest::collection::vec(1usize..40, 1..10),
        checkpoint_at in 0usize..400,
    ) {
        let rows: Vec<(String, i64, i64)> = rows.into_iter().map(|(u, t, v)| (format!("user-{u:04}"), t, v)).collect();
        // Count windows fire by their rows alone: no early firing.
        let counting = matches!(windows, Windows::Count { .. });
        let early_fire = early_fire && !counting;
        let dir = tempfile::tempdir().unwrap();
        let small = || {
            let state = StateConfig::new(MIN_BUDGET, dir.path()).unwrap();
            WindowAggregate::new(schema(), config(windows, lateness, early_fire)).unwrap().with_state(state)
        };
        let mut spilling = small();
        let mut roomy = WindowAggregate::new(schema(), config(windows, lateness, early_fire)).unwrap();
        let (mut a, mut b) = (Seen::default(), Seen::default());
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        let mut max_ts = i64::MIN;
        let mut watermark = i64::MIN;
        let mut restored = false;
        while at < rows.len() {
            let n = (*cut.next().unwrap()).min(rows.len() - at);
            let chunk = batch(&rows[at..at + n]);
            for (op, seen) in [(&mut spilling, &mut a), (&mut roomy, &mut b)] {
                let p = op.process(&chunk).unwrap();
                seen.late += p.late.map_or(0, |l| l.num_rows());
                collect(&mut seen.results, p.fired.as_slice());
            }
            max_ts = max_ts.max(rows[at..at + n].iter().map(|r| r.1).max().unwrap());
            at += n;
            // Bounded out-of-orderness: some rows come after the watermark passed them.
            if max_ts - delay > watermark {
                watermark = max_ts - delay;
                collect(&mut a.results, &spilling.advance_batches(watermark).unwrap());
                collect(&mut b.results, &roomy.advance_batches(watermark).unwrap());
            }
            // (Memory may pass the budget here by the groups the next
            // watermark fires; the budget is checked in the test below.)
            if !restored && at >= checkpoint_at {
                restored = true;
                let (snap_a, snap_b) = (spilling.snapshot().unwrap(), roomy.snapshot().unwrap());
                prop_assert_eq!(snap_a.as_ref().map(|s| s.num_rows()), snap_b.as_ref().map(|s| s.num_rows()));
                spilling = small();
                if let Some(snap) = snap_a {
                    spilling.restore(&snap).unwrap();
                }
                spilling.set_watermark(watermark);
            }
        }
        collect(&mut a.results, &spilling.advance_batches(i64::MAX).unwrap());
        collect(&mut b.results, &roomy.advance_batches(i64::MAX).unwrap());
        prop_assert_eq!(a.late, b.late);
        prop_assert_eq!(&a.results, &b.results);
        if !counting {
            prop_assert_eq!(spilling.open_groups(), 0);
            prop_assert_eq!(spilling.spilled_groups(), 0, "everything on disk was dropped at the end");
        }
    }
}

#[test]
fn thousands_of_keys_spill_and_every_window_comes_back_right() {
    let dir = tempfile::tempdir().unwrap();
    let hopping = Windows::Time(WindowSpec::hopping(1_000, 250).unwrap());
    let state = StateConfig::new(64 << 10, dir.path()).unwrap();
    let mut spilling = WindowAggregate::new(schema(), config(hopping, 500, false)).unwrap().with_state(state);
    let mut roomy = WindowAggregate::new(schema(), config(hopping, 500, false)).unwrap();
    let (mut a, mut b) = (Results::new(), Results::new());
    let mut most_spilled = 0;
    for second in 0..6i64 {
        // 3,000 users a second, each once, then a few late rows of the second before.
        let mut rows: Vec<(String, i64, i64)> =
            (0..3_000).map(|u| (format!("user-{u:05}"), second * 1_000 + u % 1_000, u % 7)).collect();
        if second > 0 {
            rows.extend((0..50).map(|u| (format!("user-{u:05}"), second * 1_000 - 300, 100)));
        }
        for chunk in rows.chunks(500) {
            collect(&mut a, spilling.process(&batch(chunk)).unwrap().fired.as_slice());
            collect(&mut b, roomy.process(&batch(chunk)).unwrap().fired.as_slice());
        }
        most_spilled = most_spilled.max(spilling.spilled_groups());
        assert!(spilling.memory_bytes() <= 64 << 10, "{} bytes in memory", spilling.memory_bytes());
        collect(&mut a, &spilling.advance_batches(second * 1_000 + 999).unwrap());
        collect(&mut b, &roomy.advance_batches(second * 1_000 + 999).unwrap());
    }
    assert!(most_spilled > 5_000, "the groups went to disk: {most_spilled}");
    assert!(spilling.spills() > 10);
    collect(&mut a, &spilling.advance_batches(i64::MAX).unwrap());
    collect(&mut b, &roomy.advance_batches(i64::MAX).unwrap());
    // Each user's rows are a second apart: four windows each.
    assert!(a.len() >= 3_000 * 4 * 6, "every user in every window: {}", a.len());
    assert_eq!(a, b);
    assert_eq!(spilling.spilled_groups(), 0);
}

#[test]
fn open_count_windows_of_thousands_of_keys_spill_and_complete_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateConfig::new(64 << 10, dir.path()).unwrap();
    let mut op =
        WindowAggregate::new(schema(), config(Windows::Count { size: 3 }, 0, false)).unwrap().with_state(state);
    let mut results = Results::new();
    // Two rows for each of 4,000 users: every window open, most on disk.
    for round in 0..2i64 {
        let rows: Vec<(String, i64, i64)> = (0..4_000).map(|u| (format!("user-{u:05}"), round, u % 10)).collect();
        for chunk in rows.chunks(500) {
            collect(&mut results, op.process(&batch(chunk)).unwrap().fired.as_slice());
        }
    }
    assert!(results.is_empty(), "no window has three rows yet");
    assert!(op.spilled_groups() > 2_000, "{}", op.spilled_groups());
    assert!(op.memory_bytes() <= 64 << 10);
    // The third row completes each window, wherever it was.
    let rows: Vec<(String, i64, i64)> = (0..4_000).map(|u| (format!("user-{u:05}"), 2, 1)).collect();
    for chunk in rows.chunks(500) {
        collect(&mut results, op.process(&batch(chunk)).unwrap().fired.as_slice());
    }
    assert_eq!(results.len(), 4_000);
    assert!(results.iter().all(|((u, ..), (n, total, ..))| {
        let v = u[5..].parse::<i64>().unwrap() % 10;
        *n == 3 && *total == 2 * v + 1
    }));
    assert_eq!(op.open_groups(), 0);
}
