//! The `mysql` lookup: rows of a MySQL / MariaDB table by key, for lookup
//! joins. Each call reads all the keys asked for with `SELECT … WHERE
//! (keys) IN (…)`, 1,000 keys a statement; the number of keys in a
//! statement is rounded up to a power of two (the first key repeated) so a
//! connection prepares few distinct statements. Transient failures are
//! tried again ([`crate::sql::retrying`]).
//!
//! It talks to the database from a thread of its own (the operator
//! contract is synchronous) and owns nothing else. Values come back as the
//! table's declared column types ([`crate::convert::column`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool, Row, Value};
use rill_streams::Lookup;

use crate::sql::{quote, redact, retrying};
use crate::{Error, Result, convert};

/// Keys per statement at most.
const KEYS_PER_STATEMENT: usize = 1_000;

/// Rows found: each the table's columns in order.
type Rows = Vec<Vec<Value>>;

/// Key values to read the rows of (none: check that the table can be read).
struct Request {
    keys: Vec<Vec<Value>>,
    reply: mpsc::Sender<Result<Rows>>,
}

/// What the connection thread reads.
struct Target {
    url: String,
    select: String,
    keys: Vec<String>,
    table: String,
    max_retries: u32,
}

/// Reads rows of one table by key (see the module docs).
pub struct MysqlLookup {
    schema: SchemaRef,
    table: String,
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for MysqlLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlLookup").field("table", &self.table).finish_non_exhaustive()
    }
}

impl MysqlLookup {
    /// Reads `schema`'s columns of `table` at `url` by the columns `keys`;
    /// fails unless the table can be read with those columns now.
    pub fn new(url: &str, table: &str, schema: SchemaRef, keys: Vec<String>, max_retries: u32) -> Result<Self> {
        mysql_async::Opts::from_url(url)
            .map_err(|e| Error::Config(format!("'{}' is not a MySQL URL: {e}", redact(url))))?;
        if keys.is_empty() {
            return Err(Error::Config(format!("a lookup in '{table}' needs key columns")));
        }
        let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let target = Target {
            url: url.to_owned(),
            select: format!("SELECT {} FROM {}", columns.join(", "), quote(table)),
            keys,
            table: table.to_owned(),
            max_retries,
        };
        let (requests, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("mysql-lookup-{table}"))
            .spawn(move || serve(&target, &incoming))
            .map_err(|e| Error::Config(format!("cannot start the lookup's thread: {e}")))?;
        let lookup = Self { schema, table: table.to_owned(), requests };
        lookup.ask(Vec::new())?;
        Ok(lookup)
    }

    fn ask(&self, keys: Vec<Vec<Value>>) -> Result<Rows> {
        let stopped = || Error::Database("the lookup's connection thread has stopped".into());
        let (reply, answer) = mpsc::channel();
        self.requests.send(Request { keys, reply }).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Lookup for MysqlLookup {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn lookup(&mut self, keys: &RecordBatch) -> rill_streams::Result<RecordBatch> {
        let failed = |e: Error| rill_streams::Error::Lookup(format!("mysql table `{}`: {e}", self.table));
        let mut values = Vec::with_capacity(keys.num_rows());
        for row in 0..keys.num_rows() {
            let key = keys.columns().iter().map(|c| convert::value(c, row)).collect::<Result<Vec<_>>>();
            values.push(key.map_err(failed)?);
        }
        let rows = self.ask(values).map_err(failed)?;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, f) in self.schema.fields().iter().enumerate() {
            let column = convert::column(rows.iter().map(|r| r.get(i).unwrap_or(&Value::NULL)), f.data_type())
                .map_err(|e| failed(Error::Value(format!("column '{}': {e}", f.name()))))?;
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// Answers the requests of one lookup until it is dropped.
fn serve(target: &Target, requests: &mpsc::Receiver<Request>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            for r in requests.iter() {
                let _ = r.reply.send(Err(Error::Database(format!("cannot start a runtime: {e}"))));
            }
            return;
        }
    };
    let pool = Pool::new(target.url.as_str());
    let retries = AtomicU64::new(0);
    let backoff = std::time::Duration::from_millis(100);
    for Request { keys, reply } in requests.iter() {
        let read =
            retrying(target.max_retries, backoff, &retries, &target.table, async || read(&pool, target, &keys).await);
        let _ = reply.send(runtime.block_on(read));
    }
    let _ = runtime.block_on(pool.disconnect());
}

/// The rows for `keys` (no keys: none, after checking the table reads).
async fn read(pool: &Pool, target: &Target, keys: &[Vec<Value>]) -> mysql_async::Result<Rows> {
    let mut conn = pool.get_conn().await?;
    if keys.is_empty() {
        conn.query_drop(format!("{} LIMIT 0", target.select)).await?;
        return Ok(Vec::new());
    }
    let names: Vec<String> = target.keys.iter().map(|k| quote(k)).collect();
    let (column, one) = match names.as_slice() {
        [single] => (single.clone(), "?".to_owned()),
        many => (format!("({})", many.join(", ")), format!("({})", vec!["?"; many.len()].join(", "))),
    };
    let mut rows = Vec::new();
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let size = chunk.len().next_power_of_two().min(KEYS_PER_STATEMENT.next_power_of_two());
        let statement = format!("{} WHERE {column} IN ({})", target.select, vec![one.as_str(); size].join(", "));
        let padded = chunk.iter().chain(std::iter::repeat(&chunk[0])).take(size);
        let params: Vec<Value> = padded.flat_map(|k| k.iter().cloned()).collect();
        let found: Vec<Row> = conn.exec(statement, Params::Positional(params)).await?;
        rows.extend(found.into_iter().map(Row::unwrap));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_with_its_password_hidden() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let e = MysqlLookup::new("postgres://u:secret@h/db", "t", schema, vec!["id".into()], 0).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
