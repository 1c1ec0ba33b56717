//! Exactly-once output across kills: `rill nexmark run` is killed with
//! SIGKILL at random points in several rounds and restarted each time; a
//! last run reads the topics to their end. The committed output files must
//! hold exactly the oracle's rows — nothing lost, nothing twice.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rill, signal, start, stop};
use datafusion::arrow::json::ReaderBuilder;
use rill_nexmark::{GeneratorConfig, Query, canonical, final_rows, oracle};
use rill_streams::JsonFileSink;

fn latest(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("LATEST")).ok().and_then(|s| s.trim().parse().ok())
}

fn run_query(addr: &str, dir: &Path, query: Query, extra: &[&str]) -> Child {
    rill()
        .args(["nexmark", "run", "--server", addr, "--prefix", "nx-", "--disorder", "1000", "--query", query.name()])
        .args(["--checkpoint-interval-ms", "150", "--checkpoint-dir"])
        .arg(dir.join("checkpoints"))
        .arg("--output-dir")
        .arg(dir.join("out"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn committed_rows(dir: &Path, query: Query) -> Vec<String> {
    let job = rill_streams::dsl::Job::new();
    let schema = query.build(&job).schema();
    let mut batches = Vec::new();
    for file in JsonFileSink::committed(&dir.join("out")).unwrap() {
        let reader = ReaderBuilder::new(Arc::clone(&schema))
            .build(std::io::BufReader::new(std::fs::File::open(&file).unwrap()))
            .unwrap();
        for b in reader {
            batches.push(b.unwrap());
        }
    }
    final_rows(query, &batches).unwrap()
}

/// Messages the latest checkpoint has read past (sum of its queue positions).
fn read_in_checkpoint(dir: &Path) -> u64 {
    let id = latest(dir).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("chk-{id:020}/meta.json"))).unwrap()).unwrap();
    meta["positions"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum()
}

#[test]
fn killed_and_restarted_jobs_write_every_result_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let config = GeneratorConfig { events: 30_000, rate: 1_000, disorder: 1_000, seed: 11, ..Default::default() };
    let produced = rill()
        .args(["nexmark", "produce", "--server", &addr, "--prefix", "nx-", "--events", "30000", "--rate", "1000"])
        .args(["--disorder", "1000", "--seed", "11"])
        .output()
        .unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));

    let mut killed_mid_input = false;
    for query in [Query::Q4, Query::Q5, Query::Q8] {
        let work = dir.path().join(query.name());
        let checkpoints = work.join("checkpoints");
        // Kill rounds: wait for a new checkpoint, then kill a pseudo-random moment later.
        let mut seed = 0x9E37_79B9_u64 ^ query.name().len() as u64;
        let mut read_at_kill = Vec::new();
        for round in 0..4 {
            let before = latest(&checkpoints);
            let mut child = run_query(&addr, &work, query, &[]);
            let deadline = Instant::now() + Duration::from_secs(60);
            while latest(&checkpoints) == before {
                if child.try_wait().unwrap().is_some() {
                    let out = child.wait_with_output().unwrap();
                    panic!("{} round {round}: the job stopped: {}", query.name(), String::from_utf8_lossy(&out.stderr));
                }
                assert!(Instant::now() < deadline, "{} round {round}: no checkpoint within 60 s", query.name());
                std::thread::sleep(Duration::from_millis(20));
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            std::thread::sleep(Duration::from_millis((seed >> 33) % 400));
            signal(&child, "-KILL");
            let out = child.wait_with_output().unwrap();
            read_at_kill.push(read_in_checkpoint(&checkpoints));
            assert!(!out.status.success(), "{} round {round}: the job ended before it was killed", query.name());
        }
        let last = run_query(&addr, &work, query, &["--until-caught-up"]).wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&last.stdout).into_owned();
        assert!(last.status.success(), "{}: {}", query.name(), String::from_utf8_lossy(&last.stderr));
        assert!(said.contains("resumed from checkpoint"), "{}: the last run did not resume: {said}", query.name());

        let total = read_in_checkpoint(&checkpoints);
        eprintln!(
            "{}: messages covered by the latest checkpoint at each kill: {read_at_kill:?} of {total}",
            query.name()
        );
        killed_mid_input |= read_at_kill.iter().any(|r| *r < total);
        let expected = canonical(&oracle(query, config).unwrap()).unwrap();
        let got = committed_rows(&work, query);
        assert!(!expected.is_empty());
        let mut seen = std::collections::HashSet::new();
        let twice: Vec<_> = got.iter().filter(|r| !seen.insert(*r)).take(3).collect();
        assert!(twice.is_empty(), "{}: rows written twice, e.g. {twice:?}", query.name());
        let missing: Vec<_> = expected.iter().filter(|r| !seen.contains(r)).take(3).collect();
        assert!(missing.is_empty(), "{}: rows lost, e.g. {missing:?}", query.name());
        assert_eq!(got, expected, "{}", query.name());
    }
    assert!(
        killed_mid_input,
        "no kill landed before the input was read; the test did not exercise recovery mid-stream"
    );
    stop(broker);
}
