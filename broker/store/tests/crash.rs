//! Kill -9 at random moments: every acknowledged message survives, byte for
//! byte, and nothing unacknowledged is half-visible.
//!
//! The test re-runs its own executable as the writer process (the
//! `writer_process` test, which does nothing unless `RILL_CRASH_DIR` is
//! set), reads acknowledgements from its stdout and kills it with SIGKILL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{body, message, small_config};
use rand::{Rng, SeedableRng};
use rill_store::{FlushConfig, ReadStatus, Store};

const DIR_ENV: &str = "RILL_CRASH_DIR";
const ROUND_ENV: &str = "RILL_CRASH_ROUND";
const WRITERS: u64 = 4;
const QUEUES: u32 = 3;

/// The writer side. Runs only when spawned by `acknowledged_messages_survive_sigkill`.
#[test]
fn writer_process() {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let mut cfg = small_config(std::path::Path::new(&dir));
    cfg.flush = FlushConfig::Sync {};
    // Checkpoints while writing, so recovery also starts mid-log.
    cfg.checkpoint_interval_ms = 20;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = Store::open(cfg).unwrap();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0.. {
                    let key = format!("{round}-{w}-{seq}");
                    let msg = message("crash", (seq % u64::from(QUEUES)) as u32, body(round, w, seq), "T", &key);
                    let a = store.append(msg).await.unwrap();
                    println!("ACK {key} {} {}", a.physical_offset, a.queue_offset);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    round: u64,
    writer: u64,
    seq: u64,
    physical: u64,
    queue_offset: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let mut key = parts.next()?.split('-').map(|p| p.parse::<u64>());
    let (round, writer, seq) = (key.next()?.ok()?, key.next()?.ok()?, key.next()?.ok()?);
    Some(Ack { round, writer, seq, physical: parts.next()?.parse().ok()?, queue_offset: parts.next()?.parse().ok()? })
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("RILL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (set RILL_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let mut acks: Vec<Ack> = Vec::new();
    for round in 0..6u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_process", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = parse_ack(&line)
                    && tx.send(ack).is_err()
                {
                    break;
                }
            }
        });
        let kill_after = rng.random_range(20..400);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < kill_after {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => {
                    acks.push(a);
                    seen += 1;
                }
                Err(e) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "round {round}: writer stopped acknowledging ({e}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        // The kill lands at a random point inside ongoing appends.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "round {round}: writer exited on its own: {status}");
        reader.join().unwrap();
        acks.extend(rx.try_iter());
        println!("round {round}: killed after {} acknowledgements in total", acks.len());
    }

    let cfg = small_config(dir.path());
    let store = Store::open(cfg).unwrap();
    assert!(store.state().recovery.unclean_shutdown);
    // Every acknowledged message is readable, byte for byte, where it was acknowledged.
    let mut by_queue: HashMap<(u32, u64), Ack> = HashMap::new();
    for a in &acks {
        let m = store.read(a.physical).unwrap();
        assert_eq!(&m.body[..], &body(a.round, a.writer, a.seq)[..], "ack {a:?}");
        assert_eq!(m.properties.get("KEYS"), Some(format!("{}-{}-{}", a.round, a.writer, a.seq).as_str()));
        assert_eq!(m.queue_offset, a.queue_offset);
        by_queue.insert((m.queue_id, m.queue_offset), *a);
    }
    // Every message in every queue is whole (CRC-checked on read), complete,
    // and each acknowledged one sits at its acknowledged queue offset.
    let mut per_writer: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    for q in 0..QUEUES {
        let r = store.read_queue("crash", q, 0, 1_000_000).unwrap();
        assert_eq!(r.status, ReadStatus::Found);
        assert_eq!(r.messages.len() as u64, r.max_offset, "queue {q} has a gap");
        for (i, m) in r.messages.iter().enumerate() {
            assert_eq!(m.queue_offset, i as u64);
            let key = m.properties.get("KEYS").unwrap();
            let parts: Vec<u64> = key.split('-').map(|p| p.parse().unwrap()).collect();
            assert_eq!(&m.body[..], &body(parts[0], parts[1], parts[2])[..], "message {key} is not whole");
            per_writer.entry((parts[0], parts[1])).or_default().push(parts[2]);
            if let Some(a) = by_queue.get(&(q, i as u64)) {
                assert_eq!((a.round, a.writer, a.seq), (parts[0], parts[1], parts[2]));
            }
        }
    }
    // A writer's messages are a gap-free prefix of what it tried to write:
    // the one lost at the kill can only be the last.
    for ((round, writer), mut seqs) in per_writer {
        seqs.sort_unstable();
        assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64), "round {round} writer {writer}: {seqs:?}");
    }
    assert!(acks.len() >= 6 * 20);
    store.close().unwrap();
}

const META_ENV: &str = "RILL_META_CRASH_DIR";

/// The metadata writer side. Runs only when spawned by `metadata_survives_sigkill`.
#[test]
fn metadata_writer_process() {
    let Ok(dir) = std::env::var(META_ENV) else { return };
    let meta = rill_store::MetaStore::open(dir).unwrap();
    meta.put_topic(rill_store::TopicConfig::new("orders", 4)).unwrap();
    for n in 1u64.. {
        meta.commit_offset("g", "orders", (n % 4) as u32, n);
        meta.flush_offsets().unwrap();
        println!("PERSISTED {n}");
    }
}

#[test]
fn metadata_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    for _round in 0..5 {
        let mut child = Command::new(&exe)
            .args(["--exact", "metadata_writer_process", "--nocapture", "--test-threads=1"])
            .env(META_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stop_at = rng.random_range(5..200u64);
        let mut last = 0;
        for line in lines.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("PERSISTED ") {
                last = n.parse().unwrap();
                if last >= stop_at {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Always a parseable file, holding at least what was reported persisted.
        let meta = rill_store::MetaStore::open(dir.path()).unwrap();
        assert_eq!(meta.topic("orders").unwrap().read_queues, 4);
        let newest = (0..4).filter_map(|q| meta.offset("g", "orders", q)).max().unwrap();
        assert!(newest >= last, "persisted {last}, reopened {newest}");
    }
}
