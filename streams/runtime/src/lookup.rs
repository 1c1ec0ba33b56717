//! The lookup join: each row of a stream meets the rows an external table
//! (a database) holds for its key when the row arrives — in SQL, `JOIN
//! customers FOR SYSTEM_TIME AS OF o.proc_time` on a table whose connector
//! looks rows up instead of streaming them.
//!
//! Keys are looked up a batch at a time: the distinct keys of a probe batch
//! that the cache does not hold go to the table in one [`Lookup::lookup`]
//! call. The cache (optional) keeps each key's rows — none, for a key the
//! table lacks, when missing keys are cached — up to a number of keys and
//! for a time after they were read, dropping the oldest first. A probe row
//! with a null key matches nothing. Without a match an inner join drops the
//! row and a left join keeps it with nulls for the table's columns.
//!
//! What it owns: the cache and the joining. What it must not touch: how a
//! table is queried (the [`Lookup`]'s), or any checkpointed state (it keeps
//! none: the table is read again after a restart).
//!
//! Output rows are the probe columns followed by the table's columns.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{can_cast_types, cast, take, take_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::row::{OwnedRow, Row, RowConverter, SortField};
use datafusion::logical_expr::Expr;

use crate::operator::{Operator, Output};
use crate::rows::FilterRows;
use crate::{Error, Result};

/// A table rows are looked up in by key (a database table, say).
pub trait Lookup: Send {
    /// The columns of the rows it returns.
    fn schema(&self) -> SchemaRef;
    /// The table's rows whose key columns equal one row of `keys` (whose
    /// columns are named and typed as those key columns), in any order,
    /// any number per key.
    fn lookup(&mut self, keys: &RecordBatch) -> Result<RecordBatch>;
}

/// How a lookup join matches and caches.
#[derive(Debug, Clone, Default)]
pub struct LookupConfig {
    /// The table's columns the probe keys are compared with, in order.
    pub table_keys: Vec<String>,
    /// Keep probe rows without a match, with nulls (a left join).
    pub left: bool,
    /// Keys cached at most (0: no cache, every batch asks the table).
    pub cache_rows: usize,
    /// How long a cached key's rows are used after they were read (`None`: until evicted).
    pub cache_ttl: Option<Duration>,
    /// Cache that the table has no row for a key, too.
    pub cache_missing: bool,
    /// A condition on the table's rows: only those it holds for match.
    pub filter: Option<Expr>,
    /// Names for the table's columns in the output (its own when empty).
    pub names: Vec<String>,
}

/// A key's rows as read, and when.
struct Entry {
    read: Instant,
    rows: Vec<OwnedRow>,
}

/// The operator (see the module docs).
pub struct LookupJoin {
    lookup: Box<dyn Lookup>,
    config: LookupConfig,
    output: SchemaRef,
    table: SchemaRef,
    /// The probe's key columns and the type each is compared as.
    probe_keys: Vec<(usize, datafusion::arrow::datatypes::DataType)>,
    table_keys: Vec<usize>,
    key_schema: SchemaRef,
    keys: RowConverter,
    rows: RowConverter,
    /// A row of nulls, for left-join rows without a match.
    nulls: OwnedRow,
    filter: Option<FilterRows>,
    cache: HashMap<OwnedRow, Entry>,
    /// Cached keys in the order they were read (entries read again later are stale here).
    order: VecDeque<(Instant, OwnedRow)>,
    lookups: u64,
}

impl std::fmt::Debug for LookupJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupJoin")
            .field("cached", &self.cache.len())
            .field("lookups", &self.lookups)
            .finish_non_exhaustive()
    }
}

