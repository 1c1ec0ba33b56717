//! Rows buffered per window (any ordered key) until it fires, within a
//! memory budget: past it, the buffers of the windows that fire last move
//! to Arrow IPC files in a scratch directory of their own, and come back
//! when their window is taken. Used by the operators that hold whole rows
//! until a window closes (top-N, window joins).
//!
//! It owns the buffers, their accounting and the files; what the rows mean
//! and when a window fires are the operator's.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use rill_state::StateConfig;

use crate::Result;

/// Buffered rows per key, some of them on disk.
pub(crate) struct RowBuffers<K> {
    memory: BTreeMap<K, Vec<RecordBatch>>,
    /// Files of rows per key, with their row counts.
    disk: BTreeMap<K, Vec<(PathBuf, usize)>>,
    bytes: usize,
    config: StateConfig,
    /// Removed with the buffers (and with it the files).
    dir: Option<tempfile::TempDir>,
    files: u64,
}

fn io(path: &std::path::Path, source: std::io::Error) -> crate::Error {
    crate::Error::State(rill_state::Error::SpillDir { dir: path.to_path_buf(), source })
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn size(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

impl<K: Ord + Copy> RowBuffers<K> {
    /// Empty buffers within `config`'s budget.
    pub(crate) fn new(config: StateConfig) -> Self {
        Self { memory: BTreeMap::new(), disk: BTreeMap::new(), bytes: 0, config, dir: None, files: 0 }
    }

    /// Adds rows to `key`'s buffer, moving buffers to disk past the budget.
    pub(crate) fn push(&mut self, key: K, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.bytes += batch.get_array_memory_size();
        self.memory.entry(key).or_default().push(batch);
        self.make_room()
    }

    /// Rows of `key` in memory.
    pub(crate) fn memory_rows(&self, key: K) -> usize {
        self.memory.get(&key).map_or(0, |b| rows(b))
    }

    /// Takes out the batches of `key` in memory (to prune them and push back).
    pub(crate) fn take_memory(&mut self, key: K) -> Vec<RecordBatch> {
        let batches = self.memory.remove(&key).unwrap_or_default();
        self.bytes -= size(&batches);
        batches
    }

    /// Takes out all rows of `key`, from memory and disk.
    pub(crate) fn take(&mut self, key: K) -> Result<Vec<RecordBatch>> {
        let mut batches = self.read(self.disk.get(&key).map_or(&[][..], Vec::as_slice))?;
        for (path, _) in self.disk.remove(&key).unwrap_or_default() {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
        batches.extend(self.take_memory(key));
        Ok(batches)
    }

    /// The smallest key with rows, in memory or on disk.
    pub(crate) fn first_key(&self) -> Option<K> {
        match (self.memory.keys().next(), self.disk.keys().next()) {
            (Some(m), Some(d)) => Some(*m.min(d)),
            (m, d) => m.or(d).copied(),
        }
    }

    /// Rows held, in memory and on disk.
    pub(crate) fn rows(&self) -> usize {
        self.memory.values().map(|b| rows(b)).sum::<usize>() + self.rows_on_disk()
    }

    /// Rows on disk.
    pub(crate) fn rows_on_disk(&self) -> usize {
        self.disk.values().flatten().map(|(_, n)| n).sum()
    }

    /// Every buffered batch with its key, those on disk read back (for checkpoints).
    pub(crate) fn all(&self) -> Result<Vec<(K, RecordBatch)>> {
        let mut out = Vec::new();
        for (key, files) in &self.disk {
            out.extend(self.read(files)?.into_iter().map(|b| (*key, b)));
        }
        for (key, batches) in &self.memory {
            out.extend(batches.iter().map(|b| (*key, b.clone())));
        }
        Ok(out)
    }

    fn read(&self, files: &[(PathBuf, usize)]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (path, _) in files {
            let file = File::open(path).map_err(|e| io(path, e))?;
            for batch in StreamReader::try_new(std::io::BufReader::new(file), None)? {
                out.push(batch?);
            }
        }
        Ok(out)
    }

    /// Moves the buffers of the windows that fire last to disk until
    /// memory is down to half the budget.
    fn make_room(&mut self) -> Result<()> {
        let budget = self.config.entry_budget();
        if self.bytes <= budget {
            return Ok(());
        }
        while self.bytes > budget / 2 {
            let Some(key) = self.memory.keys().next_back().copied() else { break };
            let batches = self.memory.remove(&key).unwrap_or_default();
            if batches.is_empty() {
                continue;
            }
            match self.write(&batches) {
                Ok(path) => {
                    self.bytes -= size(&batches);
                    self.disk.entry(key).or_default().push((path, rows(&batches)));
                }
                Err(e) => {
                    // Nothing is lost: the rows stay in memory, over the budget.
                    self.memory.insert(key, batches);
                    return Err(e);
                }
            }
        }
        tracing::debug!(in_memory = self.bytes, on_disk = self.rows_on_disk(), "buffered rows spilled to disk");
        Ok(())
    }

    fn write(&mut self, batches: &[RecordBatch]) -> Result<PathBuf> {
        if self.dir.is_none() {
            let base = &self.config.spill_dir;
            std::fs::create_dir_all(base).map_err(|e| io(base, e))?;
            let dir = tempfile::Builder::new().prefix("rill-rows-").tempdir_in(base).map_err(|e| io(base, e))?;
            self.dir = Some(dir);
        }
        let dir = self.dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default();
        self.files += 1;
        let path = dir.join(format!("{:08}.arrow", self.files));
        let Some(first) = batches.first() else { return Ok(path) };
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let mut writer = StreamWriter::try_new(std::io::BufWriter::new(file), &first.schema())?;
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
        std::io::Write::flush(writer.get_mut()).map_err(|e| io(&path, e))?;
        Ok(path)
    }
}
