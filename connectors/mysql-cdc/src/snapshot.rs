//! The initial snapshot: every selected table read inside one consistent
//! snapshot transaction, in primary-key order and in chunks (keyset
//! pagination, so a chunk never re-reads the table from its start), and
//! the binlog position that snapshot corresponds to, where streaming
//! carries on. MariaDB names that position itself
//! (`binlog_snapshot_file`/`_position` after `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`); elsewhere a brief global read lock pins it.
//! It owns the snapshot's connection; what follows is the binlog's.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use crate::event::{ChangeEvent, Op, SourceInfo};
use crate::shape::TableShape;
use crate::{Error, Result, Selection, now_ms};

fn snap(e: mysql_async::Error) -> Error {
    Error::Snapshot(e.to_string())
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A snapshot being read.
pub(crate) struct Snapshot {
    conn: Conn,
    /// Binlog file and position of the snapshot.
    pub(crate) file: String,
    pub(crate) pos: u64,
    server_id: u32,
    tables: Vec<(String, String)>,
    /// The table being read: its index, key columns and the last key read.
    current: usize,
    key: Vec<String>,
    last: Option<Vec<Value>>,
    offset: u64,
    fetch: usize,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("file", &self.file).field("pos", &self.pos).finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Opens the snapshot transaction and lists the tables it reads.
    pub(crate) async fn begin(mut conn: Conn, selection: &Selection, fetch: usize, server_id: u32) -> Result<Self> {
        conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(snap)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(snap)?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(snap)?;
        let status: Vec<(String, String)> =
            conn.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'").await.map_err(snap)?;
        let named = |n: &str| status.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let (file, pos) = match (named("binlog_snapshot_file"), named("binlog_snapshot_position")) {
            (Some(file), Some(pos)) if !file.is_empty() => (file, pos.parse().unwrap_or(4)),
            _ => locked_position(&mut conn).await?,
        };
        let listed: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await
            .map_err(snap)?;
        let tables = listed.into_iter().filter(|(db, t)| selection.selects(db, t)).collect();
        tracing::info!(file, pos, "snapshot opened");
        let mut s = Self {
            conn,
            file,
            pos,
            server_id,
            tables,
            current: 0,
            key: Vec::new(),
            last: None,
            offset: 0,
            fetch: fetch.max(1),
        };
        s.enter_table().await?;
        Ok(s)
    }

    /// Whether every table has been read.
    pub(crate) fn done(&self) -> bool {
        self.current >= self.tables.len()
    }

    /// The tables the snapshot reads (`db.table`).
    pub(crate) fn tables(&self) -> Vec<String> {
        self.tables.iter().map(|(d, t)| format!("{d}.{t}")).collect()
    }

    async fn enter_table(&mut self) -> Result<()> {
        self.last = None;
        self.offset = 0;
        self.key.clear();
        let Some((db, table)) = self.tables.get(self.current).cloned() else { return Ok(()) };
        self.key = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(snap)?;
        Ok(())
    }

    /// The next chunk of rows, or `None` when every table is read (the
    /// transaction is then ended).
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Vec<ChangeEvent>>> {
        loop {
            let Some((db, table)) = self.tables.get(self.current).cloned() else {
                self.conn.query_drop("COMMIT").await.map_err(snap)?;
                return Ok(None);
            };
            // One row more than a chunk says whether the table goes on, so the last chunk is known as
            // the last (and the position after it already points past the snapshot).
            let mut rows = self.read(&db, &table).await?;
            let more = rows.len() > self.fetch;
            rows.truncate(self.fetch);
            if rows.is_empty() {
                self.current += 1;
                self.enter_table().await?;
                continue;
            }
            let shape = Arc::new(TableShape::from_result(&db, &table, rows[0].columns_ref(), &self.key)?);
            if !more {
                self.current += 1;
                self.enter_table().await?;
            } else if let Some(last) = rows.last() {
                self.last = Some(shape.key.iter().map(|i| last.as_ref(*i).cloned().unwrap_or(Value::NULL)).collect());
                self.offset += rows.len() as u64;
            }
            let ts = now_ms();
            let file: Arc<str> = Arc::from(self.file.as_str());
            let events = rows
                .into_iter()
                .map(|row| ChangeEvent {
                    op: Op::Read,
                    shape: Arc::clone(&shape),
                    before: None,
                    after: Some(shape.snapshot_row(row)),
                    source: SourceInfo {
                        server_id: self.server_id,
                        file: Arc::clone(&file),
                        pos: self.pos,
                        gtid: None,
                        ts_ms: ts,
                        snapshot: true,
                    },
                    ts_ms: ts,
                })
                .collect();
            return Ok(Some(events));
        }
    }

    /// One chunk of `db.table`: after the last key read, in key order (by offset for a table without a key).
    async fn read(&mut self, db: &str, table: &str) -> Result<Vec<Row>> {
        let from = format!("{}.{}", quote(db), quote(table));
        if self.key.is_empty() {
            let q = format!("SELECT * FROM {from} LIMIT {} OFFSET {}", self.fetch + 1, self.offset);
            return self.conn.exec(q, ()).await.map_err(snap);
        }
        let keys: Vec<String> = self.key.iter().map(|k| quote(k)).collect();
        let order = keys.join(", ");
        match &self.last {
            None => {
                let q = format!("SELECT * FROM {from} ORDER BY {order} LIMIT {}", self.fetch + 1);
                self.conn.exec(q, ()).await.map_err(snap)
            }
            Some(last) => {
                let marks = vec!["?"; last.len()].join(", ");
                let q = format!(
                    "SELECT * FROM {from} WHERE ({order}) > ({marks}) ORDER BY {order} LIMIT {}",
                    self.fetch + 1
                );
                self.conn.exec(q, last.clone()).await.map_err(snap)
            }
        }
    }
}

/// The binlog position under a global read lock (servers without MariaDB's snapshot status).
async fn locked_position(conn: &mut Conn) -> Result<(String, u64)> {
    conn.query_drop("COMMIT").await.map_err(snap)?;
    conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(snap)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await.map_err(snap)?;
    let at = master_position(conn).await;
    conn.query_drop("UNLOCK TABLES").await.map_err(snap)?;
    at
}

/// The server's current binlog file and position.
pub(crate) async fn master_position(conn: &mut Conn) -> Result<(String, u64)> {
    let row: Option<Row> = conn.query_first("SHOW MASTER STATUS").await.map_err(snap)?;
    let row = row.ok_or_else(|| Error::Config("SHOW MASTER STATUS is empty: the server's binlog is off".into()))?;
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    match (file, pos) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(Error::Snapshot("SHOW MASTER STATUS gave no file and position".into())),
    }
}