impl LookupJoin {
    /// Joins rows of `probe` (its `keys` columns) with what `lookup` finds
    /// for them (see [`LookupConfig`]).
    pub fn new(probe: &SchemaRef, keys: &[&str], lookup: Box<dyn Lookup>, config: LookupConfig) -> Result<Self> {
        if keys.is_empty() || keys.len() != config.table_keys.len() {
            return Err(Error::Plan("a lookup join pairs the same number (at least one) of key columns".into()));
        }
        let table = lookup.schema();
        let mut probe_keys = Vec::new();
        let mut table_keys = Vec::new();
        for (p, t) in keys.iter().zip(&config.table_keys) {
            let pi = probe.index_of(p).map_err(|_| Error::Plan(format!("lookup join column '{p}' does not exist")))?;
            let ti = table
                .index_of(t)
                .map_err(|_| Error::Plan(format!("the looked-up table has no column '{t}' to join on")))?;
            let (pt, tt) = (probe.field(pi).data_type(), table.field(ti).data_type());
            if !can_cast_types(pt, tt) {
                return Err(Error::Plan(format!(
                    "lookup join keys {p} ({pt}) and {t} ({tt}) cannot be compared; cast one first"
                )));
            }
            probe_keys.push((pi, tt.clone()));
            table_keys.push(ti);
        }
        if !config.names.is_empty() && config.names.len() != table.fields().len() {
            return Err(Error::Plan("a lookup join names each of the table's columns or none".into()));
        }
        let mut fields: Vec<Field> = probe.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, f) in table.fields().iter().enumerate() {
            let name = config.names.get(i).unwrap_or(f.name());
            if fields.iter().any(|p| p.name() == name) {
                return Err(Error::Plan(format!("column '{name}' is on both sides; rename one first")));
            }
            fields.push(Field::new(name, f.data_type().clone(), f.is_nullable() || config.left));
        }
        let key_schema = Arc::new(Schema::new(
            table_keys.iter().map(|i| table.field(*i).as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
        ));
        let keys =
            RowConverter::new(key_schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        let rows = RowConverter::new(table.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        let null_columns: Vec<ArrayRef> = table.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect();
        let nulls = rows.convert_columns(&null_columns)?.row(0).owned();
        let filter = config.filter.as_ref().map(|e| FilterRows::new(e, &table)).transpose()?;
        Ok(Self {
            lookup,
            output: Arc::new(Schema::new(fields)),
            table,
            probe_keys,
            table_keys,
            key_schema,
            keys,
            rows,
            nulls,
            filter,
            cache: HashMap::new(),
            order: VecDeque::new(),
            lookups: 0,
            config,
        })
    }

    /// Lookups made so far (each one call of [`Lookup::lookup`]).
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    fn fresh(&self, entry: &Entry, now: Instant) -> bool {
        self.config.cache_ttl.is_none_or(|ttl| now.duration_since(entry.read) < ttl)
    }

    /// The rows the table has for `keys` (distinct, none null), by key.
    fn fetch(&mut self, keys: RecordBatch) -> Result<HashMap<OwnedRow, Vec<OwnedRow>>> {
        self.lookups += 1;
        let found = self.lookup.lookup(&keys)?;
        if found.schema().fields().len() != self.table.fields().len()
            || found.schema().fields().iter().zip(self.table.fields()).any(|(a, b)| a.data_type() != b.data_type())
        {
            return Err(Error::Plan(format!(
                "a lookup returned columns {:?}, the table has {:?}",
                found.schema().fields().iter().map(|f| f.data_type().to_string()).collect::<Vec<_>>(),
                self.table.fields().iter().map(|f| f.data_type().to_string()).collect::<Vec<_>>()
            )));
        }
        let found = match &self.filter {
            Some(f) => f.apply(&RecordBatch::try_new(Arc::clone(&self.table), found.columns().to_vec())?)?,
            None => found,
        };
        let key_columns: Vec<ArrayRef> = self.table_keys.iter().map(|i| Arc::clone(found.column(*i))).collect();
        let found_keys = self.keys.convert_columns(&key_columns)?;
        let found_rows = self.rows.convert_columns(found.columns())?;
        let mut by_key: HashMap<OwnedRow, Vec<OwnedRow>> = HashMap::new();
        let asked = self.keys.convert_columns(keys.columns())?;
        for k in asked.iter() {
            by_key.entry(k.owned()).or_default();
        }
        for r in 0..found.num_rows() {
            // Rows for keys not asked about (a database comparing case-insensitively, say) are left out.
            if let Some(rows) = by_key.get_mut(&found_keys.row(r).owned()) {
                rows.push(found_rows.row(r).owned());
            }
        }
        Ok(by_key)
    }

    /// Keeps `fetched` in the cache, dropping the oldest keys beyond its size.
    fn remember(&mut self, fetched: HashMap<OwnedRow, Vec<OwnedRow>>, now: Instant) {
        for (key, rows) in fetched {
            if rows.is_empty() && !self.config.cache_missing {
                self.cache.remove(&key);
                continue;
            }
            self.order.push_back((now, key.clone()));
            self.cache.insert(key, Entry { read: now, rows });
        }
        while self.cache.len() > self.config.cache_rows {
            let Some((read, key)) = self.order.pop_front() else { break };
            if self.cache.get(&key).is_some_and(|e| e.read == read) {
                self.cache.remove(&key);
            }
        }
        // Stale positions (keys read again or dropped) are let go once they pile up.
        if self.order.len() > 2 * self.config.cache_rows.max(1024) {
            let cache = &self.cache;
            self.order.retain(|(read, key)| cache.get(key).is_some_and(|e| e.read == *read));
        }
    }
}

impl Operator for LookupJoin {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn process(&mut self, _port: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        if u32::try_from(n).is_err() {
            return Err(Error::Plan("a batch of over 2^32 rows".into()));
        }
        let mut key_columns = Vec::with_capacity(self.probe_keys.len());
        for (i, t) in &self.probe_keys {
            let c = batch.column(*i);
            key_columns.push(if c.data_type() == t { Arc::clone(c) } else { cast(c, t)? });
        }
        let keys = self.keys.convert_columns(&key_columns)?;
        // Each row's distinct key (none for a null key), and each key's first row.
        let mut distinct: HashMap<Row<'_>, usize> = HashMap::new();
        let mut first_rows: Vec<usize> = Vec::new();
        let mut key_of: Vec<Option<usize>> = Vec::with_capacity(n);
        for row in 0..n {
            if key_columns.iter().any(|c| c.is_null(row)) {
                key_of.push(None);
                continue;
            }
            let next = first_rows.len();
            let k = *distinct.entry(keys.row(row)).or_insert(next);
            if k == next {
                first_rows.push(row);
            }
            key_of.push(Some(k));
        }
        let owned: Vec<OwnedRow> = first_rows.iter().map(|r| keys.row(*r).owned()).collect();
        // The keys the cache cannot answer, asked for in one lookup.
        let now = Instant::now();
        let wanted: Vec<u32> = first_rows
            .iter()
            .zip(&owned)
            .filter(|(_, k)| !self.cache.get(*k).is_some_and(|e| self.fresh(e, now)))
            .map(|(r, _)| *r as u32)
            .collect();
        let fetched = if wanted.is_empty() {
            HashMap::new()
        } else {
            let picks = UInt32Array::from(wanted);
            let columns = key_columns.iter().map(|c| take(c, &picks, None)).collect::<Result<Vec<_>, _>>()?;
            self.fetch(RecordBatch::try_new(Arc::clone(&self.key_schema), columns)?)?
        };
        let matches: Vec<&[OwnedRow]> = owned
            .iter()
            .map(|k| fetched.get(k).or_else(|| self.cache.get(k).map(|e| &e.rows)).map_or(&[][..], Vec::as_slice))
            .collect();
        let mut probe_rows: Vec<u32> = Vec::new();
        let mut table_rows: Vec<Row<'_>> = Vec::new();
        for (row, key) in key_of.iter().enumerate() {
            let found = key.map_or(&[][..], |k| matches[k]);
            for m in found {
                probe_rows.push(row as u32);
                table_rows.push(m.row());
            }
            if found.is_empty() && self.config.left {
                probe_rows.push(row as u32);
                table_rows.push(self.nulls.row());
            }
        }
        if !probe_rows.is_empty() {
            let probe = take_record_batch(&batch, &UInt32Array::from(probe_rows))?;
            let mut columns = probe.columns().to_vec();
            columns.extend(self.rows.convert_rows(table_rows)?);
            out.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        }
        // Cached only now: a cache smaller than this batch's keys must not lose rows the batch needs.
        if self.config.cache_rows > 0 {
            self.remember(fetched, now);
        }
        Ok(())
    }

    fn state_size(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use datafusion::arrow::array::{AsArray, Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use datafusion::prelude::{col, lit};

    use super::*;

    /// The table's rows, shared with the test.
    type Rows = Arc<Mutex<Vec<(i64, String)>>>;
    /// How many keys each lookup asked for.
    type Asked = Arc<Mutex<Vec<usize>>>;

    /// A table in memory that counts the keys it was asked for.
    struct Table {
        rows: Rows,
        asked: Asked,
    }

    fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, false)]))
    }

    impl Lookup for Table {
        fn schema(&self) -> SchemaRef {
            table_schema()
        }
        fn lookup(&mut self, keys: &RecordBatch) -> Result<RecordBatch> {
            let wanted: Vec<i64> = keys.column(0).as_primitive::<Int64Type>().values().to_vec();
            self.asked.lock().unwrap().push(wanted.len());
            let rows: Vec<(i64, String)> =
                self.rows.lock().unwrap().iter().filter(|r| wanted.contains(&r.0)).cloned().collect();
            Ok(RecordBatch::try_new(
                table_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
                ],
            )?)
        }
    }

    fn probe(ids: &[Option<i32>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("customer", DataType::Int32, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(ids.to_vec()))]).unwrap()
    }

    fn join(config: LookupConfig) -> (LookupJoin, Rows, Asked) {
        let rows = Arc::new(Mutex::new(vec![(1, "ann".to_owned()), (2, "bob".to_owned()), (2, "bo".to_owned())]));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let table = Table { rows: Arc::clone(&rows), asked: Arc::clone(&asked) };
        let config = LookupConfig { table_keys: vec!["id".into()], ..config };
        let j = LookupJoin::new(&probe(&[]).schema(), &["customer"], Box::new(table), config).unwrap();
        (j, rows, asked)
    }

    fn run(j: &mut LookupJoin, ids: &[Option<i32>]) -> Vec<(Option<i32>, Option<String>)> {
        let mut out = Output::default();
        j.process(0, probe(ids), &mut out).unwrap();
        let mut got = Vec::new();
        for b in &out.rows {
            let c = b.column(0).as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let n = b.column(2).as_string::<i32>();
            for r in 0..b.num_rows() {
                got.push((c.is_valid(r).then(|| c.value(r)), n.is_valid(r).then(|| n.value(r).to_owned())));
            }
        }
        got
    }

    #[test]
    fn an_inner_join_keeps_matches_only_and_asks_once_per_distinct_key() {
        let (mut j, _, asked) = join(LookupConfig::default());
        let got = run(&mut j, &[Some(1), Some(2), Some(1), Some(9), None]);
        assert_eq!(
            got,
            vec![
                (Some(1), Some("ann".into())),
                (Some(2), Some("bob".into())),
                (Some(2), Some("bo".into())),
                (Some(1), Some("ann".into()))
            ]
        );
        assert_eq!(*asked.lock().unwrap(), vec![3], "keys 1, 2 and 9 in one call; the null key never");
        run(&mut j, &[Some(1)]);
        assert_eq!(asked.lock().unwrap().len(), 2, "without a cache every batch asks");
    }

    #[test]
    fn a_left_join_keeps_rows_without_a_match_with_nulls() {
        let (mut j, _, _) = join(LookupConfig { left: true, ..LookupConfig::default() });
        let got = run(&mut j, &[Some(9), None, Some(1)]);
        assert_eq!(got, vec![(Some(9), None), (None, None), (Some(1), Some("ann".into()))]);
        assert!(j.schema().field(2).is_nullable());
    }

    #[test]
    fn the_cache_answers_and_evicts_the_oldest_keys() {
        let config = LookupConfig { cache_rows: 2, cache_missing: true, ..LookupConfig::default() };
        let (mut j, rows, asked) = join(config);
        run(&mut j, &[Some(1)]);
        run(&mut j, &[Some(9)]);
        rows.lock().unwrap()[0].1 = "anne".into();
        assert_eq!(run(&mut j, &[Some(1), Some(9)]), vec![(Some(1), Some("ann".into()))], "cached, missing key too");
        assert_eq!(asked.lock().unwrap().len(), 2);
        // Key 2 pushes out key 1, the oldest.
        run(&mut j, &[Some(2)]);
        assert_eq!(j.state_size(), 2);
        assert_eq!(run(&mut j, &[Some(1)]), vec![(Some(1), Some("anne".into()))], "evicted, so read again");
        assert_eq!(asked.lock().unwrap().len(), 4);
    }

    #[test]
    fn a_cache_smaller_than_a_batch_loses_no_match() {
        let config = LookupConfig { cache_rows: 1, ..LookupConfig::default() };
        let (mut j, _, asked) = join(config);
        let got = run(&mut j, &[Some(1), Some(2), Some(1)]);
        assert_eq!(got.len(), 4, "key 1 twice and key 2's two rows: {got:?}");
        assert_eq!(j.state_size(), 1);
        assert_eq!(asked.lock().unwrap().len(), 1);
    }

    #[test]
    fn expired_rows_are_read_again() {
        // Rows older than the TTL are not used: with a TTL of zero, none are.
        let config = LookupConfig { cache_rows: 10, cache_ttl: Some(Duration::ZERO), ..LookupConfig::default() };
        let (mut j, rows, asked) = join(config);
        run(&mut j, &[Some(1)]);
        rows.lock().unwrap()[0].1 = "anne".into();
        assert_eq!(run(&mut j, &[Some(1)]), vec![(Some(1), Some("anne".into()))]);
        assert_eq!(asked.lock().unwrap().len(), 2);
    }

    #[test]
    fn missing_keys_are_asked_again_unless_cached() {
        let config = LookupConfig { cache_rows: 10, ..LookupConfig::default() };
        let (mut j, _, asked) = join(config);
        run(&mut j, &[Some(9), Some(1)]);
        run(&mut j, &[Some(9), Some(1)]);
        assert_eq!(*asked.lock().unwrap(), vec![2, 1], "key 1 cached, key 9 asked again");
    }

    #[test]
    fn a_condition_on_the_table_limits_its_matches() {
        let config = LookupConfig { filter: Some(col("name").not_eq(lit("bo"))), ..LookupConfig::default() };
        let (mut j, _, _) = join(config);
        assert_eq!(run(&mut j, &[Some(2)]), vec![(Some(2), Some("bob".into()))]);
    }

    #[test]
    fn keys_of_types_that_cannot_be_compared_are_refused() {
        let table = Table { rows: Arc::default(), asked: Arc::default() };
        let schema = Arc::new(Schema::new(vec![Field::new("customer", DataType::Binary, true)]));
        let config = LookupConfig { table_keys: vec!["id".into()], ..LookupConfig::default() };
        let e = LookupJoin::new(&schema, &["customer"], Box::new(table), config).unwrap_err();
        assert!(e.to_string().contains("cannot be compared"), "{e}");
    }
}
