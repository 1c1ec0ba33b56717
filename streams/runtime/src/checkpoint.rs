//! Durable checkpoints: a dataflow [`Snapshot`] together with the source
//! positions it corresponds to, in a directory.
//!
//! Checkpoint `n` is written to `chk-n.tmp/` (one Arrow IPC file per
//! stateful operator and `meta.json`), synced, renamed to `chk-n/`, and
//! only then named in `LATEST` (written to a temporary file and renamed).
//! A crash at any point leaves `LATEST` naming a complete checkpoint, or
//! none. The two newest checkpoints are kept.
//!
//! It owns the files only; when to take a checkpoint and what the
//! positions mean are the runner's.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::dataflow::Snapshot;
use crate::{Error, Result};

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its number (increasing).
    pub id: u64,
    /// The dataflow's state.
    pub snapshot: Snapshot,
    /// Source positions: the next offset to read per source queue.
    pub positions: BTreeMap<String, u64>,
    /// Positions of connector sources (see [`crate::Source`]), as they wrote them.
    pub sources: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    id: u64,
    nodes: Vec<String>,
    watermarks: Vec<i64>,
    states: Vec<(usize, String)>,
    positions: BTreeMap<String, u64>,
    #[serde(default)]
    sources: BTreeMap<String, String>,
}

/// A directory of checkpoints (see the module docs).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Checkpoint(format!("{}: {e}", path.display()))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|d| d.sync_all()).map_err(|e| io(path, e))
}

impl CheckpointStore {
    /// Checkpoints in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id:020}"))
    }

    /// Stores checkpoint `id`; when this returns, it is the latest.
    pub fn save(&self, id: u64, snapshot: &Snapshot, positions: &BTreeMap<String, u64>) -> Result<()> {
        self.save_with_sources(id, snapshot, positions, &BTreeMap::new())
    }

    /// [`CheckpointStore::save`] with the positions of connector sources too.
    pub fn save_with_sources(
        &self,
        id: u64,
        snapshot: &Snapshot,
        positions: &BTreeMap<String, u64>,
        sources: &BTreeMap<String, String>,
    ) -> Result<()> {
        let tmp = self.dir.join(format!("chk-{id:020}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        let mut states = Vec::new();
        for (node, batch) in &snapshot.states {
            let name = format!("node-{node}.arrow");
            let path = tmp.join(&name);
            let file = File::create(&path).map_err(|e| io(&path, e))?;
            let mut writer = FileWriter::try_new(file, &batch.schema())?;
            writer.write(batch)?;
            writer.finish()?;
            writer.get_ref().sync_all().map_err(|e| io(&path, e))?;
            states.push((*node, name));
        }
        let meta = Meta {
            id,
            nodes: snapshot.nodes.clone(),
            watermarks: snapshot.watermarks.clone(),
            states,
            positions: positions.clone(),
            sources: sources.clone(),
        };
        let path = tmp.join("meta.json");
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Checkpoint(e.to_string()))?;
        write_synced(&path, &text)?;
        sync_dir(&tmp)?;
        let done = self.path(id);
        // Left by a crash before `LATEST` named it: not a checkpoint anyone uses.
        if done.exists() {
            fs::remove_dir_all(&done).map_err(|e| io(&done, e))?;
        }
        fs::rename(&tmp, &done).map_err(|e| io(&done, e))?;
        let latest = self.dir.join("LATEST.tmp");
        write_synced(&latest, format!("{id}\n").as_bytes())?;
        fs::rename(&latest, self.dir.join("LATEST")).map_err(|e| io(&latest, e))?;
        sync_dir(&self.dir)?;
        self.prune(id)
    }

    fn prune(&self, latest: u64) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("chk-") else { continue };
            let Ok(id) = rest.trim_end_matches(".tmp").parse::<u64>() else { continue };
            if id.saturating_add(1) < latest || (rest.ends_with(".tmp") && id < latest) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The latest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        let latest = self.dir.join("LATEST");
        let text = match fs::read_to_string(&latest) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&latest, e)),
        };
        let id: u64 = text.trim().parse().map_err(|_| {
            Error::Checkpoint(format!("{}: '{}' is not a checkpoint number", latest.display(), text.trim()))
        })?;
        let dir = self.path(id);
        let meta_path = dir.join("meta.json");
        let raw = fs::read(&meta_path).map_err(|e| io(&meta_path, e))?;
        let meta: Meta =
            serde_json::from_slice(&raw).map_err(|e| Error::Checkpoint(format!("{}: {e}", meta_path.display())))?;
        let mut states = Vec::new();
        for (node, name) in meta.states {
            let path = dir.join(&name);
            let file = File::open(&path).map_err(|e| io(&path, e))?;
            let reader = FileReader::try_new(file, None)?;
            for batch in reader {
                states.push((node, batch?));
            }
        }
        Ok(Some(Checkpoint {
            id: meta.id,
            snapshot: Snapshot { nodes: meta.nodes, watermarks: meta.watermarks, states },
            positions: meta.positions,
            sources: meta.sources,
        }))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io(path, e))
}
