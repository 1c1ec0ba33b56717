//! A table's shape: its columns' names and kinds and its primary key, as
//! the binlog's table map describes it at the moment of a change (so rows
//! after an `ALTER TABLE` decode with the new columns) or as a snapshot
//! query's result set and the information schema do. It owns the shape and
//! turning one row into JSON values; reading rows is the callers'.

use std::sync::Arc;

use mysql_async::Value;
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use serde_json::Value as Json;

use crate::value::Kind;
use crate::{Error, Result};

/// A table's shape (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// Its database.
    pub db: String,
    /// Its name.
    pub table: String,
    /// Column names, in table order.
    pub columns: Vec<String>,
    /// How each column's values are written.
    pub kinds: Vec<Kind>,
    /// The primary key's columns (indices into `columns`).
    pub key: Vec<usize>,
}

impl TableShape {
    /// `db.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// The shape a binlog table map gives (it needs `binlog_row_metadata=FULL`).
    pub fn from_table_map(tme: &TableMapEvent<'_>) -> Result<Arc<TableShape>> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let bad = |what: String| Error::Binlog(format!("table map of {db}.{table}: {what}"));
        let count = usize::try_from(tme.columns_count()).map_err(|e| bad(e.to_string()))?;
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| bad(e.to_string()))?;
        let names: Vec<String> = meta
            .iter_column_name()
            .map(|n| n.map(|n| n.name().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| bad(e.to_string()))?;
        if names.len() != count {
            return Err(Error::Config(format!(
                "the binlog does not name the columns of {db}.{table}: the server needs binlog_row_metadata=FULL"
            )));
        }
        let key: Vec<usize> = meta
            .iter_primary_key()
            .map(|k| k.map(|k| k as usize))
            .collect::<std::io::Result<_>>()
            .map_err(|e| bad(e.to_string()))?;
        let (mut enums, mut sets) = (Vec::new(), Vec::new());
        for field in tme.iter_optional_meta() {
            match field.map_err(|e| bad(e.to_string()))? {
                OptionalMetadataField::EnumStrValue(values) => {
                    for v in values.iter_values() {
                        let v = v.map_err(|e| bad(e.to_string()))?;
                        enums.push(v.values().iter().map(|s| s.value().into_owned()).collect::<Vec<_>>());
                    }
                }
                OptionalMetadataField::SetStrValue(values) => {
                    for v in values.iter_values() {
                        let v = v.map_err(|e| bad(e.to_string()))?;
                        sets.push(v.values().iter().map(|s| s.value().into_owned()).collect::<Vec<_>>());
                    }
                }
                _ => {}
            }
        }
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let mut signed = meta.iter_signedness();
        let mut charsets = meta.iter_charset();
        let mut kinds = Vec::with_capacity(count);
        for i in 0..count {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad(format!("no type for column {i}")))?;
            let unsigned = ty.is_numeric_type() && signed.next().unwrap_or(false);
            let charset = if ty.is_character_type() {
                charsets.next().transpose().map_err(|e| bad(e.to_string()))?.unwrap_or_default()
            } else {
                0
            };
            let meta_bytes = tme.get_column_metadata(i).unwrap_or(&[]);
            let kind = match ty {
                ColumnType::MYSQL_TYPE_ENUM => Kind::Enum(enums.next().unwrap_or_default()),
                ColumnType::MYSQL_TYPE_SET => Kind::Set(sets.next().unwrap_or_default()),
                ColumnType::MYSQL_TYPE_BIT => {
                    let bits = match meta_bytes {
                        [partial, bytes, ..] => u16::from(*bytes) * 8 + u16::from(*partial),
                        _ => 1,
                    };
                    Kind::Bit(bits)
                }
                _ => {
                    let mut flags = ColumnFlags::empty();
                    flags.set(ColumnFlags::UNSIGNED_FLAG, unsigned);
                    Kind::of(ty, flags, charset, 0)
                }
            };
            kinds.push(kind);
        }
        Ok(Arc::new(TableShape { db, table, columns: names, kinds, key }))
    }

    /// One binlog row image as JSON values, in column order.
    pub(crate) fn binlog_row(&self, mut row: BinlogRow) -> Result<Vec<Json>> {
        let mut out = Vec::with_capacity(self.kinds.len());
        for (i, kind) in self.kinds.iter().enumerate() {
            let value = match row.take(i) {
                None | Some(BinlogValue::Value(Value::NULL)) => Json::Null,
                Some(BinlogValue::Value(v)) => kind.json(v),
                Some(BinlogValue::Jsonb(doc)) => match Json::try_from(doc) {
                    Ok(doc) => Json::String(doc.to_string()),
                    Err(e) => return Err(Error::Binlog(format!("{}: a JSON value: {e}", self.qualified()))),
                },
                Some(BinlogValue::JsonDiff(_)) => {
                    return Err(Error::Config(format!(
                        "{}: partial JSON updates are in the binlog; set binlog_row_value_options='' on the server",
                        self.qualified()
                    )));
                }
            };
            out.push(value);
        }
        Ok(out)
    }

    /// One snapshot row as JSON values, in column order.
    pub(crate) fn snapshot_row(&self, row: mysql_async::Row) -> Vec<Json> {
        let values = row.unwrap();
        values.into_iter().zip(&self.kinds).map(|(v, k)| k.json(v)).collect()
    }

    /// The shape of a snapshot query's result.
    pub(crate) fn from_result(db: &str, table: &str, columns: &[mysql_async::Column], key: &[String]) -> Result<Self> {
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        let kinds = columns
            .iter()
            .map(|c| {
                let bits = u16::try_from(c.column_length()).unwrap_or(u16::MAX);
                Kind::of(c.column_type(), c.flags(), c.character_set(), bits)
            })
            .collect();
        let key = key
            .iter()
            .map(|k| {
                names.iter().position(|n| n == k).ok_or_else(|| {
                    Error::Snapshot(format!("{db}.{table}: key column '{k}' is not in the table's columns"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { db: db.to_owned(), table: table.to_owned(), columns: names, kinds, key })
    }
}
