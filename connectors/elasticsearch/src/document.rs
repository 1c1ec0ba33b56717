//! From rows to bulk actions: the index a row goes to (a fixed name or a
//! pattern such as `logs-{ts|yyyy.MM.dd}`), its document id (the key's
//! values joined by a delimiter), and its JSON document. It owns the
//! pattern syntax and the row encoding; it does no I/O.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rill_streams::OP_COLUMN;
use rill_streams::changelog::{DELETE, UPDATE_BEFORE};

use crate::{Error, Result};

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Taken as written.
    Text(String),
    /// A column's value; with a date format, the date of a time column.
    Field { name: String, format: Option<String> },
    /// The date when the row is written, in this format.
    Now(String),
}

/// Where rows go: `orders`, `logs-{yyyy.MM.dd}` (the day the row is
/// written), `logs-{ts|yyyy.MM.dd}` (the day of column `ts`), `{region}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    parts: Vec<Part>,
}

fn chrono_format(java: &str) -> Result<String> {
    rill_sql::date_pattern(java).map_err(Error::Config)
}

impl IndexPattern {
    /// Parses `text`, checking that the columns it names are among `columns`.
    pub fn parse(text: &str, columns: &[&str]) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| Error::Config(format!("index '{text}': '{{' without '}}'")))?;
            let inner = rest[open + 1..close].trim();
            let part = match inner.split_once('|') {
                Some((name, format)) => {
                    Part::Field { name: name.trim().to_owned(), format: Some(chrono_format(format.trim())?) }
                }
                None if columns.contains(&inner) => Part::Field { name: inner.to_owned(), format: None },
                None if inner.starts_with(['y', 'M', 'd', 'H']) => Part::Now(chrono_format(inner)?),
                None => {
                    return Err(Error::Config(format!(
                        "index '{text}': '{{{inner}}}' is neither a column ({}) nor a date format",
                        columns.join(", ")
                    )));
                }
            };
            if let Part::Field { name, .. } = &part
                && !columns.contains(&name.as_str())
            {
                return Err(Error::Config(format!(
                    "index '{text}': no column '{name}'; columns: {}",
                    columns.join(", ")
                )));
            }
            parts.push(part);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(Error::Config("'index' is empty".into()));
        }
        Ok(Self { parts })
    }

    /// The index of every row of `batch`.
    fn resolve(&self, batch: &RecordBatch, now_ms: i64) -> Result<Vec<String>> {
        let rows = batch.num_rows();
        if let [Part::Text(fixed)] = self.parts.as_slice() {
            return Ok(vec![fixed.clone(); rows]);
        }
        let mut names = vec![String::new(); rows];
        for part in &self.parts {
            match part {
                Part::Text(t) => names.iter_mut().for_each(|n| n.push_str(t)),
                Part::Now(format) => {
                    let day = date(now_ms, format);
                    names.iter_mut().for_each(|n| n.push_str(&day));
                }
                Part::Field { name, format } => {
                    let column =
                        batch.column_by_name(name).ok_or_else(|| Error::Config(format!("no column '{name}'")))?;
                    match format {
                        Some(format) => {
                            let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
                                .map_err(|e| Error::Config(format!("index column '{name}' is not a time: {e}")))?;
                            let ms = ms.as_primitive::<TimestampMillisecondType>();
                            for (row, n) in names.iter_mut().enumerate() {
                                if ms.is_null(row) {
                                    n.push_str("null");
                                } else {
                                    n.push_str(&date(ms.value(row), format));
                                }
                            }
                        }
                        None => {
                            let values = formatter(column)?;
                            for (row, n) in names.iter_mut().enumerate() {
                                n.push_str(&values.value(row).to_string());
                            }
                        }
                    }
                }
            }
        }
        Ok(names)
    }
}

fn date(ms: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "invalid-date".to_owned(), |t| t.format(format).to_string())
}

fn formatter(column: &dyn Array) -> Result<ArrayFormatter<'_>> {
    ArrayFormatter::try_new(column, &FormatOptions::default().with_null("null"))
        .map_err(|e| Error::Config(format!("cannot format a {} as text: {e}", column.data_type())))
}

/// One entry of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Action {
    /// The action line (`{"index":{…}}` or `{"delete":{…}}`).
    pub meta: String,
    /// The document line of an index action.
    pub doc: Option<String>,
}

impl Action {
    /// Bytes it adds to a request.
    pub fn len(&self) -> usize {
        self.meta.len() + 1 + self.doc.as_ref().map_or(0, |d| d.len() + 1)
    }

    /// What a dead letter of it carries: the document, or the action of a delete.
    pub fn body(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.doc.clone().unwrap_or_else(|| self.meta.clone()))
    }
}

/// How rows become actions.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    pub index: IndexPattern,
    pub key: Vec<String>,
    pub delimiter: String,
}

fn meta(action: &str, index: &str, id: Option<&str>) -> String {
    let mut target = serde_json::Map::new();
    target.insert("_index".into(), serde_json::Value::String(index.to_owned()));
    if let Some(id) = id {
        target.insert("_id".into(), serde_json::Value::String(id.to_owned()));
    }
    let mut line = serde_json::Map::new();
    line.insert(action.to_owned(), serde_json::Value::Object(target));
    serde_json::Value::Object(line).to_string()
}

