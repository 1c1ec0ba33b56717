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
