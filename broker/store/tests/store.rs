//! Appends, reads across segments, queue lookups, keys and ids, restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{body, message, small_config};
use rill_common::{ManualClock, java_string_hash};
use rill_store::{Error, FlushConfig, ReadStatus, StatvfsDisk, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_roll_across_segments_and_read_back_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let segment = cfg.segment_size;
    let store = Store::open(cfg.clone()).unwrap();
    let mut written = Vec::new();
    for seq in 0..400u64 {
        let q = (seq % 4) as u32;
        let a = store.append(message("orders", q, body(1, 0, seq), "TagA", &format!("k{seq}"))).await.unwrap();
        // A record never straddles two segment files.
        assert_eq!(a.physical_offset / segment, (a.end() - 1) / segment, "record {seq} spans segments");
        written.push((q, a));
    }
    store.wait_dispatched(written.last().unwrap().1.end()).await.unwrap();
    let state = store.state();
    assert!(state.segments >= 8, "expected many segments, got {}", state.segments);
    let check = |store: &Store| {
        for q in 0..4u32 {
            // One read that spans every segment.
            let r = store.read_queue("orders", q, 0, 1000).unwrap();
            assert_eq!(r.status, ReadStatus::Found);
            assert_eq!(r.messages.len(), 100);
            assert_eq!(r.next_offset, 100);
            for (i, m) in r.messages.iter().enumerate() {
                let seq = i as u64 * 4 + u64::from(q);
                assert_eq!(&m.body[..], &body(1, 0, seq)[..]);
                assert_eq!(m.queue_offset, i as u64);
                assert_eq!(m.properties.tag(), Some("TagA"));
            }
            assert_eq!(store.read_queue("orders", q, 100, 10).unwrap().status, ReadStatus::NoNewMessages);
            assert_eq!(store.read_queue("orders", q, 101, 10).unwrap().status, ReadStatus::OffsetOverflow);
        }
        for (_, a) in &written {
            assert_eq!(store.read(a.physical_offset).unwrap().physical_offset, a.physical_offset);
        }
    };
    check(&store);
    store.close().unwrap();

    let store = Store::open(cfg).unwrap();
    assert!(!store.state().recovery.unclean_shutdown);
    assert_eq!(store.state().recovery.records_replayed, 0, "a clean stop needs no replay");
    check(&store);
    // Queue offsets continue where they stopped.
    let a = store.append(message("orders", 2, b"after".to_vec(), "TagB", "late")).await.unwrap();
    assert_eq!(a.queue_offset, 100);
    store.close().unwrap();
}

#[tokio::test]
async fn tag_hash_filter_and_lookup_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let store = Store::open_with(small_config(dir.path()), Arc::new(clock.clone()), Arc::new(StatvfsDisk)).unwrap();
    let mut last = 0;
    for seq in 0..60u64 {
        clock.advance(1_000);
        let tag = if seq % 3 == 0 { "TagA" } else { "TagB" };
        last = store.append(message("t", 0, body(2, 0, seq), tag, "k")).await.unwrap().end();
    }
    store.wait_dispatched(last).await.unwrap();
    let want = i64::from(java_string_hash("TagA")) as u64;
    let r = store.read_queue_filtered("t", 0, 0, 100, 100, |e| e.tag_hash == want).unwrap();
    assert_eq!(r.messages.len(), 20);
    assert!(r.messages.iter().all(|m| m.properties.tag() == Some("TagA")));
    // A scan limit stops early and says where to continue.
    let r = store.read_queue_filtered("t", 0, 0, 100, 10, |e| e.tag_hash == want).unwrap();
    assert_eq!((r.messages.len(), r.next_offset), (4, 10));
    // Message n was stored at 1_000_000 + (n + 1) * 1000.
    assert_eq!(store.offset_for_time("t", 0, 1_000_000 + 25_500), Some(25));
    assert_eq!(store.offset_for_time("t", 0, 0), Some(0));
    assert_eq!(store.offset_for_time("t", 0, i64::MAX), Some(60));
    assert_eq!(store.offset_for_time("nope", 0, 0), None);
    store.close().unwrap();
}

