//! The lake's file names and their life: a file is written under a hidden
//! in-progress name, renamed to a hidden pending name carrying its
//! checkpoint when that checkpoint is taken, and to its final `part-…`
//! name (with a `_SUCCESS` marker in its directory) when the checkpoint is
//! stored. Hidden names do not end in `.parquet`, so readers listing
//! `*.parquet` see only committed, complete files. It owns names, renames
//! and directory syncs; what goes into a file is the sink's.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const IN_PROGRESS: &str = ".inprogress-";
const PENDING: &str = ".pending-";
const HIDDEN_SUFFIX: &str = ".parquet.tmp";

/// The marker a committed directory gets.
pub const SUCCESS: &str = "_SUCCESS";

pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// The in-progress name of file `n` of sink `instance` in `dir`.
pub(crate) fn in_progress(dir: &Path, instance: &str, n: u64) -> PathBuf {
    dir.join(format!("{IN_PROGRESS}{instance}-{n}{HIDDEN_SUFFIX}"))
}

/// `file` (an in-progress one) renamed pending for checkpoint `id`.
pub(crate) fn make_pending(file: &Path, id: u64) -> Result<()> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rest = name.strip_prefix(IN_PROGRESS).unwrap_or(&name);
    let to = file.with_file_name(format!("{PENDING}{id:020}-{rest}"));
    fs::rename(file, &to).map_err(|e| io(&to, e))
}

/// Flushes a directory's entries (renames) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))
}

/// Every file under `root` (recursively) whose name starts with `prefix`.
fn find(root: &Path, prefix: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(root, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
            find(&path, prefix, out)?;
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path);
        }
    }
    Ok(())
}

/// Pending files under `root` with their checkpoint.
fn pending(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    find(root, PENDING, &mut files)?;
    Ok(files
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let id = name.strip_prefix(PENDING)?.get(..20)?.parse::<u64>().ok()?;
            Some((id, p))
        })
        .collect())
}

/// Commits every pending file of checkpoint `id` or earlier under `root`:
/// final names, a `_SUCCESS` marker per directory when `marker`.
pub(crate) fn commit(root: &Path, id: u64, marker: bool) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for (pending_id, path) in pending(root)? {
        if pending_id > id {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rest = name.strip_prefix(PENDING).unwrap_or(&name);
        let base = rest.strip_suffix(HIDDEN_SUFFIX).unwrap_or(rest);
        let to = path.with_file_name(format!("part-{base}.parquet"));
        fs::rename(&path, &to).map_err(|e| io(&to, e))?;
        if let Some(dir) = path.parent() {
            dirs.insert(dir.to_path_buf());
        }
    }
    for dir in dirs {
        if marker {
            let success = dir.join(SUCCESS);
            File::create(&success).and_then(|f| f.sync_all()).map_err(|e| io(&success, e))?;
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

/// Puts `root` back as checkpoint `last` left it: files in progress and
/// pending files of later checkpoints deleted (their rows come again),
/// pending files up to `last` committed.
pub(crate) fn recover(root: &Path, last: Option<u64>, marker: bool) -> Result<()> {
    let mut stale = Vec::new();
    find(root, IN_PROGRESS, &mut stale)?;
    stale.extend(pending(root)?.into_iter().filter(|(id, _)| last.is_none_or(|l| *id > l)).map(|(_, p)| p));
    for path in stale {
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
    }
    match last {
        Some(l) => commit(root, l, marker),
        None => Ok(()),
    }
}

/// Committed files under `root` (recursively), in name order.
pub fn committed(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    find(root, "part-", &mut files)?;
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_move_from_in_progress_to_pending_to_committed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dt=2026-12-02");
        fs::create_dir_all(&dir).unwrap();
        for (n, id) in [(0, 1), (1, 2), (2, 3)] {
            let f = in_progress(&dir, "a1", n);
            fs::write(&f, b"x").unwrap();
            make_pending(&f, id).unwrap();
        }
        fs::write(in_progress(&dir, "a1", 3), b"x").unwrap();
        commit(root.path(), 1, true).unwrap();
        assert_eq!(committed(root.path()).unwrap(), [dir.join("part-00000000000000000001-a1-0.parquet")]);
        assert!(dir.join(SUCCESS).exists());
        // A restart from checkpoint 2: 2 is committed, 3 and the file in progress go.
        recover(root.path(), Some(2), true).unwrap();
        let mut left: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            ["_SUCCESS", "part-00000000000000000001-a1-0.parquet", "part-00000000000000000002-a1-1.parquet"]
        );
    }
}
