//! Where a reader is: a binlog file and position at a transaction's start,
//! the rows of that transaction already handed out, the last committed
//! GTID, and whether the snapshot is done. It is what checkpoints and the
//! connect runtime store; resuming from it hands out every later change
//! exactly once. It owns the format, not the reading.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A reader's position (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    /// The binlog file.
    pub file: String,
    /// Where in it the transaction in progress (or the next one) starts.
    pub pos: u64,
    /// Rows of that transaction already handed out.
    #[serde(default)]
    pub skip: u64,
    /// The last committed transaction's GTID (MariaDB `domain-server-sequence`).
    #[serde(default)]
    pub gtid: Option<String>,
    /// Whether the initial snapshot was read to its end (a position taken
    /// during the snapshot starts it over).
    #[serde(default)]
    pub snapshot_done: bool,
}

impl Position {
    /// The position as stored text (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A position from stored text.
    pub fn decode(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("'{text}' is not a binlog position: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back() {
        let p = Position {
            file: "binlog.000003".into(),
            pos: 1234,
            skip: 2,
            gtid: Some("0-1-9".into()),
            snapshot_done: true,
        };
        assert_eq!(Position::decode(&p.encode()).unwrap(), p);
        assert!(Position::decode("binlog.000003:4").unwrap_err().to_string().contains("binlog.000003:4"));
    }
}
