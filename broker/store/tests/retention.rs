//! Retention by age at the delete hour and by disk pressure, with an
//! injected clock and disk probe; readers of deleted data get "offset moved".
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{body, message, small_config};
use rill_common::ManualClock;
use rill_store::{DeleteReason, DiskUsage, Error, ReadStatus, Store};

const HOUR: i64 = 3_600_000;
/// Day 20000 after the epoch, 01:00 UTC.
const T0: i64 = 20_000 * 24 * HOUR + HOUR;

/// Replays a scripted sequence of disk-usage readings, then repeats the last.
#[derive(Debug)]
struct ScriptedDisk(Mutex<Vec<f64>>);

impl DiskUsage for ScriptedDisk {
    fn used_ratio(&self, _: &Path) -> std::io::Result<f64> {
        let mut s = self.0.lock().unwrap();
        Ok(if s.len() > 1 { s.remove(0) } else { s[0] })
    }
}

#[tokio::test]
async fn expired_segments_go_at_the_delete_hour_and_readers_are_told_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cfg = small_config(dir.path());
    // A disk with room to spare: only age decides here (the machine's own disk may be fuller than the pressure ratio).
    let roomy = Arc::new(ScriptedDisk(Mutex::new(vec![0.10])));
    let store = Store::open_with(cfg.clone(), Arc::new(clock.clone()), roomy).unwrap();
    let mut last = 0;
    // Old data at T0, newer data ten hours later.
    for seq in 0..150u64 {
        last = store
            .append(message("t", (seq % 2) as u32, body(5, 0, seq), "T", &format!("old{seq}")))
            .await
            .unwrap()
            .end();
    }
    let boundary = store.state().committed;
    clock.set(T0 + 10 * HOUR);
    for seq in 150..200u64 {
        last = store
            .append(message("t", (seq % 2) as u32, body(5, 0, seq), "T", &format!("new{seq}")))
            .await
            .unwrap()
            .end();
    }
    store.wait_dispatched(last).await.unwrap();
    let before = store.state();
    assert!(before.segments >= 5, "{} segments", before.segments);

    // Old enough, but 05:00 is not the delete hour.
    clock.set(T0 + 76 * HOUR);
    assert!(store.run_retention().unwrap().deleted.is_empty());
    // 04:00, 75 hours after T0: the segments holding only old data expire.
    clock.set(T0 + 75 * HOUR);
    let report = store.run_retention().unwrap();
    assert!(!report.deleted.is_empty());
    assert!(report.deleted.iter().all(|(_, why)| *why == DeleteReason::Expired));
    let min = report.min_offset;
    assert!(min > 0 && min <= boundary, "min {min}, boundary {boundary}");
    assert_eq!(store.state().segments, before.segments - report.deleted.len());
    let files = std::fs::read_dir(dir.path().join("commitlog")).unwrap().count();
    assert_eq!(files, store.state().segments);

    // A physical read below the new minimum says so.
    match store.read(0) {
        Err(Error::OffsetMoved { requested: 0, min: m }) => assert_eq!(m, min),
        other => panic!("expected OffsetMoved, got {other:?}"),
    }
    for q in 0..2u32 {
        let r = store.read_queue("t", q, 0, 10).unwrap();
        assert_eq!(r.status, ReadStatus::OffsetMoved);
        assert!(r.messages.is_empty());
        assert!(r.next_offset > 0);
        // Resuming where it says works, and points into retained data.
        let resumed = store.read_queue("t", q, r.next_offset, 1000).unwrap();
        assert_eq!(resumed.status, ReadStatus::Found);
        assert!(resumed.messages.iter().all(|m| m.physical_offset >= min));
        assert_eq!(resumed.messages.len() as u64, resumed.max_offset - r.next_offset);
    }
    // Keys of deleted messages are gone; newer ones remain.
    assert!(store.query_by_key("t", "old3", 0, i64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.query_by_key("t", "new160", 0, i64::MAX, 10).unwrap().len(), 1);
    // The newer segments are not expired yet at this time.
    assert!(store.run_retention().unwrap().deleted.is_empty());
    store.close().unwrap();

    // The moved minimums survive a restart.
    let store = Store::open_with(cfg, Arc::new(clock.clone()), Arc::new(ScriptedDisk(Mutex::new(vec![0.10])))).unwrap();
    assert_eq!(store.state().min_offset, min);
    assert_eq!(store.read_queue("t", 0, 0, 1).unwrap().status, ReadStatus::OffsetMoved);
    store.close().unwrap();
}

#[tokio::test]
async fn disk_pressure_deletes_oldest_segments_until_below_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Readings: over, over, under → exactly two segments go, whatever the hour.
    let disk = Arc::new(ScriptedDisk(Mutex::new(vec![0.95, 0.90, 0.50])));
    let store = Store::open_with(small_config(dir.path()), Arc::new(clock), disk).unwrap();
    let mut last = 0;
    for seq in 0..200u64 {
        last = store.append(message("t", 0, body(6, 0, seq), "T", "k")).await.unwrap().end();
    }
    store.wait_dispatched(last).await.unwrap();
    let segments = store.state().segments;
    let report = store.run_retention().unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert!(report.deleted.iter().all(|(_, why)| *why == DeleteReason::DiskPressure));
    assert_eq!(report.min_offset, 2 * store.config().segment_size);
    assert_eq!(store.state().segments, segments - 2);
    store.close().unwrap();
}

#[tokio::test]
async fn the_active_segment_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let disk = Arc::new(ScriptedDisk(Mutex::new(vec![0.99])));
    let store = Store::open_with(small_config(dir.path()), Arc::new(clock.clone()), disk).unwrap();
    let mut last = 0;
    for seq in 0..100u64 {
        last = store.append(message("t", 0, body(7, 0, seq), "T", "k")).await.unwrap().end();
    }
    store.wait_dispatched(last).await.unwrap();
    clock.set(T0 + 1000 * 24 * HOUR + 3 * HOUR);
    store.run_retention().unwrap();
    let state = store.state();
    assert_eq!(state.segments, 1);
    let (min, max) = store.queue_bounds("t", 0).unwrap();
    let r = store.read_queue("t", 0, min, 1000).unwrap();
    assert_eq!(r.messages.len() as u64, max - min);
    // Writing goes on after everything old was deleted.
    let a = store.append(message("t", 0, b"still here".to_vec(), "T", "k")).await.unwrap();
    assert_eq!(a.queue_offset, 100);
    store.close().unwrap();
}
