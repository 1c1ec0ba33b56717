//! Reading the row-based binlog as a replica: the dump from a file and
//! position, table maps turned into table shapes (so a row is decoded
//! with the columns its table had when it was written), row events into
//! change events, transaction boundaries into positions, and MariaDB's
//! GTID events (which the client library leaves undecoded) from their
//! bytes. It owns the replication connection; the snapshot and the
//! reconnecting are the reader's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use tokio_stream::StreamExt;

use crate::event::{ChangeEvent, Op, SourceInfo};
use crate::position::Position;
use crate::shape::TableShape;
use crate::{Error, Result, Selection, now_ms};

/// MariaDB's GTID event (type 162).
const MARIADB_GTID_EVENT: u8 = 162;
/// Its flag for a statement outside a transaction (DDL): no COMMIT follows.
const FL_STANDALONE: u8 = 1;

fn bin(e: mysql_async::Error) -> Error {
    Error::Binlog(e.to_string())
}

/// A binlog dump in progress.
pub(crate) struct BinlogReader {
    stream: BinlogStream,
    server_id: u32,
    file: Arc<str>,
    /// End of the last event read.
    pos: u64,
    /// Start of the transaction in progress (or of the next one).
    txn_start: u64,
    in_txn: bool,
    standalone: bool,
    /// Rows of selected tables seen in the transaction in progress.
    txn_rows: u64,
    /// Rows of the first transaction to drop (handed out before a restart).
    skip: u64,
    gtid: Option<Arc<str>>,
    committed_gtid: Option<String>,
    shapes: HashMap<u64, Option<Arc<TableShape>>>,
}

impl std::fmt::Debug for BinlogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogReader").field("file", &self.file).field("pos", &self.pos).finish_non_exhaustive()
    }
}

/// Whether `text` is a MariaDB GTID list (`domain-server-sequence`, comma-separated).
fn gtid_list(text: &str) -> bool {
    !text.is_empty()
        && text.split(',').all(|g| {
            let parts: Vec<&str> = g.trim().split('-').collect();
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Checks that the server writes a binlog change capture can read.
pub(crate) async fn check_server(conn: &mut Conn) -> Result<()> {
    let settings: Vec<(String, String)> =
        conn.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')")
            .await
            .map_err(bin)?;
    let get = |n: &str| settings.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_uppercase());
    let want =
        [("log_bin", "ON"), ("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("binlog_row_metadata", "FULL")];
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| get(k).as_deref() != Some(*v))
        .map(|(k, v)| format!("{k} is {} (needs {v})", get(k).unwrap_or_else(|| "unknown".into())))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!("the server's binlog cannot be read for change capture: {}", wrong.join(", "))))
    }
}

impl BinlogReader {
    /// Starts the dump at `from` on `conn` (which it takes over): at its
    /// file and position, or — when the server no longer has that file
    /// (purged, or another server after a failover) — after its last
    /// committed GTID, which names the same transaction boundary.
    pub(crate) async fn open(mut conn: Conn, server_id: u32, from: &Position) -> Result<Self> {
        // Ask for MariaDB's own GTID events (capability 4 = MARIA_SLAVE_CAPABILITY_GTID).
        conn.query_drop("SET @mariadb_slave_capability = 4").await.map_err(bin)?;
        let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(bin)?;
        let files: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
        let request = match &from.gtid {
            Some(gtid) if !files.contains(&from.file) => {
                if !gtid_list(gtid) {
                    return Err(Error::Config(format!("stored GTID '{gtid}' is not domain-server-sequence")));
                }
                tracing::info!(file = from.file, gtid, "the position's binlog file is gone; resuming after its GTID");
                conn.query_drop(format!("SET @slave_connect_state = '{gtid}'")).await.map_err(bin)?;
                conn.query_drop("SET @slave_gtid_strict_mode = 0").await.map_err(bin)?;
                BinlogStreamRequest::new(server_id).with_filename(&b""[..]).with_pos(4_u64)
            }
            _ => BinlogStreamRequest::new(server_id).with_filename(from.file.as_bytes()).with_pos(from.pos),
        };
        let stream = conn.get_binlog_stream(request).await.map_err(bin)?;
        tracing::info!(file = from.file, pos = from.pos, skip = from.skip, "binlog dump started");
        Ok(Self {
            stream,
            server_id,
            file: Arc::from(from.file.as_str()),
            pos: from.pos,
            txn_start: from.pos,
            in_txn: false,
            standalone: false,
            txn_rows: 0,
            skip: from.skip,
            gtid: None,
            committed_gtid: from.gtid.clone(),
            shapes: HashMap::new(),
        })
    }

