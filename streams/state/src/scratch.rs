//! The scratch file under a store: an embedded B-tree ([redb]) in a fresh
//! directory of its own under [`StateConfig::spill_dir`], removed with it.
//! It owns opening the file and how often writes reach the disk; what the
//! tables hold is its users' business.

use redb::{Database, Durability, WriteTransaction};

use crate::{Error, Result, StateConfig, kv};

/// Fields drop in order: the database, then its directory.
pub(crate) struct Scratch {
    pub(crate) db: Database,
    commits: u64,
    /// Removed with the store (and with it the file).
    _dir: tempfile::TempDir,
}

impl Scratch {
    /// A new empty file under `config.spill_dir`, with the page cache's share of the budget.
    pub(crate) fn open(config: &StateConfig) -> Result<Self> {
        let dir_err = |source| Error::SpillDir { dir: config.spill_dir.clone(), source };
        std::fs::create_dir_all(&config.spill_dir).map_err(dir_err)?;
        let dir = tempfile::Builder::new().prefix("rill-state-").tempdir_in(&config.spill_dir).map_err(dir_err)?;
        let db = Database::builder()
            .set_cache_size(config.cache_budget())
            .create(dir.path().join("state.redb"))
            .map_err(kv)?;
        Ok(Self { db, commits: 0, _dir: dir })
    }

    /// A write transaction. Scratch data needs no durability, but every
    /// eighth commit is durable all the same: only then may the file reuse
    /// the pages earlier commits freed.
    pub(crate) fn begin_write(&mut self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(kv)?;
        self.commits += 1;
        let durability = if self.commits.is_multiple_of(8) { Durability::Immediate } else { Durability::None };
        txn.set_durability(durability).map_err(kv)?;
        Ok(txn)
    }
}
