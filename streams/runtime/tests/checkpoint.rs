//! Checkpoint files: the latest complete one is what a restart sees,
//! whatever a crash left behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use rill_streams::{CheckpointStore, Snapshot};

fn snapshot(mark: i64) -> Snapshot {
    Snapshot { nodes: vec!["in".into(), "sink".into()], watermarks: vec![mark, mark], states: Vec::new() }
}

#[test]
fn the_latest_complete_checkpoint_survives_what_a_crash_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    assert!(store.latest().unwrap().is_none());
    let positions: BTreeMap<String, u64> = [("in@t/b/0".to_owned(), 42)].into();
    store.save(1, &snapshot(10), &positions).unwrap();
    store.save(2, &snapshot(20), &positions).unwrap();
    // A crash after renaming checkpoint 3 into place but before LATEST named
    // it, a half-written temporary one, and a stray file.
    std::fs::create_dir_all(dir.path().join(format!("chk-{:020}", 3))).unwrap();
    std::fs::write(dir.path().join(format!("chk-{:020}", 3)).join("meta.json"), b"{").unwrap();
    std::fs::create_dir_all(dir.path().join(format!("chk-{:020}.tmp", 4))).unwrap();
    std::fs::write(dir.path().join("chk-notes"), b"x").unwrap();
    let latest = store.latest().unwrap().unwrap();
    assert_eq!((latest.id, latest.snapshot.watermarks[0], latest.positions["in@t/b/0"]), (2, 20, 42));
    // The restarted job reuses id 3.
    store.save(3, &snapshot(30), &positions).unwrap();
    assert_eq!(store.latest().unwrap().unwrap().snapshot.watermarks[0], 30);
    assert!(!dir.path().join(format!("chk-{:020}", 1)).exists(), "only the two newest are kept");
}

#[test]
fn a_damaged_latest_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    std::fs::write(dir.path().join("LATEST"), b"soon\n").unwrap();
    let err = store.latest().unwrap_err().to_string();
    assert!(err.contains("LATEST") && err.contains("'soon'"), "{err}");
}