    /// Where the changes handed out so far end.
    pub(crate) fn position(&self) -> Position {
        let skip = if self.in_txn { self.txn_rows.max(self.skip) } else { 0 };
        Position {
            file: self.file.to_string(),
            pos: self.txn_start,
            skip,
            gtid: self.committed_gtid.clone(),
            snapshot_done: true,
        }
    }

    /// Changes of the selected tables: at least one unless `wait` passes
    /// first; at most about `max` (a row event's rows stay together). The
    /// only wait is for the first event, so dropping the future loses nothing.
    pub(crate) async fn next(&mut self, selection: &Selection, max: usize, wait: Duration) -> Result<Vec<ChangeEvent>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < max {
            let event = if out.is_empty() {
                match tokio::time::timeout_at(deadline, self.stream.next()).await {
                    Ok(e) => e,
                    Err(_) => break,
                }
            } else {
                // Take what has arrived without waiting (no await: nothing taken can be lost to a cancel).
                match ready_now(self.stream.next()) {
                    Some(e) => e,
                    None => break,
                }
            };
            match event {
                Some(Ok(event)) => self.take(&event, selection, &mut out)?,
                Some(Err(e)) => return Err(Error::Disconnected(e.to_string())),
                None => return Err(Error::Disconnected("the server ended the binlog dump".into())),
            }
        }
        Ok(out)
    }

    fn take(&mut self, event: &Event, selection: &Selection, out: &mut Vec<ChangeEvent>) -> Result<()> {
        let header = event.header();
        let end = u64::from(header.log_pos());
        // An event starts where its end less its size says; made-up events (end 0) where the last one ended.
        // (A dump resumed by GTID skips events, so the last end is not always the next start.)
        let size = u64::from(header.event_size());
        let start = if end >= size && end > 0 { end - size } else { self.pos };
        if header.event_type_raw() == MARIADB_GTID_EVENT {
            let data = event.data();
            if data.len() >= 13 {
                let seq = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
                self.gtid = Some(Arc::from(format!("{domain}-{}-{seq}", header.server_id()).as_str()));
                self.standalone = data[12] & FL_STANDALONE != 0;
            }
            self.begin(start);
            self.advance(end);
            return Ok(());
        }
        let data = event.read_data().map_err(|e| Error::Binlog(format!("{}:{start}: {e}", self.file)))?;
        match data {
            Some(EventData::RotateEvent(rotate)) => {
                let name = rotate.name();
                // The first rotate of a dump is made up by the server (position 0) and may carry a checksum after the name.
                let name = if end == 0 { binlog_name(&name) } else { name.into_owned() };
                if !name.is_empty() {
                    if *self.file != *name {
                        self.shapes.clear();
                    }
                    self.file = Arc::from(name.as_str());
                }
                self.pos = rotate.position();
                if !self.in_txn {
                    self.txn_start = self.pos;
                }
                return Ok(());
            }
            Some(EventData::QueryEvent(query)) => {
                let text = query.query();
                let text = text.trim();
                if text.eq_ignore_ascii_case("BEGIN") {
                    self.begin(start);
                } else if text.eq_ignore_ascii_case("COMMIT") {
                    self.advance(end);
                    self.commit();
                    return Ok(());
                } else {
                    // DDL: later table maps carry the new shape.
                    tracing::info!(statement = text, "DDL in the binlog");
                    self.shapes.clear();
                    if !self.in_txn || self.standalone {
                        self.advance(end);
                        self.commit();
                        return Ok(());
                    }
                }
            }
            Some(EventData::XidEvent(_)) => {
                self.advance(end);
                self.commit();
                return Ok(());
            }
            Some(EventData::TableMapEvent(tme)) => {
                let shape = if selection.selects(&tme.database_name(), &tme.table_name()) {
                    Some(TableShape::from_table_map(&tme)?)
                } else {
                    None
                };
                self.shapes.insert(tme.table_id(), shape);
            }
            Some(EventData::RowsEvent(rows)) => self.rows(&rows, header.timestamp(), start, out)?,
            _ => {}
        }
        self.advance(end);
        Ok(())
    }

    fn begin(&mut self, start: u64) {
        if !self.in_txn {
            self.in_txn = true;
            self.txn_start = start;
            self.txn_rows = 0;
        }
    }

    /// Moves the read position to `end`, only ever forward within a file
    /// (made-up events at the start of a dump carry 0 or a header's position).
    fn advance(&mut self, end: u64) {
        if end > self.pos {
            self.pos = end;
        }
        if !self.in_txn {
            self.txn_start = self.pos;
        }
    }

    fn commit(&mut self) {
        self.in_txn = false;
        self.standalone = false;
        self.txn_start = self.pos;
        self.txn_rows = 0;
        self.skip = 0;
        if let Some(g) = self.gtid.take() {
            self.committed_gtid = Some(g.to_string());
        }
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, seconds: u32, start: u64, out: &mut Vec<ChangeEvent>) -> Result<()> {
        let Some(Some(shape)) = self.shapes.get(&rows.table_id()).cloned() else { return Ok(()) };
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(Error::Binlog(format!("{}:{start}: a row event without its table map", self.file)));
        };
        let op = match rows {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Create,
            RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
            RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        };
        let source = SourceInfo {
            server_id: self.server_id,
            file: Arc::clone(&self.file),
            pos: start,
            gtid: self.gtid.clone(),
            ts_ms: i64::from(seconds) * 1000,
            snapshot: false,
        };
        let ts = now_ms();
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(|e| Error::Binlog(format!("{}:{start}: {e}", self.file)))?;
            self.txn_rows += 1;
            if self.txn_rows <= self.skip {
                continue;
            }
            out.push(ChangeEvent {
                op,
                shape: Arc::clone(&shape),
                before: before.map(|r| shape.binlog_row(r)).transpose()?,
                after: after.map(|r| shape.binlog_row(r)).transpose()?,
                source: source.clone(),
                ts_ms: ts,
            });
        }
        Ok(())
    }

    /// Ends the dump.
    pub(crate) async fn close(self) {
        let _ = self.stream.close().await;
    }
}

/// The future's output if it is ready at once.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A binlog file name without the checksum bytes a made-up rotate may carry: `name.NNNNNN`.
fn binlog_name(raw: &str) -> String {
    let Some(dot) = raw.rfind('.') else { return raw.to_owned() };
    let digits: String = raw[dot + 1..].chars().take_while(char::is_ascii_digit).take(6).collect();
    format!("{}.{digits}", &raw[..dot])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_rotates_lose_their_checksum() {
        assert_eq!(binlog_name("binlog.000002\u{1}\u{7f}ab"), "binlog.000002");
        assert_eq!(binlog_name("mysql-bin.000123"), "mysql-bin.000123");
    }

    #[test]
    fn only_gtid_lists_reach_the_server() {
        assert!(gtid_list("0-1-42"));
        assert!(gtid_list("0-1-42,1-2-7"));
        assert!(!gtid_list("0-1-42'; DROP TABLE t; --"));
        assert!(!gtid_list("0-1"));
        assert!(!gtid_list(""));
    }
}
