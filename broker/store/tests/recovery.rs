//! Recovery after unclean stops: torn tails are cut, damage in the middle
//! of the log is reported with its file and offset.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::{body, message, small_config};
use rill_store::{Appended, Error, ReadStatus, Store, StoreConfig};

fn segment_path(cfg: &StoreConfig, offset: u64) -> PathBuf {
    let base = offset - offset % cfg.segment_size;
    cfg.data_dir.join("commitlog").join(format!("{base:020}"))
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Writes `n` messages and drops the store without closing it, as a crash would.
async fn write_and_crash(cfg: &StoreConfig, n: u64) -> Vec<Appended> {
    let store = Store::open(cfg.clone()).unwrap();
    let mut out = Vec::new();
    for seq in 0..n {
        out.push(store.append(message("t", 0, body(9, 0, seq), "T", &format!("k{seq}"))).await.unwrap());
    }
    store.wait_dispatched(out.last().unwrap().end()).await.unwrap();
    drop(store);
    out
}

#[tokio::test]
async fn a_garbled_tail_is_cut_off_and_writing_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let written = write_and_crash(&cfg, 40).await;
    let last = *written.last().unwrap();
    let seg = segment_path(&cfg, last.physical_offset);
    let in_seg = last.physical_offset % cfg.segment_size;
    overwrite(&seg, in_seg + u64::from(last.size) - 7, &[0xAB; 7]);

    let store = Store::open(cfg.clone()).unwrap();
    let state = store.state();
    assert!(state.recovery.unclean_shutdown);
    assert_eq!(state.recovery.truncated_at, Some(last.physical_offset));
    assert_eq!(state.committed, last.physical_offset);
    let r = store.read_queue("t", 0, 0, 100).unwrap();
    assert_eq!(r.messages.len(), 39, "everything before the torn record survives");
    for (i, m) in r.messages.iter().enumerate() {
        assert_eq!(&m.body[..], &body(9, 0, i as u64)[..]);
    }
    assert!(matches!(store.read(last.physical_offset), Err(Error::OffsetBeyondEnd { .. })));
    let again = store.append(message("t", 0, b"replacement".to_vec(), "T", "r")).await.unwrap();
    assert_eq!((again.physical_offset, again.queue_offset), (last.physical_offset, 39));
    store.close().unwrap();

    let store = Store::open(cfg).unwrap();
    let r = store.read_queue("t", 0, 39, 10).unwrap();
    assert_eq!(&r.messages[0].body[..], b"replacement");
    assert_eq!(store.state().recovery.truncated_at, None);
    store.close().unwrap();
}

#[tokio::test]
async fn a_segment_cut_short_mid_record_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let written = write_and_crash(&cfg, 100).await;
    let last = *written.last().unwrap();
    let seg = segment_path(&cfg, last.physical_offset);
    let in_seg = last.physical_offset % cfg.segment_size;
    // The file system lost the end of the file, as after a power cut.
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(in_seg + 20).unwrap();

    let store = Store::open(cfg).unwrap();
    assert_eq!(store.state().recovery.truncated_at, Some(last.physical_offset));
    assert_eq!(store.queue_bounds("t", 0), Some((0, 99)));
    let r = store.read_queue("t", 0, 98, 10).unwrap();
    assert_eq!(&r.messages[0].body[..], &body(9, 0, 98)[..]);
    store.close().unwrap();
}

#[tokio::test]
async fn corruption_in_the_middle_stops_recovery_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let written = write_and_crash(&cfg, 60).await;
    let victim = written[20];
    let seg = segment_path(&cfg, victim.physical_offset);
    let in_seg = victim.physical_offset % cfg.segment_size;
    overwrite(&seg, in_seg + 150, b"\xFF\x00\xFF");

    let err = Store::open(cfg.clone()).unwrap_err();
    match &err {
        Error::Corrupt { path, offset, position, .. } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, victim.physical_offset);
            assert_eq!(*position, in_seg);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&format!("{}", victim.physical_offset)) && text.contains("commitlog"), "{text}");
    // Nothing was cut: the data after the damage is still on disk.
    assert!(std::fs::metadata(segment_path(&cfg, written[59].physical_offset)).is_ok());
}

#[tokio::test]
async fn damage_behind_the_checkpoint_is_caught_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let store = Store::open(cfg.clone()).unwrap();
    let mut written = Vec::new();
    for seq in 0..30u64 {
        written.push(store.append(message("t", 0, body(8, 0, seq), "T", "k")).await.unwrap());
    }
    store.close().unwrap();
    let victim = written[10];
    overwrite(
        &segment_path(&cfg, victim.physical_offset),
        victim.physical_offset % cfg.segment_size + 120,
        b"\x00\x01\x02",
    );
    // A clean stop needs no scan, so the damage shows up on read.
    let store = Store::open(cfg).unwrap();
    let err = store.read(victim.physical_offset).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset, .. } if offset == victim.physical_offset), "{err}");
    let err = store.read_queue("t", 0, 5, 100).unwrap_err();
    assert!(err.to_string().contains("CRC"), "{err}");
    // Reads that do not touch the damaged record still work.
    let ok = store.read_queue("t", 0, 11, 100).unwrap();
    assert_eq!((ok.status, ok.messages.len()), (ReadStatus::Found, 19));
    store.close().unwrap();
}

