//! The checkpoint file and the clean-shutdown marker.
//!
//! The checkpoint records how far the CommitLog is known to be flushed and
//! up to which CommitLog offset every ConsumeQueue and index entry is on
//! disk. Recovery replays the CommitLog from the latter. The file is small
//! and replaced atomically (write temp, fsync, rename, fsync directory), so
//! it is always either the old or the new version, whatever happens.
//!
//! The `abort` marker exists while a store is open and is removed by a clean
//! close; finding it on open means the last run did not stop cleanly.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mapped;

const MAGIC: u32 = 0x5243_4B31;
const LEN: usize = 32;

/// Progress recorded in the checkpoint file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// CommitLog bytes below this offset were flushed.
    pub log_flushed: u64,
    /// Queue and index entries of records below this offset were flushed.
    pub dispatched: u64,
    /// When the checkpoint was written (ms since the epoch).
    pub written_at: i64,
}

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..12].copy_from_slice(&self.log_flushed.to_be_bytes());
        b[12..20].copy_from_slice(&self.dispatched.to_be_bytes());
        b[20..28].copy_from_slice(&self.written_at.to_be_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LEN || b[0..4] != MAGIC.to_be_bytes() {
            return None;
        }
        if crc32fast::hash(&b[..28]).to_be_bytes() != b[28..32] {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[r]);
            u64::from_be_bytes(x)
        };
        Some(Self { log_flushed: u(4..12), dispatched: u(12..20), written_at: u(20..28) as i64 })
    }
}

/// The checkpoint file and abort marker of one store directory.
#[derive(Debug)]
pub(crate) struct CheckpointFile {
    dir: PathBuf,
}

impl CheckpointFile {
    /// For the store rooted at `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }

    fn abort_path(&self) -> PathBuf {
        self.dir.join("abort")
    }

    /// Reads the checkpoint; a missing or damaged file means "from the start".
    pub fn load(&self) -> Result<Checkpoint> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Checkpoint::decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "checkpoint is damaged; replaying the whole CommitLog");
                Checkpoint::default()
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint::default()),
            Err(e) => Err(Error::Io { op: "read", path, source: e }),
        }
    }

    /// Replaces the checkpoint atomically.
    pub fn store(&self, cp: &Checkpoint) -> Result<()> {
        write_atomically(&self.path(), &cp.encode())
    }

    /// Whether the previous run left its abort marker behind.
    pub fn was_unclean(&self) -> bool {
        self.abort_path().exists()
    }

    /// Creates the abort marker (the store is now open).
    pub fn mark_open(&self) -> Result<()> {
        let path = self.abort_path();
        File::create(&path).map_err(Error::io("create", &path))?;
        mapped::sync_dir(&self.dir)
    }

    /// Removes the abort marker (clean close).
    pub fn mark_clean(&self) -> Result<()> {
        let path = self.abort_path();
        std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        mapped::sync_dir(&self.dir)
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content,
/// never a mix, even across a crash.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
    mapped::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_fall_back_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let f = CheckpointFile::new(dir.path());
        assert_eq!(f.load().unwrap(), Checkpoint::default());
        let cp = Checkpoint { log_flushed: 10, dispatched: 7, written_at: 99 };
        f.store(&cp).unwrap();
        assert_eq!(f.load().unwrap(), cp);
        let mut raw = std::fs::read(dir.path().join("checkpoint")).unwrap();
        raw[5] ^= 0xff;
        std::fs::write(dir.path().join("checkpoint"), raw).unwrap();
        assert_eq!(f.load().unwrap(), Checkpoint::default());
        assert!(!f.was_unclean());
        f.mark_open().unwrap();
        assert!(f.was_unclean());
        f.mark_clean().unwrap();
        assert!(!f.was_unclean());
    }
}
