//! The Parquet lake sink: rows into Parquet files (zstd by default) under
//! a directory, spread over Hive-style partitions (`region=eu/`, or
//! `dt=2026-11-25/hr=13/` from a time column, see [`Partitioning`]).
//!
//! Each partition has one file open at a time; a file is closed when it
//! reaches its size limit and at every checkpoint. Closed files wait under
//! hidden names until the checkpoint that covers them is stored, then are
//! renamed `part-<checkpoint>-<sink>-<n>.parquet` and their directory gets
//! a `_SUCCESS` marker; a job restarting from checkpoint `n` commits what
//! `n` covered and deletes everything later (its rows are written again).
//! So readers never see a partial file, and no row lands twice: the
//! two-phase commit of Flink's file sink, on renames.
//!
//! Files are written by a thread of the sink's own ([`worker`]), so a
//! job's next batches decode while the last ones are encoded.
//!
//! Appends only: a changelog with updates or deletes has no place in a
//! lake of immutable files, and is refused with a clear error. In SQL:
//!
//! ```sql
//! CREATE TABLE lake (region STRING, page STRING, views BIGINT, ts TIMESTAMP(3))
//! WITH ('connector' = 'parquet', 'path' = '/data/lake/views',
//!       'partition.fields' = 'region', 'partition.time-column' = 'ts');
//! ```

mod files;
mod partition;
mod sql;
mod worker;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use rill_streams::{OP_COLUMN, Sink};

pub use files::{SUCCESS, committed};
pub use partition::{Partitioning, escape};
pub use sql::{FilesystemConnector, register};

/// Errors of the Parquet sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options are wrong.
    #[error("{0}")]
    Config(String),
    /// A file could not be written, renamed or synced.
    #[error("{0}")]
    Io(String),
    /// Rows could not be encoded.
    #[error("parquet: {0}")]
    Write(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how the sink writes.
#[derive(Debug, Clone)]
pub struct ParquetConfig {
    /// The lake's root directory.
    pub dir: PathBuf,
    /// How rows are spread over directories.
    pub partitioning: Partitioning,
    /// Column compression.
    pub compression: Compression,
    /// A file is closed once it holds about this many bytes.
    pub max_file_bytes: u64,
    /// Rows per row group at most.
    pub row_group_rows: usize,
    /// Write a `_SUCCESS` marker into each directory a commit adds files to.
    pub success_file: bool,
}

impl ParquetConfig {
    /// Files under `dir`, unpartitioned, zstd (level 3), 128 MiB at most, `_SUCCESS` markers.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            partitioning: Partitioning::default(),
            compression: Compression::ZSTD(ZstdLevel::default()),
            max_file_bytes: 128 << 20,
            row_group_rows: 1 << 20,
            success_file: true,
        }
    }
}

/// A file being written.
struct Open {
    writer: ArrowWriter<File>,
    path: PathBuf,
}

/// The files a sink writes: what its writer thread keeps.
struct Files {
    config: ParquetConfig,
    /// Open files by partition directory.
    open: BTreeMap<String, Open>,
    /// Files closed since the last checkpoint (still under in-progress names).
    closed: Vec<PathBuf>,
    /// Names this sink's files carry, apart from other writers' into the same lake.
    instance: String,
    next_file: u64,
}

/// The sink (see the crate docs).
pub struct ParquetSink {
    dir: PathBuf,
    worker: worker::Worker,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl ParquetSink {
    /// A sink writing into `config.dir` (created if missing).
    pub fn new(config: ParquetConfig) -> Result<Self> {
        let dir = config.dir.clone();
        Ok(Self { dir, worker: worker::Worker::start(Files::new(config)?)? })
    }

    /// The batch without its change kinds (all must be inserts).
    fn appends(batch: RecordBatch) -> Result<RecordBatch> {
        let Ok(op) = batch.schema().index_of(OP_COLUMN) else { return Ok(batch) };
        let kinds = batch.column(op).as_string::<i32>();
        if let Some(kind) = kinds.iter().flatten().find(|k| *k != rill_streams::changelog::INSERT) {
            return Err(Error::Config(format!(
                "the parquet sink takes appends only, and a '{kind}' change came: files in a lake are not \
                 updated (write the changelog to a keyed sink such as mysql, or aggregate over windows)"
            )));
        }
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != op).collect();
        batch.project(&keep).map_err(|e| Error::Write(e.to_string()))
    }
}

