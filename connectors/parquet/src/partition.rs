//! Hive-style partitions: the directory each row belongs in, from column
//! values (`region=eu/`) and/or the date of a time column
//! (`dt=2026-11-25/hr=13/`), and a batch split into one batch per
//! partition. Partition columns are left out of the files' data (readers
//! take them from the path); a time column stays. It owns the path
//! syntax; files are [`crate::files`]'.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::row::{Row, RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::{Error, Result};

/// How rows are spread over directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partitioning {
    /// Columns whose values name directories, outermost first (`region=eu/`).
    pub fields: Vec<String>,
    /// A time column and a chrono pattern of the directories under the
    /// field ones (`dt=%Y-%m-%d/hr=%H`).
    pub time: Option<(String, String)>,
}

/// Hive's escaping of a value in a path: `/`, `=`, `%`, control and a few
/// other characters as `%XX`; an empty or missing value is Hive's default partition.
pub fn escape(value: Option<&str>) -> String {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return "__HIVE_DEFAULT_PARTITION__".to_owned() };
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control()
            || matches!(c, '/' | '\\' | '=' | '%' | ':' | '#' | '?' | '*' | '"' | '\'' | '[' | ']' | '^' | '{')
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Partitioning {
    /// Whether rows are spread at all.
    pub fn is_none(&self) -> bool {
        self.fields.is_empty() && self.time.is_none()
    }

    /// The rows of `batch` by directory (relative, `/`-separated), in
    /// order. Rows are grouped by their partition values (time to the
    /// second: patterns go no finer) first, so a directory name is made
    /// once per group, not once per row.
    fn rows_by_path(&self, batch: &RecordBatch) -> Result<BTreeMap<String, Vec<u32>>> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in &self.fields {
            let column = batch
                .column_by_name(field)
                .ok_or_else(|| Error::Config(format!("partition column '{field}' is not among the rows' columns")))?;
            columns.push(Arc::clone(column));
        }
        let seconds = match &self.time {
            Some((name, _)) => {
                let column = batch.column_by_name(name).ok_or_else(|| {
                    Error::Config(format!("partition time column '{name}' is not among the rows' columns"))
                })?;
                let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .map_err(|e| Error::Config(format!("partition time column '{name}' is not a time: {e}")))?;
                let seconds: Int64Array = ms
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .map(|t| t.map(|t| t.div_euclid(1_000)))
                    .collect();
                columns.push(Arc::new(seconds.clone()));
                Some(seconds)
            }
            None => None,
        };
        let write = |e: datafusion::arrow::error::ArrowError| Error::Write(e.to_string());
        let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())
            .map_err(write)?;
        let keys = converter.convert_columns(&columns).map_err(write)?;
        // Each row's group, and each group's first row.
        let mut group_of: HashMap<Row<'_>, usize> = HashMap::new();
        let mut first_rows = Vec::new();
        let mut groups = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let next = first_rows.len();
            let g = *group_of.entry(keys.row(row)).or_insert(next);
            if g == next {
                first_rows.push(row);
            }
            groups.push(g);
        }
        let formats = self
            .fields
            .iter()
            .zip(&columns)
            .map(|(field, column)| {
                ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                    .map_err(|e| Error::Config(format!("partition column '{field}': {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut paths = Vec::with_capacity(first_rows.len());
        for &row in &first_rows {
            let mut path = String::new();
            for ((field, column), format) in self.fields.iter().zip(&columns).zip(&formats) {
                let value = (!column.is_null(row)).then(|| format.value(row).to_string());
                path.push_str(&format!("{field}={}/", escape(value.as_deref())));
            }
            if let (Some((_, pattern)), Some(seconds)) = (&self.time, &seconds) {
                let when = (!seconds.is_null(row))
                    .then(|| seconds.value(row))
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
                match when {
                    Some(t) => path.push_str(&t.format(pattern).to_string()),
                    None => path.push_str("__HIVE_DEFAULT_PARTITION__"),
                }
                path.push('/');
            }
            paths.push(path);
        }
        // Groups whose directories are the same (seconds of one hour, say) share a list of rows.
        let mut lists: Vec<(String, Vec<u32>)> = Vec::new();
        let mut list_of: HashMap<&str, usize> = HashMap::new();
        let slots: Vec<usize> = paths
            .iter()
            .map(|p| {
                *list_of.entry(p.as_str()).or_insert_with(|| {
                    lists.push((p.clone(), Vec::new()));
                    lists.len() - 1
                })
            })
            .collect();
        for (row, g) in groups.into_iter().enumerate() {
            let row = u32::try_from(row).map_err(|_| Error::Write("a batch of more than 2^32 rows".into()))?;
            lists[slots[g]].1.push(row);
        }
        Ok(lists.into_iter().collect())
    }

    /// `batch` split by directory, partition columns dropped from the data.
    pub fn split(&self, batch: &RecordBatch) -> Result<BTreeMap<String, RecordBatch>> {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|i| !self.fields.iter().any(|f| f == batch.schema().field(*i).name()))
            .collect();
        let data = batch.project(&keep).map_err(|e| Error::Write(e.to_string()))?;
        if self.is_none() {
            return Ok(BTreeMap::from([(String::new(), data)]));
        }
        let mut out = BTreeMap::new();
        for (path, indices) in self.rows_by_path(batch)? {
            let part =
                take_record_batch(&data, &UInt32Array::from(indices)).map_err(|e| Error::Write(e.to_string()))?;
            out.insert(path, part);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("eu"), Some("us/west"), None, Some("eu")])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                // 2026-12-02T10:00Z, 11:00Z, 10:30Z, 2026-12-03T00:00Z
                Arc::new(TimestampMillisecondArray::from(vec![
                    1_796_205_600_000,
                    1_796_209_200_000,
                    1_796_207_400_000,
                    1_796_256_000_000,
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_go_to_field_then_time_directories() {
        let p = Partitioning { fields: vec!["region".into()], time: Some(("ts".into(), "dt=%Y-%m-%d/hr=%H".into())) };
        let parts = p.split(&batch()).unwrap();
        let dirs: Vec<(&str, usize)> = parts.iter().map(|(d, b)| (d.as_str(), b.num_rows())).collect();
        assert_eq!(
            dirs,
            [
                ("region=__HIVE_DEFAULT_PARTITION__/dt=2026-12-02/hr=10/", 1),
                ("region=eu/dt=2026-12-02/hr=10/", 1),
                ("region=eu/dt=2026-12-03/hr=00/", 1),
                ("region=us%2Fwest/dt=2026-12-02/hr=11/", 1),
            ]
        );
        let eu = &parts["region=eu/dt=2026-12-03/hr=00/"];
        let schema = eu.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["n", "ts"], "the partition column lives in the path only");
        assert_eq!(eu.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0), 4);
    }

    #[test]
    fn rows_of_one_directory_from_many_seconds_stay_in_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        // 10:00:00.5, 10:59:59, 11:00:00, 10:00:01, null, 09:59:59.999 (2026-12-02)
        let hour = 1_796_205_600_000;
        let times = [
            Some(hour + 500),
            Some(hour + 3_599_000),
            Some(hour + 3_600_000),
            Some(hour + 1_000),
            None,
            Some(hour - 1),
        ];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..6)),
                Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            ],
        )
        .unwrap();
        let p = Partitioning { fields: vec![], time: Some(("ts".into(), "hr=%H".into())) };
        let parts = p.split(&batch).unwrap();
        let rows = |dir: &str| -> Vec<i64> {
            parts[dir].column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().values().to_vec()
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(rows("hr=10/"), [0, 1, 3]);
        assert_eq!(rows("hr=11/"), [2]);
        assert_eq!(rows("hr=09/"), [5]);
        assert_eq!(rows("__HIVE_DEFAULT_PARTITION__/"), [4]);
    }

    #[test]
    fn unpartitioned_rows_stay_together() {
        let parts = Partitioning::default().split(&batch()).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[""].num_rows(), 4);
    }

    #[test]
    fn a_missing_column_is_named() {
        let p = Partitioning { fields: vec!["nope".into()], time: None };
        let e = p.split(&batch()).unwrap_err().to_string();
        assert!(e.contains("partition column 'nope'"), "{e}");
    }
}
