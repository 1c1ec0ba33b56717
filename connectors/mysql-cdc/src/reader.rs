//! The change reader: the snapshot first (unless told to start at the
//! binlog's end or from a stored position), then the binlog from the
//! snapshot's point, reconnecting from its last position when the server
//! goes away (a restart, a network cut) for as long as configured. Callers
//! ask for the next changes and the position after them.

use std::time::{Duration, Instant};

use mysql_async::{Conn, Opts};

use crate::binlog::{BinlogReader, check_server};
use crate::event::ChangeEvent;
use crate::position::Position;
use crate::snapshot::{Snapshot, master_position};
use crate::{CdcConfig, Error, Result, Selection, Startup};

enum Phase {
    Snapshot(Box<Snapshot>),
    Binlog(Box<BinlogReader>),
    /// The connection was lost at this position; reconnecting.
    Down {
        at: Position,
        since: Instant,
        attempts: u32,
    },
}

/// Reads a server's changes (see the module docs).
pub struct CdcReader {
    config: CdcConfig,
    opts: Opts,
    selection: Selection,
    phase: Phase,
}

impl std::fmt::Debug for CdcReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdcReader").field("position", &self.position()).finish_non_exhaustive()
    }
}

impl CdcReader {
    /// Connects and begins: from `from` when given, else as `config.startup` says.
    pub async fn open(config: CdcConfig, from: Option<Position>) -> Result<Self> {
        let opts = Opts::from_url(&config.url)
            .map_err(|e| Error::Config(format!("'{}' is not a MySQL URL: {e}", redact(&config.url))))?;
        let selection = config.selection()?;
        let mut conn = connect(&opts).await?;
        check_server(&mut conn).await?;
        let phase = match from {
            Some(p) if p.snapshot_done => {
                Phase::Binlog(Box::new(BinlogReader::open(conn, config.server_id, &p).await?))
            }
            // A position taken during the snapshot starts the snapshot over.
            Some(_) => Phase::Snapshot(Box::new(snapshot(conn, &selection, &config).await?)),
            None if config.startup == Startup::Initial => {
                Phase::Snapshot(Box::new(snapshot(conn, &selection, &config).await?))
            }
            _ => {
                let (file, pos) = master_position(&mut conn).await?;
                let at = Position { file, pos, snapshot_done: true, ..Position::default() };
                Phase::Binlog(Box::new(BinlogReader::open(conn, config.server_id, &at).await?))
            }
        };
        Ok(Self { config, opts, selection, phase })
    }

    /// Where the changes handed out so far end.
    pub fn position(&self) -> Position {
        match &self.phase {
            // Once its last rows are handed out, the snapshot's position is where the binlog begins.
            Phase::Snapshot(s) => {
                Position { file: s.file.clone(), pos: s.pos, snapshot_done: s.done(), ..Position::default() }
            }
            Phase::Binlog(b) => b.position(),
            Phase::Down { at, .. } => at.clone(),
        }
    }

    /// Whether the snapshot is still being read.
    pub fn in_snapshot(&self) -> bool {
        matches!(self.phase, Phase::Snapshot(_))
    }

    /// The next changes: at most about `max`, none if `wait` passes first.
    pub async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<ChangeEvent>> {
        match &mut self.phase {
            Phase::Snapshot(s) => match s.next_chunk().await? {
                Some(events) => Ok(events),
                None => {
                    let at = Position { file: s.file.clone(), pos: s.pos, snapshot_done: true, ..Position::default() };
                    tracing::info!(file = at.file, pos = at.pos, "snapshot read; streaming the binlog");
                    let conn = connect(&self.opts).await?;
                    self.phase = Phase::Binlog(Box::new(BinlogReader::open(conn, self.config.server_id, &at).await?));
                    Ok(Vec::new())
                }
            },
            Phase::Binlog(b) => match b.next(&self.selection, max, wait).await {
                Err(Error::Disconnected(why)) => {
                    let at = b.position();
                    tracing::warn!(why, file = at.file, pos = at.pos, "binlog connection lost; reconnecting");
                    self.phase = Phase::Down { at, since: Instant::now(), attempts: 0 };
                    Ok(Vec::new())
                }
                other => other,
            },
            Phase::Down { at, since, attempts } => {
                let backoff =
                    Duration::from_millis(100 << (*attempts).min(5)).min(wait.max(Duration::from_millis(100)));
                tokio::time::sleep(backoff).await;
                *attempts += 1;
                let opened = match connect(&self.opts).await {
                    Ok(conn) => BinlogReader::open(conn, self.config.server_id, at).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(b) => {
                        tracing::info!(file = at.file, pos = at.pos, "binlog connection back");
                        self.phase = Phase::Binlog(Box::new(b));
                        Ok(Vec::new())
                    }
                    Err(e) if since.elapsed() < self.config.reconnect_for => {
                        tracing::debug!(error = %e, "reconnect failed");
                        Ok(Vec::new())
                    }
                    Err(e) => Err(Error::Disconnected(format!(
                        "the server was unreachable for {:?}: {e}",
                        self.config.reconnect_for
                    ))),
                }
            }
        }
    }

    /// Ends reading.
    pub async fn close(self) {
        if let Phase::Binlog(b) = self.phase {
            b.close().await;
        }
    }
}

async fn snapshot(conn: Conn, selection: &Selection, config: &CdcConfig) -> Result<Snapshot> {
    let s = Snapshot::begin(conn, selection, config.fetch_size, config.server_id).await?;
    tracing::info!(tables = ?s.tables(), "snapshot of the selected tables");
    Ok(s)
}

async fn connect(opts: &Opts) -> Result<Conn> {
    Conn::new(opts.clone()).await.map_err(|e| Error::Disconnected(e.to_string()))
}

/// `url` with its password hidden, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
