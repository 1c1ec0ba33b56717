//! One row change and its Debezium-style envelope:
//!
//! ```json
//! {"before": null, "after": {"id": 1, "note": "héllo 👋"}, "op": "c",
//!  "source": {"connector": "mysql", "server_id": 1, "db": "shop", "table": "orders",
//!             "file": "binlog.000002", "pos": 1234, "gtid": "0-1-17", "ts_ms": 1764075900000,
//!             "snapshot": false},
//!  "ts_ms": 1764075900123}
//! ```
//!
//! `op` is `r` for a snapshot read, `c` insert, `u` update, `d` delete. The
//! message key is the primary key's value (JSON array text for a key of
//! several columns). It owns the event and its encodings, nothing else.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::shape::TableShape;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Read by the snapshot.
    #[serde(rename = "r")]
    Read,
    /// Inserted.
    #[serde(rename = "c")]
    Create,
    /// Updated.
    #[serde(rename = "u")]
    Update,
    /// Deleted.
    #[serde(rename = "d")]
    Delete,
}

impl Op {
    /// Its letter in the envelope.
    pub fn letter(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// Where a change came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The server's id.
    pub server_id: u32,
    /// The binlog file of the change (of the snapshot's point for a read).
    pub file: Arc<str>,
    /// The position of the event in it.
    pub pos: u64,
    /// The transaction's GTID, when the server gives one.
    pub gtid: Option<Arc<str>>,
    /// When the server wrote the change (ms since the epoch).
    pub ts_ms: i64,
    /// Whether the snapshot read it.
    pub snapshot: bool,
}

/// One row change (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// What happened.
    pub op: Op,
    /// The table's shape at the time.
    pub shape: Arc<TableShape>,
    /// The row before (updates and deletes).
    pub before: Option<Vec<Json>>,
    /// The row after (reads, inserts and updates).
    pub after: Option<Vec<Json>>,
    /// Where it came from.
    pub source: SourceInfo,
    /// When it was read (ms since the epoch).
    pub ts_ms: i64,
}

impl ChangeEvent {
    /// The row that identifies it: after, or before for a delete.
    fn row(&self) -> &[Json] {
        self.after.as_deref().or(self.before.as_deref()).unwrap_or_default()
    }

    /// The primary key's value: the single column's text, or a JSON array of several; the whole row without a key.
    pub fn key(&self) -> String {
        let row = self.row();
        let text = |v: &Json| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self.shape.key.as_slice() {
            [one] => row.get(*one).map(text).unwrap_or_default(),
            [] => Json::Array(row.to_vec()).to_string(),
            many => Json::Array(many.iter().filter_map(|i| row.get(*i).cloned()).collect()).to_string(),
        }
    }

    /// The envelope as one line of JSON, appended to `out`.
    pub fn write_envelope(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"before\":");
        self.write_row(self.before.as_deref(), out);
        out.extend_from_slice(b",\"after\":");
        self.write_row(self.after.as_deref(), out);
        let s = &self.source;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            ",\"op\":\"{}\",\"source\":{{\"connector\":\"mysql\",\"server_id\":{},",
            self.op.letter(),
            s.server_id
        );
        write_field(out, "db", &self.shape.db);
        write_field(out, "table", &self.shape.table);
        write_field(out, "file", &s.file);
        let _ = write!(out, "\"pos\":{},\"gtid\":", s.pos);
        match &s.gtid {
            Some(g) => write_str(out, g),
            None => out.extend_from_slice(b"null"),
        }
        let _ = write!(out, ",\"ts_ms\":{},\"snapshot\":{}}},\"ts_ms\":{}}}", s.ts_ms, s.snapshot, self.ts_ms);
    }

    /// The envelope as bytes.
    pub fn envelope(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_envelope(&mut out);
        out
    }

    fn write_row(&self, row: Option<&[Json]>, out: &mut Vec<u8>) {
        let Some(row) = row else {
            out.extend_from_slice(b"null");
            return;
        };
        out.push(b'{');
        for (i, (name, value)) in self.shape.columns.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, name);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.push(b'}');
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    write_str(out, name);
    out.push(b':');
    write_str(out, value);
    out.push(b',');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Kind;

    fn event(op: Op, before: Option<Vec<Json>>, after: Option<Vec<Json>>) -> ChangeEvent {
        let shape = TableShape {
            db: "shop".into(),
            table: "orders".into(),
            columns: vec!["id".into(), "note".into()],
            kinds: vec![Kind::Integer, Kind::Text],
            key: vec![0],
        };
        ChangeEvent {
            op,
            shape: Arc::new(shape),
            before,
            after,
            source: SourceInfo {
                server_id: 1,
                file: "binlog.000001".into(),
                pos: 4,
                gtid: Some("0-1-5".into()),
                ts_ms: 1000,
                snapshot: false,
            },
            ts_ms: 2000,
        }
    }

    #[test]
    fn the_envelope_is_json_debezium_readers_take() {
        let e = event(Op::Update, Some(vec![1.into(), "a\"b".into()]), Some(vec![1.into(), "héllo 👋".into()]));
        let doc: Json = serde_json::from_slice(&e.envelope()).unwrap();
        assert_eq!(doc["op"], "u");
        assert_eq!(doc["before"]["note"], "a\"b");
        assert_eq!(doc["after"]["note"], "héllo 👋");
        assert_eq!(doc["source"]["table"], "orders");
        assert_eq!(doc["source"]["gtid"], "0-1-5");
        assert_eq!(doc["ts_ms"], 2000);
        assert_eq!(e.key(), "1");
    }

    proptest::proptest! {
        /// Whatever the names and values, the envelope is JSON that gives them back.
        #[test]
        fn envelopes_round_trip(
            names in proptest::collection::vec("\\PC{1,12}", 1..6),
            texts in proptest::collection::vec(proptest::option::of("\\PC{0,40}"), 6),
            number in proptest::num::i64::ANY,
        ) {
            let mut names = names;
            names.sort();
            names.dedup();
            let row: Vec<Json> = names
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { Json::from(number) } else { texts[i].clone().map_or(Json::Null, Json::String) })
                .collect();
            let mut e = event(Op::Create, None, Some(row.clone()));
            let shape = TableShape { columns: names.clone(), kinds: vec![Kind::Text; names.len()], ..(*e.shape).clone() };
            e.shape = Arc::new(shape);
            let doc: Json = serde_json::from_slice(&e.envelope()).unwrap();
            for (name, value) in names.iter().zip(&row) {
                proptest::prop_assert_eq!(&doc["after"][name], value);
            }
            proptest::prop_assert_eq!(e.key(), number.to_string());
        }
    }

    #[test]
    fn a_delete_is_keyed_by_its_before_row() {
        let e = event(Op::Delete, Some(vec![7.into(), Json::Null]), None);
        let doc: Json = serde_json::from_slice(&e.envelope()).unwrap();
        assert_eq!(doc["after"], Json::Null);
        assert_eq!(e.key(), "7");
    }
}