#[tokio::test]
async fn queues_rebuilt_from_the_log_when_queue_files_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let written = write_and_crash(&cfg, 120).await;
    std::fs::remove_dir_all(cfg.data_dir.join("consumequeue")).unwrap();
    std::fs::remove_dir_all(cfg.data_dir.join("index")).unwrap();
    std::fs::remove_file(cfg.data_dir.join("checkpoint")).unwrap();
    let store = Store::open(cfg).unwrap();
    assert_eq!(store.state().recovery.records_replayed, 120);
    assert_eq!(store.queue_bounds("t", 0), Some((0, 120)));
    let hits = store.query_by_key("t", "k77", 0, i64::MAX, 10).unwrap();
    assert_eq!(hits[0].physical_offset, written[77].physical_offset);
    store.close().unwrap();
}

#[tokio::test]
async fn packed_records_are_rebuilt_message_by_message_after_a_crash() {
    use rill_common::packed::Packer;
    use rill_store::{MessageToStore, Properties};
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let store = Store::open(cfg.clone()).unwrap();
    let topic = rill_common::TopicName::new("t").unwrap();
    let plain = store.append(message("t", 0, b"alone".to_vec(), "T", "solo")).await.unwrap();
    let mut packer = Packer::default();
    for i in 0..50 {
        let (tag, key, id) = (if i % 5 == 0 { "five" } else { "other" }, format!("k{i}"), format!("id-{i}"));
        packer.push(0, format!("packed {i}").as_bytes(), [("TAGS", tag), ("KEYS", &*key), ("UNIQ_KEY", &*id)]).unwrap();
    }
    let (body, n) = packer.finish();
    let carrier = MessageToStore::new(topic.clone(), 0, body)
        .with_properties(Properties::new().with("INNER_NUM", n.to_string()).with("UNIQ_KEY", "outer"));
    let packed = store.append(carrier).await.unwrap();
    assert_eq!(packed.queue_offset, 1, "the packed record starts after the plain one");
    let after = store.append(message("t", 0, b"after".to_vec(), "T", "late")).await.unwrap();
    assert_eq!(after.queue_offset, 51, "the packed record took fifty offsets");
    store.wait_dispatched(after.end()).await.unwrap();
    drop(store);

    // Lose the queues, index and checkpoint: all of it comes back from the log.
    std::fs::remove_dir_all(cfg.data_dir.join("consumequeue")).unwrap();
    std::fs::remove_dir_all(cfg.data_dir.join("index")).unwrap();
    std::fs::remove_file(cfg.data_dir.join("checkpoint")).unwrap();
    let store = Store::open(cfg).unwrap();
    assert_eq!(store.state().recovery.records_replayed, 3);
    assert_eq!(store.queue_bounds("t", 0), Some((0, 52)));
    let r = store.read_queue("t", 0, 0, 100).unwrap();
    let bodies: Vec<String> = r.messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    let mut want = vec!["alone".to_owned()];
    want.extend((0..50).map(|i| format!("packed {i}")));
    want.push("after".into());
    assert_eq!(bodies, want);
    assert!(r.messages.iter().enumerate().all(|(i, m)| m.queue_offset == i as u64));
    assert_eq!(r.messages[0].physical_offset, plain.physical_offset);

    // Tag hashes are the packed messages' own: a filter on the queue entries sees them.
    let five = rill_store::record::tag_hash(Some("five"));
    let f = store.read_queue_filtered("t", 0, 0, 100, 100, |e| e.tag_hash == five).unwrap();
    let got: Vec<u64> = f.messages.iter().map(|m| m.queue_offset).collect();
    assert_eq!(got, (0..50).step_by(5).map(|i| i + 1).collect::<Vec<_>>());
    // Starting inside the packed record reads from that message on.
    let mid = store.read_queue("t", 0, 30, 2).unwrap();
    assert_eq!(mid.messages.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [&b"packed 29"[..], b"packed 30"]);

    let hit = store.query_by_key("t", "k33", 0, i64::MAX, 10).unwrap();
    assert_eq!(hit.iter().map(|m| (&m.body[..], m.queue_offset)).collect::<Vec<_>>(), [(&b"packed 33"[..], 34)]);
    let by_id = store.message_by_id("id-49").unwrap().unwrap();
    assert_eq!((&by_id.body[..], by_id.queue_offset), (&b"packed 49"[..], 50));
    assert!(store.message_by_id("outer").unwrap().is_none(), "the carrier's own id names no message");
    store.close().unwrap();
}

#[tokio::test]
async fn a_packed_record_whose_count_is_wrong_is_refused_before_writing() {
    use rill_store::{MessageToStore, Properties};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(dir.path())).unwrap();
    let mut packer = rill_common::packed::Packer::default();
    packer.push(0, b"one", []).unwrap();
    let (body, _) = packer.finish();
    let topic = rill_common::TopicName::new("t").unwrap();
    let carrier = MessageToStore::new(topic, 0, body).with_properties(Properties::new().with("INNER_NUM", "2"));
    let err = store.append(carrier).await.unwrap_err();
    assert!(matches!(err, Error::Packed(_)), "{err}");
    assert!(err.to_string().contains("holds 1 messages"), "{err}");
    assert_eq!(store.state().committed, 0, "nothing was written");
    store.close().unwrap();
}