impl Files {
    fn new(config: ParquetConfig) -> Result<Self> {
        fs::create_dir_all(&config.dir).map_err(|e| files::io(&config.dir, e))?;
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let instance = format!("{:x}{:x}", std::process::id(), started & 0xffff_ffff);
        Ok(Self { config, open: BTreeMap::new(), closed: Vec::new(), instance, next_file: 0 })
    }

    fn properties(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.config.compression)
            .set_max_row_group_row_count(Some(self.config.row_group_rows))
            .build()
    }

    /// Writes `batch` (appends only) into its partitions' files.
    fn take(&mut self, batch: RecordBatch) -> Result<()> {
        for (partition, rows) in self.config.partitioning.split(&batch)? {
            if !self.open.contains_key(&partition) {
                let dir = self.config.dir.join(&partition);
                fs::create_dir_all(&dir).map_err(|e| files::io(&dir, e))?;
                let path = files::in_progress(&dir, &self.instance, self.next_file);
                self.next_file += 1;
                let file = File::create(&path).map_err(|e| files::io(&path, e))?;
                let writer = ArrowWriter::try_new(file, rows.schema(), Some(self.properties()))
                    .map_err(|e| Error::Write(format!("{}: {e}", path.display())))?;
                self.open.insert(partition.clone(), Open { writer, path });
            }
            let Some(open) = self.open.get_mut(&partition) else { continue };
            open.writer.write(&rows).map_err(|e| Error::Write(format!("{}: {e}", open.path.display())))?;
            let size = open.writer.bytes_written() + open.writer.in_progress_size();
            if size as u64 >= self.config.max_file_bytes
                && let Some(full) = self.open.remove(&partition)
            {
                self.closed.push(close(full)?);
            }
        }
        Ok(())
    }
}

/// Finishes a file (footer written, data on disk); returns its path.
fn close(open: Open) -> Result<PathBuf> {
    let file = open.writer.into_inner().map_err(|e| Error::Write(format!("{}: {e}", open.path.display())))?;
    file.sync_all().map_err(|e| files::io(&open.path, e))?;
    Ok(open.path)
}

fn sink_error(e: Error) -> rill_streams::Error {
    rill_streams::Error::Sink(e.to_string())
}

impl Files {
    /// Closes every file and marks what was written since the last checkpoint pending for checkpoint `id`.
    fn prepare(&mut self, id: u64) -> Result<()> {
        let open = std::mem::take(&mut self.open);
        for o in open.into_values() {
            self.closed.push(close(o)?);
        }
        let mut dirs = std::collections::BTreeSet::new();
        for path in std::mem::take(&mut self.closed) {
            files::make_pending(&path, id)?;
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            files::sync_dir(&d)?;
        }
        Ok(())
    }

    /// Publishes the files of checkpoint `id`.
    fn commit(&mut self, id: u64) -> Result<()> {
        files::commit(&self.config.dir, id, self.config.success_file)
    }

    /// Back to checkpoint `last`: its files published, later ones deleted.
    fn recover(&mut self, last: Option<u64>) -> Result<()> {
        self.open.clear();
        self.closed.clear();
        files::recover(&self.config.dir, last, self.config.success_file)
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: RecordBatch) -> rill_streams::Result<()> {
        let batch = Self::appends(batch).map_err(sink_error)?;
        self.worker.write(batch).map_err(sink_error)
    }

    fn prepare(&mut self, id: u64) -> rill_streams::Result<()> {
        self.worker.prepare(id).map_err(sink_error)
    }

    fn commit(&mut self, id: u64) -> rill_streams::Result<()> {
        self.worker.commit(id).map_err(sink_error)
    }

    fn recover(&mut self, last: Option<u64>) -> rill_streams::Result<()> {
        self.worker.recover(last).map_err(sink_error)
    }
}
