//! Every Nexmark query's job file (`examples/nexmark/qN.sql`) gives the
//! same rows as the query written in the Rust DSL and as the batch oracle,
//! fed the same generated events — in order and out of order within the
//! watermark's bound — and the files plan through `rill run`'s connectors.
#![allow(clippy::unwrap_used)]

use rill_nexmark::sql::{NexmarkConnector, job_file, run_sql};
use rill_nexmark::{GeneratorConfig, Query, canonical, final_rows, oracle, run};

fn config(disorder: i64) -> GeneratorConfig {
    GeneratorConfig { events: 60_000, rate: 2_000, disorder, chunk: 2_500, seed: 7, ..Default::default() }
}

fn check(query: Query, config: GeneratorConfig) {
    let sql = run_sql(query, config).unwrap_or_else(|e| panic!("{}: {e}", query.name()));
    let dsl = run(query, config).unwrap();
    let expected = canonical(&oracle(query, config).unwrap()).unwrap();
    assert!(!expected.is_empty(), "{}: the oracle found no rows", query.name());
    let got = final_rows(query, &sql.rows).unwrap();
    assert_eq!(got.len(), expected.len(), "{}: SQL rows vs the oracle's", query.name());
    assert!(got == expected, "{}: the SQL job's rows differ from the oracle's", query.name());
    let from_dsl = final_rows(query, &dsl.rows).unwrap();
    assert!(got == from_dsl, "{}: the SQL job's rows differ from the DSL job's", query.name());
}

#[test]
fn every_query_file_matches_the_dsl_and_the_oracle_in_order() {
    for q in Query::ALL {
        check(q, config(0));
    }
}

#[test]
fn every_query_file_matches_the_dsl_and_the_oracle_out_of_order() {
    for q in Query::ALL {
        check(q, config(3_000));
    }
}

#[tokio::test]
async fn every_query_file_plans_with_the_nexmark_connector() {
    for q in Query::ALL {
        let (path, text) = job_file(q);
        let mut job = rill_sql::SqlJob::parse(path.as_ref(), text).unwrap();
        job.connectors_mut().register_source("nexmark", std::sync::Arc::new(NexmarkConnector));
        let explain = job.explain().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(explain.contains("nexmark (bounded)"), "{path}: {explain}");
    }
}
