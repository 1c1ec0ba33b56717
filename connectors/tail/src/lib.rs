//! Rill's `file-tail` source, in the manner of Flume's taildir: the files
//! of a group (a glob such as `/var/log/app/*.log`) followed as they grow,
//! one event per line (or per multi-line event such as a stack trace),
//! optionally parsed into fields, with a position that survives rotation
//! by rename and by copy-truncate, deleted files and restarts.
//!
//! - [`Tailer`]: the files of a group and their position ([`tailer`]).
//! - [`lines`]: bytes → lines → multi-line events.
//! - [`Parse`]: the optional parsing into a JSON object ([`parse`]).
//!
//! The connect runtime sends the events to the broker and stores the
//! position only after the broker acknowledged them; this crate knows
//! nothing of the broker.
//!
//! ```no_run
//! # fn main() -> Result<(), rill_tail::Error> {
//! let config = rill_tail::TailConfig::new("/var/log/app/*.log");
//! let mut tailer = rill_tail::Tailer::open(config, None)?;
//! for event in tailer.poll(4 << 20)? {
//!     println!("{}@{}: {}", event.path.display(), event.offset, String::from_utf8_lossy(&event.body));
//! }
//! let resume_from = tailer.position();
//! # let _ = resume_from; Ok(()) }
//! ```

pub mod lines;
pub mod parse;
pub mod tailer;

use std::time::Duration;

use rill_sql::{OptionSpec, Options, opt};

pub use lines::Multiline;
pub use parse::Parse;
pub use tailer::{Event, Tailer};

/// Errors of the file-tail source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is wrong.
    #[error("{0}")]
    Config(String),
    /// A stored position cannot be read.
    #[error("stored file-tail position is damaged: {0}")]
    Position(String),
    /// A file could not be read.
    #[error("{0}")]
    Io(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One file group and how its files become events.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// The glob naming the group's files (`/var/log/app/*.log`).
    pub path: String,
    /// The messages' tag (the group's name).
    pub tag: Option<String>,
    /// Lines and multi-line events.
    pub(crate) rules: lines::Rules,
    /// How an event's text becomes the body.
    pub parse: Parse,
    /// Files present at the first start (no stored position) are read from their end.
    pub start_at_end: bool,
    /// A file renamed away or deleted is let go after being idle at its end this long.
    pub close_idle: Duration,
    /// The host name put on every event.
    pub host: String,
}

impl TailConfig {
    /// Lines of the files under `path`, raw, read from their start.
    pub fn new(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            tag: None,
            rules: lines::Rules { multiline: None, max_line_bytes: 1 << 20 },
            parse: Parse::Raw,
            start_at_end: false,
            close_idle: Duration::from_secs(5),
            host: host_name(),
        }
    }

    /// Joins lines into events that start with a line matching `multiline.start`.
    pub fn with_multiline(mut self, multiline: Multiline) -> Self {
        self.rules.multiline = Some(multiline);
        self
    }

    /// Cuts lines (and multi-line events) longer than `bytes`.
    pub fn with_max_line_bytes(mut self, bytes: usize) -> Self {
        self.rules.max_line_bytes = bytes.max(1);
        self
    }

    /// The config the checked `file-tail` options describe.
    pub fn from_options(options: &Options) -> Result<Self> {
        let get = |k: &str| options.get(k);
        let path = get("path").ok_or_else(|| Error::Config("option 'path' is required".into()))?;
        glob::Pattern::new(path).map_err(|e| Error::Config(format!("path '{path}' is not a glob: {e}")))?;
        let mut c = Self::new(path);
        c.tag = get("tag").map(str::to_owned);
        if let Some(h) = get("host") {
            c.host = h.to_owned();
        }
        c.parse = Parse::named(get("parse").unwrap_or("raw"), get("parse.pattern")).map_err(Error::Config)?;
        c.start_at_end = get("start-position") == Some("end");
        if let Some(s) = get("max-line-bytes") {
            let n = rill_sql::parse_size(s)
                .ok_or_else(|| Error::Config(format!("max-line-bytes '{s}' is not a size such as 1mb or 65536")))?;
            c = c.with_max_line_bytes(n);
        }
        let duration = |k: &str, default: Duration| -> Result<Duration> {
            get(k).map_or(Ok(default), |s| {
                rill_sql::parse_duration(s)
                    .ok_or_else(|| Error::Config(format!("{k} '{s}' is not a duration such as 500 ms or 5 s")))
            })
        };
        c.close_idle = duration("close-idle", c.close_idle)?;
        if let Some(p) = get("multiline.pattern") {
            let start = regex::bytes::Regex::new(p).map_err(|e| Error::Config(format!("multiline.pattern: {e}")))?;
            let timeout = duration("multiline.timeout", Duration::from_secs(1))?;
            let max_lines = match get("multiline.max-lines") {
                Some(s) => s
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::Config(format!("multiline.max-lines '{s}' is not a positive number")))?,
                None => 500,
            };
            c = c.with_multiline(Multiline { start, timeout, max_lines });
        } else if let Some(k) = ["multiline.timeout", "multiline.max-lines"].into_iter().find(|k| get(k).is_some()) {
            return Err(Error::Config(format!("{k} needs multiline.pattern (what starts an event)")));
        }
        Ok(c)
    }
}

/// The options of the `file-tail` source.
pub const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("path", true, &[]),
    opt("tag", false, &[]),
    opt("host", false, &[]),
    opt("parse", false, &["raw", "json", "regex", "common", "combined"]),
    opt("parse.pattern", false, &[]),
    opt("multiline.pattern", false, &[]),
    opt("multiline.timeout", false, &[]),
    opt("multiline.max-lines", false, &[]),
    opt("max-line-bytes", false, &[]),
    opt("start-position", false, &["beginning", "end"]),
    opt("close-idle", false, &[]),
];

/// This machine's name (`HOSTNAME`, else the kernel's), for the `host` header.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned())
}
