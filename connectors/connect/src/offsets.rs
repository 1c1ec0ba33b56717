//! Stored source positions, one per connector, in a JSON file replaced
//! atomically (written aside, synced, renamed) on every update, so a crash
//! leaves the previous or the new offsets, never a torn file. It owns the
//! file; when to store is the source tasks'.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::{Error, Result};

/// The offsets file (see the module docs).
#[derive(Debug)]
pub struct Offsets {
    path: PathBuf,
    values: Mutex<BTreeMap<String, String>>,
}

impl Offsets {
    /// Opens (or starts) the offsets kept in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        let path = dir.join("offsets.json");
        let values = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| Error::Io(format!("{} is damaged: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
        };
        Ok(Self { path, values: Mutex::new(values) })
    }

    /// The stored position of `connector`.
    pub fn get(&self, connector: &str) -> Option<String> {
        self.values.lock().get(connector).cloned()
    }

    /// Stores `position` for `connector` durably.
    pub fn put(&self, connector: &str, position: &str) -> Result<()> {
        let mut values = self.values.lock();
        if values.get(connector).map(String::as_str) == Some(position) {
            return Ok(());
        }
        values.insert(connector.to_owned(), position.to_owned());
        self.persist(&values)
    }

    /// Forgets `connector`'s position (it starts afresh next time).
    pub fn remove(&self, connector: &str) -> Result<()> {
        let mut values = self.values.lock();
        if values.remove(connector).is_some() { self.persist(&values) } else { Ok(()) }
    }

    fn persist(&self, values: &BTreeMap<String, String>) -> Result<()> {
        let text = serde_json::to_vec_pretty(values).map_err(|e| Error::Io(e.to_string()))?;
        let aside = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&aside)?;
            f.write_all(&text)?;
            f.sync_data()?;
            std::fs::rename(&aside, &self.path)
        };
        write().map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let o = Offsets::open(dir.path()).unwrap();
        o.put("a", "p1").unwrap();
        o.put("b", "p2").unwrap();
        o.put("a", "p3").unwrap();
        let again = Offsets::open(dir.path()).unwrap();
        assert_eq!(again.get("a").as_deref(), Some("p3"));
        assert_eq!(again.get("b").as_deref(), Some("p2"));
        std::fs::write(dir.path().join("offsets.json"), "{").unwrap();
        assert!(Offsets::open(dir.path()).unwrap_err().to_string().contains("damaged"));
    }
}
