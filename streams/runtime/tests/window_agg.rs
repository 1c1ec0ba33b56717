//! Window aggregation against a direct computation (the oracle): rows in
//! any order, in batches of any size, with watermarks that never pass an
//! unseen row, give exactly the oracle's groups; late rows come back, and
//! rows within the allowed lateness update a fired window.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use proptest::prelude::*;
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

fn operator(windows: impl Into<Windows>, allowed_lateness: i64) -> WindowAggregate {
    let agg = |f, name: &str| Aggregate::new(f, "amount").alias(name);
    WindowAggregate::new(
        schema(),
        WindowAggregateConfig {
            time_column: "ts".into(),
            keys: vec!["user".into()],
            windows: windows.into(),
            aggregates: vec![
                agg(count_udaf(), "n"),
                agg(sum_udaf(), "total"),
                agg(min_udaf(), "smallest"),
                agg(max_udaf(), "largest"),
            ],
            allowed_lateness,
            early_fire: false,
        },
    )
    .unwrap()
}

/// (user, start, end) → (count, sum, min, max)
type Results = BTreeMap<(String, i64, i64), (i64, i64, i64, i64)>;

fn collect(out: &mut Results, b: Option<RecordBatch>) {
    let Some(b) = b else { return };
    let users = b.column(0).as_string::<i32>();
    let starts = b.column(1).as_primitive::<TimestampMillisecondType>();
    let ends = b.column(2).as_primitive::<TimestampMillisecondType>();
    let col = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
    let (n, total, lo, hi) = (col(4), col(5), col(6), col(7));
    for r in 0..b.num_rows() {
        // A later firing of the same window replaces the earlier result.
        out.insert(
            (users.value(r).to_owned(), starts.value(r), ends.value(r)),
            (n.value(r), total.value(r), lo.value(r), hi.value(r)),
        );
    }
}

fn oracle(rows: &[(String, i64, i64)], windows: WindowSpec) -> Results {
    let mut out: Results = BTreeMap::new();
    for (user, ts, v) in rows {
        for w in windows.assign(*ts) {
            let e = out.entry((user.clone(), w.start, w.end)).or_insert((0, 0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 += v;
            e.2 = e.2.min(*v);
            e.3 = e.3.max(*v);
        }
    }
    out
}

fn windows() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..500).prop_map(|s| WindowSpec::tumbling(s).unwrap()),
        (1i64..300, 1i64..300).prop_map(|(size, slide)| WindowSpec::hopping(size, slide).unwrap()),
        (1i64..100, 1i64..6).prop_map(|(step, n)| WindowSpec::cumulate(step, step * n).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn results_equal_the_oracle_whatever_the_order_and_batching(
        windows in windows(),
        rows in proptest::collection::vec((0u8..4, 0i64..2_000, -50i64..50), 1..150),
        cuts in proptest::collection::vec(1usize..20, 1..20),
    ) {
        let rows: Vec<(String, i64, i64)> = rows.into_iter().map(|(u, t, v)| (format!("u{u}"), t, v)).collect();
        let mut op = operator(windows, 0);
        let mut got = Results::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < rows.len() {
            let n = (*cut.next().unwrap()).min(rows.len() - at);
            let p = op.process(&batch(&rows[at..at + n])).unwrap();
            prop_assert!(p.late.is_none(), "the watermark never passed an unseen row");
            at += n;
            // As far as the watermark can go without passing a row still to come.
            if let Some(next) = rows[at..].iter().map(|r| r.1).min() {
                collect(&mut got, op.advance(next - 1).unwrap());
            }
        }
        collect(&mut got, op.finish().unwrap());
        prop_assert_eq!(got, oracle(&rows, windows));
        prop_assert_eq!(op.open_groups(), 0);
    }

    #[test]
    fn sessions_equal_the_oracle_whatever_the_order_and_batching(
        gap in 1i64..200,
        rows in proptest::collection::vec((0u8..3, 0i64..3_000, -50i64..50), 1..120),
        cuts in proptest::collection::vec(1usize..20, 1..20),
    ) {
        let rows: Vec<(String, i64, i64)> = rows.into_iter().map(|(u, t, v)| (format!("u{u}"), t, v)).collect();
        let mut op = operator(Windows::Session { gap }, 0);
        let mut got = Results::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < rows.len() {
            let n = (*cut.next().unwrap()).min(rows.len() - at);
            let p = op.process(&batch(&rows[at..at + n])).unwrap();
            prop_assert!(p.late.is_none());
            at += n;
            if let Some(next) = rows[at..].iter().map(|r| r.1).min() {
                collect(&mut got, op.advance(next - 1).unwrap());
            }
        }
        collect(&mut got, op.finish().unwrap());
        // Oracle: per user, sorted times cut where the next is a gap or more later.
        let mut want = Results::new();
        let mut by_user: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for (u, t, v) in &rows {
            by_user.entry(u.clone()).or_default().push((*t, *v));
        }
        for (u, mut tv) in by_user {
            tv.sort_unstable();
            let mut group: Vec<(i64, i64)> = vec![tv[0]];
            let mut flush = |g: &Vec<(i64, i64)>| {
                let vs: Vec<i64> = g.iter().map(|x| x.1).collect();
                let key = (u.clone(), g[0].0, g[g.len() - 1].0 + gap);
                want.insert(key, (vs.len() as i64, vs.iter().sum(), *vs.iter().min().unwrap(), *vs.iter().max().unwrap()));
            };
            for x in &tv[1..] {
                if x.0 >= group[group.len() - 1].0 + gap {
                    flush(&group);
                    group = vec![*x];
                } else {
                    group.push(*x);
                }
            }
            flush(&group);
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(op.open_groups(), 0);
    }
}

#[test]
fn late_rows_come_back_and_rows_within_the_lateness_update_the_result() {
    let tumbling = WindowSpec::tumbling(10).unwrap();
    let row = |ts, v| ("a".to_owned(), ts, v);
    // No lateness: a row for a window the watermark passed is late.
    let mut strict = operator(tumbling, 0);
    strict.process(&batch(&[row(1, 5)])).unwrap();
    let mut got = Results::new();
    collect(&mut got, strict.advance(20).unwrap());
    assert_eq!(got[&("a".into(), 0, 10)], (1, 5, 5, 5));
    let p = strict.process(&batch(&[row(3, 7), row(25, 1)])).unwrap();
    let late = p.late.unwrap();
    assert_eq!(late.num_rows(), 1);
    assert_eq!(late.column(1).as_primitive::<Int64Type>().value(0), 3);

    // Lateness 15: the window [0, 10) is kept until the watermark passes 24.
    let mut lenient = operator(tumbling, 15);
    lenient.process(&batch(&[row(1, 5)])).unwrap();
    let mut got = Results::new();
    collect(&mut got, lenient.advance(20).unwrap());
    assert!(lenient.process(&batch(&[row(3, 7)])).unwrap().late.is_none());
    collect(&mut got, lenient.advance(21).unwrap());
    assert_eq!(got[&("a".into(), 0, 10)], (2, 12, 5, 7), "fired again with the late row");
    assert_eq!(lenient.advance(30).unwrap().map(|b| b.num_rows()), None, "nothing new to report");
    assert!(lenient.process(&batch(&[row(4, 1)])).unwrap().late.is_some(), "dropped after the lateness");
}

#[test]
fn configuration_mistakes_are_named() {
    let with_time = |time_column: &str| {
        WindowAggregate::new(
            schema(),
            WindowAggregateConfig {
                time_column: time_column.into(),
                keys: vec![],
                windows: WindowSpec::tumbling(10).unwrap().into(),
                aggregates: vec![],
                allowed_lateness: 0,
                early_fire: false,
            },
        )
        .unwrap_err()
    };
    let bad = with_time("when");
    assert!(bad.to_string().contains("'when'"), "{bad}");
    let bad = with_time("user");
    assert!(bad.to_string().contains("Int64 milliseconds"), "{bad}");
    // Null amounts: count skips them, the sum ignores them.
    let mut op = operator(WindowSpec::tumbling(10).unwrap(), 0);
    let b = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec!["x", "x"])),
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int64Array::from(vec![Some(4), None])),
        ],
    )
    .unwrap();
    op.process(&b).unwrap();
    let out = op.finish().unwrap().unwrap();
    assert_eq!(out.column(4).as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(out.column(5).as_primitive::<Int64Type>().value(0), 4);
    assert!(!out.column(6).is_null(0));
}

