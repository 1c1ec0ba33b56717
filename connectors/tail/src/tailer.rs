//! The files of one group, followed: the glob is scanned again and again
//! for new files; each file is known by its device and inode, not its
//! name, and stays open while it is read, so a file renamed away (log
//! rotation) or deleted is read to its end before it is let go, and the
//! file that took its name is read from its start. A file that shrinks
//! under the reader was truncated (copy-truncate rotation) and is read
//! again from its start. The position is, per file, the offset up to
//! which every event was handed out; restarting from it neither repeats
//! nor skips a line, even when files were rotated while nothing ran. It
//! owns the files; splitting lines is [`crate::lines`]'s.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::lines::{Assembler, Piece};
use crate::{Error, Result, TailConfig};

/// How often the glob is scanned for new, renamed and deleted files.
const SCAN_EVERY: Duration = Duration::from_millis(200);
/// Bytes read from a file at once.
const CHUNK: usize = 1 << 20;

/// One event read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The file's name when the event was read.
    pub path: Arc<Path>,
    /// Byte offset of the event's first byte in the file.
    pub offset: u64,
    /// Its text (parsed into a JSON object when the group parses).
    pub body: Vec<u8>,
    /// Why it cannot be used as it is (the body is then the text read).
    pub error: Option<String>,
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self { dev: meta.dev(), ino: meta.ino() }
    }
}

/// One stored file position.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    path: PathBuf,
    #[serde(flatten)]
    id: FileId,
    offset: u64,
}

/// The stored position of a group.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    files: Vec<Stored>,
}

#[derive(Debug)]
struct Tracked {
    id: FileId,
    path: Arc<Path>,
    file: File,
    /// Bytes read so far (the handle's position).
    read: u64,
    lines: Assembler,
    /// No longer under the glob's name: read to its end, then let go.
    gone: bool,
    /// When reads last came back empty (none while data flows).
    idle_since: Option<Instant>,
}

/// The followed files of one group (see the module docs).
#[derive(Debug)]
pub struct Tailer {
    config: TailConfig,
    files: Vec<Tracked>,
    last_scan: Option<Instant>,
    /// Names that could not be opened, warned about once.
    refused: std::collections::HashSet<PathBuf>,
}

impl Tailer {
    /// Follows `config`'s files from `position` (one [`Tailer::position`]
    /// returned), or from the start position the config gives when none.
    pub fn open(config: TailConfig, position: Option<&str>) -> Result<Self> {
        let stored: Option<Position> = position
            .map(|p| serde_json::from_str(p).map_err(|e| Error::Position(format!("{e} in {p:?}"))))
            .transpose()?;
        let mut t = Self { config, files: Vec::new(), last_scan: None, refused: Default::default() };
        let found = t.glob()?;
        match stored {
            None => {
                for (path, id, meta) in found {
                    let offset = if t.config.start_at_end { meta.len() } else { 0 };
                    t.follow(path, id, offset, false);
                }
            }
            Some(stored) => {
                // Stored files first, in their order: a rotated file before the one that took its name.
                for s in &stored.files {
                    if let Some((path, _, _)) = found.iter().find(|(_, id, _)| *id == s.id) {
                        t.follow(path.clone(), s.id, s.offset, false);
                    } else if let Some(path) = renamed(&s.path, s.id) {
                        tracing::info!(was = %s.path.display(), now = %path.display(), "reading a file rotated while stopped to its end");
                        t.follow(path, s.id, s.offset, true);
                    } else {
                        tracing::warn!(
                            path = %s.path.display(),
                            offset = s.offset,
                            "a followed file was removed while the connector was stopped; what it held after the offset was not read"
                        );
                    }
                }
                // Files that appeared while stopped are read whole.
                for (path, id, _) in found {
                    if !t.files.iter().any(|f| f.id == id) {
                        t.follow(path, id, 0, false);
                    }
                }
            }
        }
        t.last_scan = Some(Instant::now());
        Ok(t)
    }