impl Encoder {
    /// The actions for `batch`: an index per row, a delete per `-D` row,
    /// nothing for `-U` rows (the `+U` after them carries the new row).
    pub fn encode(&self, batch: &RecordBatch, now_ms: i64) -> Result<Vec<Action>> {
        let schema: SchemaRef = batch.schema();
        let op = schema.index_of(OP_COLUMN).ok().map(|i| batch.column(i).as_string::<i32>().clone());
        let data: Vec<usize> = (0..schema.fields().len()).filter(|i| schema.field(*i).name() != OP_COLUMN).collect();
        let rows = batch.project(&data).map_err(|e| Error::Config(e.to_string()))?;
        let mut docs = Vec::with_capacity(rows.num_rows());
        {
            let mut writer = LineDelimitedWriter::new(&mut docs);
            writer.write(&rows).map_err(|e| Error::Config(format!("rows to JSON: {e}")))?;
            writer.finish().map_err(|e| Error::Config(format!("rows to JSON: {e}")))?;
        }
        let docs = String::from_utf8(docs).map_err(|e| Error::Config(format!("rows to JSON: {e}")))?;
        let indexes = self.index.resolve(&rows, now_ms)?;
        let keys = self
            .key
            .iter()
            .map(|k| rows.column_by_name(k).ok_or_else(|| Error::Config(format!("no key column '{k}' in the rows"))))
            .collect::<Result<Vec<_>>>()?;
        let keys = keys.iter().map(|c| formatter(c.as_ref())).collect::<Result<Vec<_>>>()?;
        let mut actions = Vec::with_capacity(rows.num_rows());
        for (row, doc) in docs.lines().enumerate() {
            let kind = op.as_ref().map(|o| o.value(row));
            if kind == Some(UPDATE_BEFORE) {
                continue;
            }
            let id = (!keys.is_empty())
                .then(|| keys.iter().map(|k| k.value(row).to_string()).collect::<Vec<_>>().join(&self.delimiter));
            let index = &indexes[row];
            if kind == Some(DELETE) {
                let Some(id) = id else {
                    return Err(Error::Config("a delete reached a sink without a primary key".into()));
                };
                actions.push(Action { meta: meta("delete", index, Some(&id)), doc: None });
            } else {
                actions.push(Action { meta: meta("index", index, id.as_deref()), doc: Some(doc.to_owned()) });
            }
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(op: bool) -> RecordBatch {
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ];
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 2])),
            Arc::new(StringArray::from(vec![Some("eu"), None, Some("us")])),
            // 2026-12-02T10:00:00Z, 2026-12-03T00:00:00Z, the same.
            Arc::new(TimestampMillisecondArray::from(vec![1_796_205_600_000, 1_796_256_000_000, 1_796_256_000_000])),
        ];
        if op {
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from(vec!["+I", "-U", "-D"])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    const COLUMNS: &[&str] = &["id", "region", "ts"];

    #[test]
    fn patterns_name_columns_dates_or_both() {
        let b = batch(false);
        let p = IndexPattern::parse("logs-{ts|yyyy.MM.dd}", COLUMNS).unwrap();
        assert_eq!(p.resolve(&b, 0).unwrap(), ["logs-2026.12.02", "logs-2026.12.03", "logs-2026.12.03"]);
        let p = IndexPattern::parse("by-{region}", COLUMNS).unwrap();
        assert_eq!(p.resolve(&b, 0).unwrap(), ["by-eu", "by-null", "by-us"]);
        let p = IndexPattern::parse("logs-{yyyy.MM}", COLUMNS).unwrap();
        assert_eq!(p.resolve(&b, 1_796_205_600_000).unwrap(), ["logs-2026.12"; 3]);
        assert_eq!(IndexPattern::parse("orders", COLUMNS).unwrap().resolve(&b, 0).unwrap(), ["orders"; 3]);
    }

    #[test]
    fn pattern_mistakes_say_what_is_wrong() {
        let e = IndexPattern::parse("logs-{nope}", COLUMNS).unwrap_err().to_string();
        assert!(e.contains("'{nope}' is neither a column (id, region, ts)"), "{e}");
        let e = IndexPattern::parse("logs-{ts|yyyy.QQ}", COLUMNS).unwrap_err().to_string();
        assert!(e.contains("'Q' is not one of"), "{e}");
        let e = IndexPattern::parse("logs-{ts", COLUMNS).unwrap_err().to_string();
        assert!(e.contains("without"), "{e}");
        let e = IndexPattern::parse("x-{other|yyyy}", COLUMNS).unwrap_err().to_string();
        assert!(e.contains("no column 'other'"), "{e}");
    }

    #[test]
    fn changelog_rows_become_index_and_delete_actions() {
        let encoder = Encoder {
            index: IndexPattern::parse("t", COLUMNS).unwrap(),
            key: vec!["id".into(), "region".into()],
            delimiter: "_".into(),
        };
        let actions = encoder.encode(&batch(true), 0).unwrap();
        assert_eq!(actions.len(), 2, "the -U row gives nothing: {actions:?}");
        assert_eq!(actions[0].meta, r#"{"index":{"_id":"1_eu","_index":"t"}}"#);
        let doc: serde_json::Value = serde_json::from_str(actions[0].doc.as_deref().unwrap()).unwrap();
        assert_eq!(doc["id"], 1);
        assert_eq!(doc["region"], "eu");
        assert!(doc.get(OP_COLUMN).is_none(), "the change kind is not a field of the document");
        assert_eq!(actions[1].meta, r#"{"delete":{"_id":"2_us","_index":"t"}}"#);
        assert_eq!(actions[1].doc, None);
    }

    #[test]
    fn rows_without_a_key_get_ids_from_the_server() {
        let encoder = Encoder { index: IndexPattern::parse("t", COLUMNS).unwrap(), key: vec![], delimiter: "_".into() };
        let actions = encoder.encode(&batch(false), 0).unwrap();
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[0].meta, r#"{"index":{"_index":"t"}}"#);
    }
}
