//! The sink against a real OpenSearch-compatible server (`osmem-server`,
//! started per test on a free port): documents indexed, replaced and
//! deleted by key, refused documents set aside with the server's reason,
//! replays leaving the same documents, a dead host skipped, and a SQL job
//! file writing through it. Without the server binary the tests say so
//! loudly and pass, except in CI (`CI=true`).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use rill_elasticsearch::server::LocalSearch;
use rill_elasticsearch::{ElasticsearchConfig, ElasticsearchSink, IndexPattern};
use rill_streams::{OP_COLUMN, Origin, Sink};

fn search() -> Option<LocalSearch> {
    if rill_elasticsearch::server::binary().is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no osmem-server on this machine");
        eprintln!("SKIPPED: osmem-server is not installed (scripts/test installs it: pip install osmem-server)");
        return None;
    }
    Some(LocalSearch::start().unwrap())
}

/// Rows (id, customer, amount) with a change kind each.
fn orders(rows: &[(i64, &str, f64, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(OP_COLUMN, DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn sink(hosts: Vec<String>, index: &str) -> ElasticsearchSink {
    let pattern = IndexPattern::parse(index, &["id", "customer", "amount"]).unwrap();
    let mut config = ElasticsearchConfig::new("orders_index", hosts, pattern, vec!["id".into()]);
    config.backoff = Duration::from_millis(10);
    ElasticsearchSink::new(config).unwrap()
}

/// (id, customer, amount) of every document of `index`.
async fn documents(server: &LocalSearch, index: &str) -> Vec<(String, String, f64)> {
    let docs = server.documents(index).await.unwrap();
    docs.into_iter()
        .map(|(id, d)| (id, d["customer"].as_str().unwrap().to_owned(), d["amount"].as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_follow_the_changelog_and_refused_ones_become_dead_letters() {
    let Some(server) = search() else { return };
    let url = server.url().to_owned();
    let first = orders(&[(1, "ada", 10.5, "+I"), (2, "bob", 20.0, "+I"), (3, "cy", 30.0, "+I")]);
    let changes = orders(&[(2, "bob", 20.0, "-U"), (2, "bob", 25.0, "+U"), (3, "cy", 30.0, "-D")]);
    let (written, rejected) = tokio::task::spawn_blocking({
        let (url, first, changes) = (url.clone(), first.clone(), changes.clone());
        move || {
            let mut s = sink(vec![url], "orders");
            s.write(first.clone()).unwrap();
            s.write(changes.clone()).unwrap();
            s.prepare(1).unwrap();
            // A replay after a restart from an older checkpoint: the same documents.
            s.write(first).unwrap();
            s.write(changes).unwrap();
            s.prepare(2).unwrap();
            (s.written(), s.rejected())
        }
    })
    .await
    .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(written, 10, "3 indexed + 1 replaced + 1 deleted, twice");
    assert_eq!(
        documents(&server, "orders").await,
        [("1".into(), "ada".into(), 10.5), ("2".into(), "bob".into(), 25.0)]
    );

    // A document whose field cannot be a number in this index: set aside with
    // the server's reason; the others of its request land.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, false),
        Field::new("amount", DataType::Utf8, false),
    ]));
    let odd = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![4, 5])),
            Arc::new(StringArray::from(vec!["dee", "eve"])),
            Arc::new(StringArray::from(vec!["lots", "7.5"])),
        ],
    )
    .unwrap();
    let rejected = tokio::task::spawn_blocking(move || {
        let mut s = sink(vec![url], "orders");
        s.write(odd).unwrap();
        s.prepare(1).unwrap();
        s.rejected()
    })
    .await
    .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].origin, Origin::Sink("orders_index".into()));
    assert!(rejected[0].reason.contains("mapper_parsing_exception"), "{}", rejected[0].reason);
    let body: serde_json::Value = serde_json::from_slice(&rejected[0].body).unwrap();
    assert_eq!(body["amount"], "lots", "the refused document travels with its reason");
    // ("7.5" is taken: the server reads a number from the text; its source keeps the text.)
    let ids: Vec<String> = server.documents("orders").await.unwrap().into_iter().map(|d| d.0).collect();
    assert_eq!(ids, ["1", "2", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_refuses_connections_is_skipped() {
    let Some(server) = search() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hosts = vec![format!("http://{closed}"), server.url().to_owned()];
    let rows: Vec<(i64, &str, f64, &str)> = (1..=250).map(|i| (i, "x", i as f64, "+I")).collect();
    let batch = orders(&rows);
    let written = tokio::task::spawn_blocking(move || {
        let mut s = sink(hosts, "orders-{customer}");
        s.write(batch).unwrap();
        s.prepare(1).unwrap();
        s.written()
    })
    .await
    .unwrap();
    assert_eq!(written, 250);
    assert_eq!(server.count("orders-x").await.unwrap(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_job_indexes_rows_by_day_and_keeps_aggregates_up_to_date() {
    let Some(server) = search() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/datagen_to_es.sql");
    let vars = HashMap::from([
        ("ES".to_owned(), server.url().to_owned()),
        ("OUT".to_owned(), dir.path().display().to_string()),
    ]);
    let mut job = rill_sql::SqlJob::load(&path).unwrap().with_vars(vars);
    rill_elasticsearch::register(job.connectors_mut());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let reports = job.run(stopped).await.unwrap();
    assert_eq!(reports.iter().map(|r| r.dead).sum::<u64>(), 0);
    // Every click of 2023-11-14 (UTC) in that day's index, by id = n.
    let clicks = server.documents("clicks-2023.11.14").await.unwrap();
    let mut ns: Vec<i64> = clicks
        .iter()
        .map(|(id, d)| {
            assert_eq!(id, &d["n"].to_string());
            d["n"].as_i64().unwrap()
        })
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (1..=50).collect::<Vec<_>>());
    // One document per user; the counts add up to every click, and each
    // user's clicks agree with the click index.
    let users = server.documents("per-user").await.unwrap();
    assert!(!users.is_empty() && users.len() <= 3, "{users:?}");
    assert_eq!(users.iter().map(|(_, d)| d["clicks"].as_i64().unwrap()).sum::<i64>(), 50);
    for (id, d) in &users {
        let own: Vec<i64> = clicks
            .iter()
            .filter(|(_, c)| &c["user_id"].to_string() == id)
            .map(|(_, c)| c["n"].as_i64().unwrap())
            .collect();
        assert_eq!(d["clicks"].as_i64().unwrap(), own.len() as i64, "user {id}");
        assert_eq!(d["last_n"].as_i64(), own.iter().max().copied(), "user {id}");
    }
}