    /// The files under the glob now: name, identity, metadata.
    fn glob(&mut self) -> Result<Vec<(PathBuf, FileId, std::fs::Metadata)>> {
        let paths =
            glob::glob(&self.config.path).map_err(|e| Error::Config(format!("path '{}': {e}", self.config.path)))?;
        let mut found = Vec::new();
        for entry in paths {
            let Ok(path) = entry else { continue };
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => found.push((path, FileId::of(&meta), meta)),
                Ok(_) => {}
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "vanished while scanning"),
            }
        }
        found.sort_by_key(|(_, _, meta)| (meta.modified().ok(), meta.ino()));
        Ok(found)
    }

    /// Starts following `path` at `offset` (a line's start).
    fn follow(&mut self, path: PathBuf, id: FileId, offset: u64, gone: bool) {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if self.refused.insert(path.clone()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open a file of the group; trying again on the next scan");
                }
                return;
            }
        };
        self.refused.remove(&path);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = if size < offset {
            tracing::warn!(path = %path.display(), offset, size, "the file is shorter than its position (truncated): reading it from its start");
            0
        } else {
            offset
        };
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot seek; trying again on the next scan");
            return;
        }
        tracing::debug!(path = %path.display(), offset, "following");
        self.files.push(Tracked {
            id,
            path: path.into(),
            file,
            read: offset,
            lines: Assembler::new(offset),
            gone,
            idle_since: None,
        });
    }

    /// Notes new, renamed and vanished files.
    fn scan(&mut self) -> Result<()> {
        let found = self.glob()?;
        for f in &mut self.files {
            match found.iter().find(|(_, id, _)| *id == f.id) {
                Some((path, _, _)) => {
                    if *f.path != **path {
                        f.path = path.clone().into();
                    }
                    f.gone = false;
                }
                None => f.gone = true,
            }
        }
        for (path, id, _) in found {
            if !self.files.iter().any(|f| f.id == id) {
                // New while running: read from its start.
                self.follow(path, id, 0, false);
            }
        }
        self.last_scan = Some(Instant::now());
        Ok(())
    }

    /// Reads what the files gained, up to about `budget` bytes, and hands
    /// out the events it completes; never waits.
    pub fn poll(&mut self, budget: usize) -> Result<Vec<Event>> {
        if self.last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            self.scan()?;
        }
        let now = Instant::now();
        let mut events = Vec::new();
        let mut pieces = Vec::new();
        let mut left = budget;
        let mut buf = vec![0u8; CHUNK.min(budget.max(1))];
        let mut i = 0;
        while i < self.files.len() {
            let rules = &self.config.rules;
            let f = &mut self.files[i];
            while left > 0 {
                let want = buf.len().min(left);
                let n = match f.file.read(&mut buf[..want]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::Io(format!("{}: {e}", f.path.display()))),
                };
                if n == 0 {
                    f.idle_since.get_or_insert(now);
                    truncated(f, &mut pieces)?;
                    break;
                }
                f.idle_since = None;
                f.read += n as u64;
                left -= n;
                f.lines.push(rules, &buf[..n], now, &mut pieces);
            }
            f.lines.tick(rules, now, &mut pieces);
            let done =
                f.gone && f.idle_since.is_some_and(|t| now.saturating_duration_since(t) >= self.config.close_idle);
            if done {
                f.lines.finish(&mut pieces);
            }
            let path = Arc::clone(&f.path);
            events.extend(pieces.drain(..).map(|p| self.event(&path, p)));
            if done {
                tracing::debug!(path = %path.display(), "read to its end after rotation or deletion; closed");
                self.files.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(events)
    }

    fn event(&self, path: &Arc<Path>, p: Piece) -> Event {
        let path = Arc::clone(path);
        if p.error.is_some() {
            return Event { path, offset: p.offset, body: p.body, error: p.error };
        }
        match self.config.parse.apply(&p.body) {
            Ok(None) => Event { path, offset: p.offset, body: p.body, error: None },
            Ok(Some(body)) => Event { path, offset: p.offset, body, error: None },
            Err(reason) => Event { path, offset: p.offset, body: p.body, error: Some(reason) },
        }
    }

    /// Where every event handed out so far ends, per file (opaque text for [`Tailer::open`]).
    pub fn position(&self) -> String {
        let files = self
            .files
            .iter()
            .map(|f| Stored { path: f.path.to_path_buf(), id: f.id, offset: f.lines.committed() })
            .collect();
        serde_json::to_string(&Position { files }).unwrap_or_default()
    }

    /// The files followed now, with how far each was read.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        self.files.iter().map(|f| (f.path.to_path_buf(), f.read)).collect()
    }
}

/// At the end of `f`: when the file is now shorter than what was read, it
/// was truncated: what is held goes out and reading starts over.
fn truncated(f: &mut Tracked, pieces: &mut Vec<Piece>) -> Result<()> {
    let size = f.file.metadata().map_err(|e| Error::Io(format!("{}: {e}", f.path.display())))?.len();
    if size >= f.read {
        return Ok(());
    }
    tracing::info!(path = %f.path.display(), size, read = f.read, "file truncated (copy-truncate rotation): reading it from its start");
    f.lines.finish(pieces);
    f.file.seek(SeekFrom::Start(0)).map_err(|e| Error::Io(format!("{}: {e}", f.path.display())))?;
    f.read = 0;
    f.lines = Assembler::new(0);
    f.idle_since = None;
    Ok(())
}

/// Where the file `id`, once at `was`, is now: a name in the same directory.
fn renamed(was: &Path, id: FileId) -> Option<PathBuf> {
    let dir = was.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && FileId::of(&m) == id))
}
