//! SQL job files as a user runs them, against a broker the test starts:
//! every `tests/jobs/*.sql` runs to the end of its bounded input and its
//! sink's committed files must equal the `.expected` file next to it (rows
//! in any order; `RILL_BLESS=1` rewrites the expected files from a run,
//! to be read and checked by a person before committing). Lines
//! `-- explain: text` must appear in the job's EXPLAIN; with
//! `-- upsert key: column` the last row per key is compared (an upsert stream). Every
//! `tests/errors/*.sql` must fail to plan with the message and position its
//! first line (`-- error: line:column: text`) names.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_broker::{Broker, BrokerConfig};
use rill_client::{ClientConfig, Message, Producer};
use rill_sql::SqlJob;
use rill_store::{MetaStore, Store, StoreConfig};

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

async fn broker(dir: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let store = Store::open(StoreConfig::new(dir.join("data"))).unwrap();
    let meta = MetaStore::open(dir.join("data/meta")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker =
        Broker::new(store, meta, BrokerConfig { store_host: addr, default_queues: 2, ..BrokerConfig::default() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), addr, listener, None, async move {
        let _ = stopped.await;
    }));
    (addr.to_string(), stop)
}

/// Sends every message of the `.input` files (`{"topic", "tag", "properties", "body"}` per line), in order.
async fn produce(addr: &str) {
    let producer = Producer::connect(ClientConfig::new(addr)).await.unwrap();
    for input in files("jobs", "input") {
        for line in std::fs::read_to_string(&input).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut msg = Message::new(m["topic"].as_str().unwrap(), m["body"].to_string());
            if let Some(tag) = m["tag"].as_str() {
                msg = msg.with_tag(tag);
            }
            // Messages of one group stay in order (one queue), as a CDC source keeps a key's changes.
            if let Some(group) = m["group"].as_str() {
                msg = msg.with_message_group(group);
            }
            for (k, v) in m["properties"].as_object().into_iter().flatten() {
                msg = msg.with_property(k, v.as_str().unwrap());
            }
            producer.send(msg).await.unwrap();
        }
    }
}

fn comments<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.trim().strip_prefix("--")?.trim().strip_prefix(key).map(str::trim)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_files_give_their_golden_output() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop) = broker(dir.path()).await;
    produce(&addr).await;
    let jobs = files("jobs", "sql");
    assert!(jobs.len() >= 3);
    for path in jobs {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let out = dir.path().join(&name);
        let vars = HashMap::from([("BROKER".to_owned(), addr.clone()), ("OUT".to_owned(), out.display().to_string())]);
        let job = SqlJob::load(&path).unwrap().with_vars(vars);
        let text = std::fs::read_to_string(&path).unwrap();
        let explain = job.explain().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        for want in comments(&text, "explain:") {
            assert!(explain.contains(want), "{name}: EXPLAIN lacks {want:?}:\n{explain}");
        }
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let reports = job.run(stopped).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(reports.iter().all(|r| r.messages > 0 && r.dead == 0), "{name}: {reports:?}");
        let mut rows: Vec<String> = Vec::new();
        for file in rill_streams::JsonFileSink::committed(&out.join("out")).unwrap() {
            rows.extend(std::fs::read_to_string(file).unwrap().lines().map(str::to_owned));
        }
        // A changelog: applied in order to a table keyed by `key`, the table is the result.
        if let Some(key) = comments(&text, "changelog key:").first() {
            let mut table = std::collections::BTreeMap::new();
            for row in rows {
                let mut v: serde_json::Value = serde_json::from_str(&row).unwrap();
                let op = v.as_object_mut().unwrap().remove("__op").unwrap();
                match op.as_str().unwrap() {
                    "+I" | "+U" => table.insert(v[*key].to_string(), v.to_string()),
                    "-U" | "-D" => table.remove(&v[*key].to_string()),
                    other => panic!("{name}: unknown row kind {other}"),
                };
            }
            rows = table.into_values().collect();
        }
        // An upsert result: the last row per key is the row.
        if let Some(key) = comments(&text, "upsert key:").first() {
            let mut latest = std::collections::BTreeMap::new();
            for row in rows {
                let v: serde_json::Value = serde_json::from_str(&row).unwrap();
                latest.insert(v[*key].to_string(), row);
            }
            rows = latest.into_values().collect();
        }
        rows.sort();
        let expected_path = path.with_extension("expected");
        if std::env::var("RILL_BLESS").as_deref() == Ok("1") {
            std::fs::write(&expected_path, rows.join("\n") + "\n").unwrap();
            continue;
        }
        let mut expected: Vec<String> = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()))
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        expected.sort();
        assert_eq!(rows, expected, "{name}: output differs from {}", expected_path.display());
    }
}

#[tokio::test]
async fn each_mistake_is_reported_with_its_place() {
    let errors = files("errors", "sql");
    assert!(errors.len() >= 6);
    for path in errors {
        let text = std::fs::read_to_string(&path).unwrap();
        let want = comments(&text, "error:").first().map(|s| s.to_string()).unwrap();
        let (place, message) = want.split_once(": ").unwrap();
        let vars = HashMap::from([("BROKER".to_owned(), "127.0.0.1:1".to_owned())]);
        let result = match SqlJob::load(&path) {
            Ok(job) => job.with_vars(vars).build().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.err().unwrap_or_else(|| panic!("{} planned without an error", path.display())).to_string();
        let prefix = format!("{}:{place}: ", path.display());
        assert!(err.starts_with(&prefix), "{}: expected an error at {place}, got: {err}", path.display());
        assert!(err.contains(message), "{}: expected {message:?} in: {err}", path.display());
    }
}
