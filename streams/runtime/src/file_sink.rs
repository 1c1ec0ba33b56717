//! A two-phase JSON-lines file sink: exactly-once files in a directory.
//!
//! Rows go to a hidden in-progress file. At a checkpoint barrier it is
//! synced and renamed `.pending-<id>.jsonl`; when the checkpoint is stored,
//! pending files up to it become `part-<id>.jsonl`. On restart from
//! checkpoint `n`, pending files up to `n` are committed (the crash came
//! between storing the checkpoint and committing) and everything newer is
//! deleted (its rows will be produced again). Readers see only `part-*`
//! files, each complete, and no row twice.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::LineDelimitedWriter;

use crate::sink::Sink;
use crate::{Error, Result};

const IN_PROGRESS: &str = ".inprogress.jsonl";

/// The sink (see the module docs).
pub struct JsonFileSink {
    dir: PathBuf,
    writer: Option<LineDelimitedWriter<File>>,
}

impl std::fmt::Debug for JsonFileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonFileSink").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Sink(format!("{}: {e}", path.display()))
}

fn pending_name(id: u64) -> String {
    format!(".pending-{id:020}.jsonl")
}

impl JsonFileSink {
    /// Writes into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Self { dir, writer: None })
    }

    /// Committed files, in checkpoint order.
    pub fn committed(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")))
            .collect();
        files.sort();
        Ok(files)
    }

    fn pending(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix(".pending-").and_then(|r| r.strip_suffix(".jsonl"))
                && let Ok(id) = id.parse::<u64>()
            {
                found.push((id, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(&self.dir, e))
    }
}

impl Sink for JsonFileSink {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            let path = self.dir.join(IN_PROGRESS);
            let file = File::create(&path).map_err(|e| io(&path, e))?;
            self.writer = Some(LineDelimitedWriter::new(file));
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(&batch)?;
        }
        Ok(())
    }

    fn prepare(&mut self, id: u64) -> Result<()> {
        let Some(mut writer) = self.writer.take() else { return Ok(()) };
        writer.finish()?;
        let file = writer.into_inner();
        let from = self.dir.join(IN_PROGRESS);
        file.sync_all().map_err(|e| io(&from, e))?;
        let to = self.dir.join(pending_name(id));
        fs::rename(&from, &to).map_err(|e| io(&to, e))?;
        self.sync_dir()
    }

    fn commit(&mut self, id: u64) -> Result<()> {
        for (pending, path) in self.pending()? {
            if pending <= id {
                let to = self.dir.join(format!("part-{pending:020}.jsonl"));
                fs::rename(&path, &to).map_err(|e| io(&to, e))?;
            }
        }
        self.sync_dir()
    }

    fn recover(&mut self, last: Option<u64>) -> Result<()> {
        self.writer = None;
        let stale = self.dir.join(IN_PROGRESS);
        if stale.exists() {
            fs::remove_file(&stale).map_err(|e| io(&stale, e))?;
        }
        for (pending, path) in self.pending()? {
            if last.is_none_or(|l| pending > l) {
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        if let Some(l) = last {
            self.commit(l)?;
        }
        self.sync_dir()
    }
}
