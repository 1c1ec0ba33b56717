//! The storage engine's error type.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong inside the storage engine.
///
/// Variants that concern a file always carry its path, so that an operator
/// reading a log line knows which file to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file or directory failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being attempted ("create", "open", "fallocate", …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A stored record or file failed validation.
    #[error("corrupt data in {} at file position {position} (log offset {offset}): {reason}", path.display())]
    Corrupt {
        /// The segment or queue file holding the bad bytes.
        path: PathBuf,
        /// Global physical offset of the bad record (CommitLog) or entry.
        offset: u64,
        /// Position inside the file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid store configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field, as written in the config file.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The encoded record size.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The encoded properties do not fit in a record (64 KiB − 1 bytes).
    #[error("message properties take {size} bytes; at most {limit} are allowed")]
    PropertiesTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A property key or value holds one of the separator characters.
    #[error("message property {key:?} contains a reserved separator character (U+0001 or U+0002)")]
    BadProperty {
        /// The key concerned.
        key: String,
    },
    /// A topic or group name broke the naming rules.
    #[error(transparent)]
    Name(#[from] rill_common::Error),
    /// A packed batch's body does not match its layout or its count.
    #[error(transparent)]
    Packed(#[from] rill_common::packed::PackError),
    /// A physical offset lies below the oldest retained data.
    #[error("offset {requested} was deleted by retention; the oldest retained offset is {min}")]
    OffsetMoved {
        /// What was asked for.
        requested: u64,
        /// The smallest offset still available.
        min: u64,
    },
    /// A physical offset lies at or past the end of the log.
    #[error("offset {requested} is past the end of the log ({end})")]
    OffsetBeyondEnd {
        /// What was asked for.
        requested: u64,
        /// The current end of the log.
        end: u64,
    },
    /// A previous flush failed; the store refuses writes until reopened.
    #[error("store is read-only after a failed flush of {}: {source}", path.display())]
    Poisoned {
        /// The file whose flush failed.
        path: PathBuf,
        /// The original error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A metadata file could not be parsed.
    #[error("cannot parse metadata file {}: {source}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the operation and path it concerns.
    pub(crate) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io { op, path: path.to_path_buf(), source }
    }
}
