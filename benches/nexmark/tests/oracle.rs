//! Every Nexmark query's streaming result equals its batch SQL twin run by
//! DataFusion over the same generated rows — in order, and with input out
//! of order within the watermark's bound.
#![allow(clippy::unwrap_used)]

use rill_nexmark::{GeneratorConfig, Query, canonical, final_rows, oracle, run};

fn check(query: Query, config: GeneratorConfig) {
    let streamed = run(query, config).unwrap();
    let expected = canonical(&oracle(query, config).unwrap()).unwrap();
    let got = final_rows(query, &streamed.rows).unwrap();
    assert!(
        !expected.is_empty(),
        "{}: the oracle found no rows; the workload does not exercise the query",
        query.name()
    );
    if got != expected {
        let missing: Vec<_> = expected.iter().filter(|r| !got.contains(r)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|r| !expected.contains(r)).take(5).collect();
        panic!(
            "{}: {} rows streamed, {} expected; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
            query.name(),
            got.len(),
            expected.len()
        );
    }
}

fn config(disorder: i64) -> GeneratorConfig {
    GeneratorConfig { events: 60_000, rate: 2_000, disorder, chunk: 2_500, seed: 7, ..Default::default() }
}

#[test]
fn every_query_matches_the_oracle_in_order() {
    for q in Query::ALL {
        check(q, config(0));
    }
}

#[test]
fn every_query_matches_the_oracle_out_of_order_within_the_bound() {
    for q in Query::ALL {
        check(q, config(3_000));
    }
}

#[test]
fn the_generator_keeps_the_standard_proportions_and_is_deterministic() {
    let cfg = GeneratorConfig { events: 50_000, ..Default::default() };
    let count = |c: GeneratorConfig| {
        rill_nexmark::Generator::new(c).map(|c| c.unwrap()).fold((0, 0, 0), |acc, c| {
            (acc.0 + c.person.num_rows(), acc.1 + c.auction.num_rows(), acc.2 + c.bid.num_rows())
        })
    };
    assert_eq!(count(cfg), (1_000, 3_000, 46_000));
    let a = canonical(&rill_nexmark::Generator::new(cfg).map(|c| c.unwrap().bid).collect::<Vec<_>>()).unwrap();
    let b = canonical(&rill_nexmark::Generator::new(cfg).map(|c| c.unwrap().bid).collect::<Vec<_>>()).unwrap();
    assert_eq!(a, b, "the same seed gives the same events");
}

#[test]
fn every_query_continues_exactly_from_a_checkpoint_taken_mid_stream() {
    use rill_nexmark::{Generator, feed};
    use rill_streams::dsl::Job;
    use rill_streams::{CheckpointStore, CollectSink};

    let dir = tempfile::tempdir().unwrap();
    for q in Query::ALL {
        let config = config(2_000);
        let chunks: Vec<_> = Generator::new(config).map(|c| c.unwrap()).collect();
        let half = chunks.len() / 2;
        let (before, after) = (CollectSink::new(), CollectSink::new());
        let job = Job::new();
        q.build(&job).sink(before.clone());
        let mut flow = job.build().unwrap();
        for c in &chunks[..half] {
            feed(&mut flow, c).unwrap();
        }
        // Through the checkpoint files, into a fresh job.
        let store = CheckpointStore::open(dir.path().join(q.name())).unwrap();
        store.save(1, &flow.snapshot().unwrap(), &Default::default()).unwrap();
        drop(flow);
        let restored = store.latest().unwrap().unwrap();
        let job = Job::new();
        q.build(&job).sink(after.clone());
        let mut flow = job.build().unwrap();
        flow.restore(&restored.snapshot).unwrap();
        for c in &chunks[half..] {
            feed(&mut flow, c).unwrap();
        }
        flow.finish().unwrap();
        let mut all = before.batches();
        all.extend(after.batches());
        let got = final_rows(q, &all).unwrap();
        let expected = canonical(&oracle(q, config).unwrap()).unwrap();
        assert_eq!(got.len(), expected.len(), "{}: rows after a restore", q.name());
        assert_eq!(got, expected, "{}", q.name());
    }
}