/// Every fired row of count windows, in firing order: (user, start, end, count, sum, min, max).
fn fired_rows(b: &RecordBatch) -> Vec<(String, i64, i64, i64, i64, i64, i64)> {
    let users = b.column(0).as_string::<i32>();
    let starts = b.column(1).as_primitive::<TimestampMillisecondType>();
    let ends = b.column(2).as_primitive::<TimestampMillisecondType>();
    let col = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
    let (n, total, lo, hi) = (col(4), col(5), col(6), col(7));
    (0..b.num_rows())
        .map(|r| {
            let user = users.value(r).to_owned();
            (user, starts.value(r), ends.value(r), n.value(r), total.value(r), lo.value(r), hi.value(r))
        })
        .collect()
}

proptest! {
    #[test]
    fn count_windows_fire_every_n_rows_per_key_across_a_checkpoint(
        size in 1u64..6,
        rows in proptest::collection::vec((0u8..4, 0i64..1_000, -50i64..50), 1..150),
        cut in 1usize..20,
        checkpoint_after in 0usize..10,
    ) {
        let rows: Vec<(String, i64, i64)> = rows.into_iter().map(|(u, t, a)| (format!("u{u}"), t, a)).collect();
        let mut op = operator(Windows::Count { size }, 0);
        let mut fired = Vec::new();
        for (i, chunk) in rows.chunks(cut).enumerate() {
            let out = op.process(&batch(chunk)).unwrap();
            prop_assert!(out.late.is_none());
            if let Some(b) = out.fired {
                fired.extend(fired_rows(&b));
            }
            // Watermarks neither fire nor drop count windows.
            prop_assert!(op.advance(chunk.iter().map(|r| r.1).max().unwrap()).unwrap().is_none());
            if i == checkpoint_after {
                let state = op.snapshot().unwrap();
                op = operator(Windows::Count { size }, 0);
                if let Some(state) = state {
                    op.restore(&state).unwrap();
                }
            }
        }
        prop_assert!(op.finish().unwrap().is_none(), "a window short of its rows does not fire");
        // The definition: each user's rows in arrival order, `size` at a time.
        let mut per_user: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut want = Vec::new();
        for (u, t, a) in &rows {
            let open = per_user.entry(u.clone()).or_default();
            open.push((*t, *a));
            if open.len() as u64 == size {
                let ts = open.iter().map(|r| r.0);
                let amounts = open.iter().map(|r| r.1);
                want.push((
                    u.clone(),
                    ts.clone().min().unwrap(),
                    ts.max().unwrap() + 1,
                    size as i64,
                    amounts.clone().sum(),
                    amounts.clone().min().unwrap(),
                    amounts.max().unwrap(),
                ));
                open.clear();
            }
        }
        prop_assert_eq!(fired, want);
    }
}