#[tokio::test]
async fn query_by_key_and_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    let mut last = 0;
    for seq in 0..300u64 {
        let key = format!("order-{} shared", seq % 50);
        last = store.append(message("orders", (seq % 2) as u32, body(3, 0, seq), "T", &key)).await.unwrap().end();
        last = last.max(store.append(message("other", 0, body(3, 1, seq), "T", "order-7")).await.unwrap().end());
    }
    store.wait_dispatched(last).await.unwrap();
    let hits = store.query_by_key("orders", "order-7", 0, i64::MAX, 100).unwrap();
    assert_eq!(hits.len(), 6, "order-7 was used 6 times on topic orders");
    assert!(hits.iter().all(|m| m.topic.as_str() == "orders"));
    assert!(hits.windows(2).all(|w| w[0].physical_offset > w[1].physical_offset), "newest first");
    assert_eq!(store.query_by_key("orders", "shared", 0, i64::MAX, 1000).unwrap().len(), 300);
    assert_eq!(store.query_by_key("orders", "order-7", 0, i64::MAX, 2).unwrap().len(), 2);
    assert!(store.query_by_key("orders", "absent", 0, i64::MAX, 10).unwrap().is_empty());
    let by_id = store.message_by_id("ID-order-3 shared").unwrap().unwrap();
    assert_eq!(by_id.properties.unique_id(), Some("ID-order-3 shared"));
    assert!(store.message_by_id("ID-none").unwrap().is_none());
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_acknowledges_only_flushed_data_with_many_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    cfg.flush = FlushConfig::Sync {};
    let store = Store::open(cfg).unwrap();
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut end = 0;
            for seq in 0..20u64 {
                let a = store.append(message("s", (w % 4) as u32, body(4, w, seq), "T", "k")).await.unwrap();
                // The durability point: flushed covers the record once the append resolves.
                assert!(store.state().flushed >= a.end());
                end = end.max(a.end());
            }
            end
        }));
    }
    let mut end = 0;
    for t in tasks {
        end = end.max(t.await.unwrap());
    }
    store.wait_dispatched(end).await.unwrap();
    let total: u64 = (0..4).map(|q| store.queue_bounds("s", q).map_or(0, |b| b.1)).sum();
    assert_eq!(total, 320);
    store.close().unwrap();
}

#[tokio::test]
async fn bad_input_and_bad_places_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    let err = store.append(message("t", 0, vec![0; 20_000], "T", "k")).await.unwrap_err();
    assert!(matches!(err, Error::MessageTooLarge { limit: 16384, .. }), "{err}");
    assert!(matches!(store.read(1 << 40), Err(Error::OffsetBeyondEnd { .. })));
    assert_eq!(store.read_queue("missing", 0, 0, 1).unwrap().status, ReadStatus::NoSuchQueue);
    store.close().unwrap();

    // A data directory below a regular file cannot be created: the error names it.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(small_config(&file.join("data"))).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("plain-file/data"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_written_through_the_file_mix_with_mapped_appends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let segment = cfg.segment_size;
    let store = Store::open(cfg.clone()).unwrap();
    let mut seq = 0u64;
    let mut expected = Vec::new();
    for round in 0..6 {
        // A batch over STAGE_MIN (written with one pwrite, rolling segments
        // inside it), then single appends through the mapping.
        let batch: Vec<_> = (0..40)
            .map(|_| {
                seq += 1;
                expected.push(seq);
                message("mixed", 0, body(2, round, seq), "T", &format!("k{seq}"))
            })
            .collect();
        let appended = store.append_batch(batch).await.unwrap();
        for a in &appended {
            assert_eq!(a.physical_offset / segment, (a.end() - 1) / segment, "a record spans segments");
        }
        for _ in 0..3 {
            seq += 1;
            expected.push(seq);
            store.append(message("mixed", 0, body(2, round, seq), "T", &format!("k{seq}"))).await.unwrap();
        }
    }
    let check = |store: &Store| {
        let r = store.read_queue("mixed", 0, 0, 10_000).unwrap();
        assert_eq!(r.messages.len(), expected.len());
        for (m, seq) in r.messages.iter().zip(&expected) {
            let round = (seq - 1) / 43;
            assert_eq!(&m.body[..], &body(2, round, *seq)[..], "message {seq}");
        }
    };
    let end = store.state().committed;
    store.wait_dispatched(end).await.unwrap();
    check(&store);
    store.close().unwrap();
    let store = Store::open(cfg).unwrap();
    check(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_and_single_appends_mixed_across_write_windows_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path());
    // Two 4 MiB write windows a segment, and rolls.
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg.clone()).unwrap();
    let mut seq = 0u64;
    let mut bodies = Vec::new();
    let mut next = |bodies: &mut Vec<Vec<u8>>| {
        let b = body(3, 0, seq);
        bodies.push(b.clone());
        seq += 1;
        message("mixed", 0, b, "T", &format!("k{seq}"))
    };
    for round in 0..120u64 {
        // A batch large enough to be written with one `pwrite` …
        let batch: Vec<_> = (0..40).map(|_| next(&mut bodies)).collect();
        store.append_batch(batch).await.unwrap();
        // … then single appends: a few (past the window, written through
        // the file) or a long run (mapped windows again).
        let singles = if round % 3 == 0 { 80 } else { 5 };
        for _ in 0..singles {
            store.append(next(&mut bodies)).await.unwrap();
        }
    }
    let total = bodies.len() as u64;
    assert!(store.state().segments >= 2, "the log rolled: {:?}", store.state().segments);
    let check = |store: &Store| {
        let mut offset = 0;
        while offset < total {
            let r = store.read_queue("mixed", 0, offset, 500).unwrap();
            assert_eq!(r.status, ReadStatus::Found, "at queue offset {offset}");
            for m in &r.messages {
                assert_eq!(&m.body[..], &bodies[m.queue_offset as usize][..], "message {}", m.queue_offset);
            }
            offset = r.next_offset;
        }
        assert_eq!(offset, total);
    };
    store.wait_dispatched(store.state().committed).await.unwrap();
    check(&store);
    store.close().unwrap();
    let store = Store::open(cfg).unwrap();
    check(&store);
    store.close().unwrap();
}
