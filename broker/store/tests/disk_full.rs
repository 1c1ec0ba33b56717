//! A full disk: appends fail with an error naming the file, reads go on.
//!
//! Runs on a small tmpfs mounted for the test (needs root, as in CI). Where
//! mounting is not allowed the test is skipped with a loud message, except
//! under `CI=true`, where it must run.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{body, message, small_config};
use rill_store::{Error, ReadStatus, Store};

struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but a tmpfs cannot be mounted for the disk-full test: {why}");
                }
                eprintln!(
                    "\n*** SKIPPED disk_full: cannot mount a tmpfs ({why}); run as root to test disk-full handling ***\n"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn appends_fail_with_the_path_when_the_disk_is_full_and_reads_continue() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    let data: PathBuf = fs.path().join("data");
    let mut cfg = small_config(&data);
    cfg.segment_size = 1 << 20;
    let store = Store::open(cfg.clone()).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        let seq = acked.len() as u64;
        match store.append(message("t", 0, body(11, 0, seq), "T", "k")).await {
            Ok(a) => acked.push(a),
            Err(e) => break e,
        }
        assert!(seq < 10_000, "a 3 MiB disk never filled up");
    };
    match &err {
        Error::Io { path, source, .. } => {
            assert!(path.starts_with(data.join("commitlog")), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(libc_enospc()), "{source}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("commitlog/000000000"), "{text}");
    // Nothing half-made was left behind.
    let segments = std::fs::read_dir(data.join("commitlog")).unwrap().count();
    assert_eq!(segments, store.state().segments);
    // Every acknowledged message can still be read.
    store.wait_dispatched(acked.last().unwrap().end()).await.unwrap();
    let r = store.read_queue("t", 0, 0, 100_000).unwrap();
    assert_eq!(r.status, ReadStatus::Found);
    assert_eq!(r.messages.len(), acked.len());
    assert_eq!(&r.messages[3].body[..], &body(11, 0, 3)[..]);
    // A message that needs a new segment keeps failing cleanly, and the
    // failed attempts left the log readable.
    assert!(matches!(store.append(message("t", 0, vec![7; 15_000], "T", "k")).await, Err(Error::Io { .. })));
    assert_eq!(store.read_queue("t", 0, 0, 100_000).unwrap().messages.len(), acked.len());
    drop(store);
    assert!(acked.len() > 100);
}

fn libc_enospc() -> i32 {
    28
}
