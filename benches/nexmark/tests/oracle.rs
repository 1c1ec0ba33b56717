//! Every Nexmark query's streaming result equals its batch SQL twin run by
//! DataFusion over the same generated rows — in order, and with input out
//! of order within the watermark's bound.

use rill_nexmark::{GeneratorConfig, Query, canonical, oracle, run};

fn check(query: Query, config: GeneratorConfig) {
    let streamed = run(query, config).unwrap();
    let expected = canonical(&oracle(query, config).unwrap()).unwrap();
    let got = canonical(&streamed.rows).unwrap();
    assert!(!expected.is_empty(), "{}: the oracle found no rows; the workload does not exercise the query", query.name());
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
