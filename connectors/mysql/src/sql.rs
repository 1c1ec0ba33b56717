//! The sink's connection thread (statements for upserts, deletes and the
//! table), the retry loop of every statement, and the `mysql` connector
//! SQL job files name (a sink, and a table lookup joins read).

use std::sync::Arc;
use std::sync::mpsc;

use datafusion::arrow::datatypes::SchemaRef;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool, TxOpts, Value};
use rill_sql::{Connectors, LOOKUP_OPTIONS, LookupConnector, OptionSpec, Options, SinkConnector, TableDef, opt};
use rill_streams::{Lookup, Sink};

use crate::{Change, Command, Error, MysqlLookup, MysqlSink, MysqlSinkConfig};

/// Rows per statement.
const ROWS_PER_STATEMENT: usize = 500;

/// `url` with its password hidden, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Runs the commands of one sink until it is dropped.
pub(crate) fn serve(config: &MysqlSinkConfig, commands: &mpsc::Receiver<Command>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            for Command::Write { done, .. } in commands.iter() {
                let _ = done.send(Err(Error::Database(format!("cannot start a runtime: {e}"))));
            }
            return;
        }
    };
    let mut pool: Option<Pool> = None;
    let mut created = false;
    for Command::Write { columns, changes, done } in commands.iter() {
        let pool = pool.get_or_insert_with(|| Pool::new(config.url.as_str()));
        let result = runtime.block_on(retrying(
            config.max_retries,
            config.backoff,
            &config.retries,
            &config.table,
            async || {
                if config.auto_create && !created {
                    create(pool, config, &columns).await?;
                    created = true;
                }
                write(pool, config, &columns, &changes).await
            },
        ));
        let _ = done.send(result);
    }
    if let Some(pool) = pool {
        let _ = runtime.block_on(pool.disconnect());
    }
}

/// Runs `attempt` until it succeeds or fails for good: a transient failure
/// is tried again up to `max_retries` times, waiting `backoff`, then twice
/// as long each time (at most 30 s), counted in `retries`.
pub(crate) async fn retrying<T>(
    max_retries: u32,
    backoff: std::time::Duration,
    retries: &std::sync::atomic::AtomicU64,
    table: &str,
    mut attempt: impl AsyncFnMut() -> mysql_async::Result<T>,
) -> Result<T, Error> {
    let mut delay = backoff;
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && tries < max_retries => {
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(table, attempt = tries, error = %e, "mysql statement failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(std::time::Duration::from_secs(30));
                tries += 1;
            }
            Err(e) => return Err(db(e)),
        }
    }
}

fn db(e: mysql_async::Error) -> Error {
    Error::Database(e.to_string())
}

/// Whether another try may succeed: the connection broke (the server
/// restarting, a network hiccup), or the server asks to try again
/// (deadlock, lock wait timeout, too many connections, shutting down).
fn transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => matches!(s.code, 1040 | 1053 | 1205 | 1213),
        _ => false,
    }
}

async fn create(pool: &Pool, config: &MysqlSinkConfig, columns: &[(String, String)]) -> mysql_async::Result<()> {
    let mut defs: Vec<String> = columns.iter().map(|(name, ty)| format!("{} {ty}", quote(name))).collect();
    let key: Vec<String> = config.key.iter().map(|k| quote(k)).collect();
    defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
    let statement = format!("CREATE TABLE IF NOT EXISTS {} ({})", quote(&config.table), defs.join(", "));
    let mut conn = pool.get_conn().await?;
    conn.query_drop(statement).await
}

/// Every change in one transaction: upserts, then deletes (one change per key, so order does not matter).
async fn write(
    pool: &Pool,
    config: &MysqlSinkConfig,
    columns: &[(String, String)],
    changes: &[Change],
) -> mysql_async::Result<()> {
    let mut conn = pool.get_conn().await?;
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let names: Vec<String> = columns.iter().map(|(c, _)| quote(c)).collect();
    let others: Vec<String> = columns
        .iter()
        .filter(|(c, _)| !config.key.contains(c))
        .map(|(c, _)| format!("{0} = VALUES({0})", quote(c)))
        .collect();
    let upserts: Vec<&Vec<Value>> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(v) => Some(v),
            Change::Delete(_) => None,
        })
        .collect();
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
        let head = if others.is_empty() { "INSERT IGNORE INTO" } else { "INSERT INTO" };
        let mut statement = format!(
            "{head} {} ({}) VALUES {}",
            quote(&config.table),
            names.join(", "),
            vec![row.as_str(); chunk.len()].join(", ")
        );
        if !others.is_empty() {
            statement.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", others.join(", ")));
        }
        let params: Vec<Value> = chunk.iter().flat_map(|v| v.iter().cloned()).collect();
        tx.exec_drop(statement, Params::Positional(params)).await?;
    }
    let deletes: Vec<&Vec<Value>> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Delete(k) => Some(k),
            Change::Upsert(_) => None,
        })
        .collect();
    let key: Vec<String> = config.key.iter().map(|k| quote(k)).collect();
    let one = format!("({})", vec!["?"; key.len()].join(", "));
    for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "DELETE FROM {} WHERE ({}) IN ({})",
            quote(&config.table),
            key.join(", "),
            vec![one.as_str(); chunk.len()].join(", ")
        );
        let params: Vec<Value> = chunk.iter().flat_map(|v| v.iter().cloned()).collect();
        tx.exec_drop(statement, Params::Positional(params)).await?;
    }
    tx.commit().await
}

/// Options of `mysql` tables: the connection, the sink's and the lookup's.
const OWN_OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("url", true, &[]),
    opt("table-name", true, &[]),
    opt("username", false, &[]),
    opt("password", false, &[]),
    opt("sink.buffer-flush.max-rows", false, &[]),
    opt("sink.auto-create", false, &["true", "false"]),
    opt("sink.max-retries", false, &[]),
    opt("lookup.max-retries", false, &[]),
];

/// [`OWN_OPTIONS`] and the lookup cache's.
static OPTIONS: std::sync::LazyLock<Vec<OptionSpec>> =
    std::sync::LazyLock::new(|| [OWN_OPTIONS, LOOKUP_OPTIONS].concat());

/// The `mysql` connector SQL job files name: a sink, and a table lookup joins read.
#[derive(Debug, Clone, Copy, Default)]
pub struct MysqlConnector;

/// Adds the MySQL connectors to `connectors`.
pub fn register(connectors: &mut Connectors) {
    connectors.register_sink("mysql", Arc::new(MysqlConnector));
    connectors.register_lookup("mysql", Arc::new(MysqlConnector));
}

/// The connection URL of a table's options (Flink's `jdbc:` form and `username`/`password` too).
fn url(options: &Options) -> String {
    let url = options.get("url").unwrap_or_default();
    let mut url = url.strip_prefix("jdbc:").unwrap_or(url).to_owned();
    if let (Some(user), Some(scheme)) = (options.get("username"), url.find("://")) {
        let password = options.get("password").map(|p| format!(":{p}")).unwrap_or_default();
        url.insert_str(scheme + 3, &format!("{user}{password}@"));
    }
    url
}

impl LookupConnector for MysqlConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS.as_slice()
    }

    fn describe(&self, table: &TableDef, options: &Options) -> String {
        let name = options.get("table-name").unwrap_or(&table.name);
        format!("mysql table `{name}` at {}", redact(&url(options)))
    }

    fn build(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        keys: &[String],
        options: &Options,
    ) -> std::result::Result<Box<dyn Lookup>, String> {
        let max_retries = match options.get("lookup.max-retries") {
            None => 3,
            Some(v) => v.trim().parse().map_err(|_| format!("'lookup.max-retries' = '{v}' is not a whole number"))?,
        };
        let name = options.get("table-name").unwrap_or(&table.name);
        let lookup = MysqlLookup::new(&url(options), name, schema, keys.to_vec(), max_retries)
            .map_err(|e| format!("{}: {e}", self.describe(table, options)))?;
        Ok(Box::new(lookup))
    }
}

impl SinkConnector for MysqlConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS.as_slice()
    }

    fn build(&self, table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        let url = url(options);
        let max_buffered = options.positive("sink.buffer-flush.max-rows")?.unwrap_or(10_000);
        if table.primary_key.is_empty() {
            return Err(format!(
                "the mysql sink writes upserts by key: declare PRIMARY KEY (…) NOT ENFORCED in '{}'",
                table.name
            ));
        }
        let mut config =
            MysqlSinkConfig::new(&url, options.get("table-name").unwrap_or(&table.name), table.primary_key.clone());
        config.max_buffered = max_buffered;
        config.auto_create = options.get("sink.auto-create") == Some("true");
        if let Some(v) = options.get("sink.max-retries") {
            config.max_retries =
                v.trim().parse().map_err(|_| format!("'sink.max-retries' = '{v}' is not a whole number"))?;
        }
        Ok(Box::new(MysqlSink::new(config).map_err(|e| e.to_string())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact("mysql://root:secret@db:3306/test"), "mysql://root:***@db:3306/test");
        assert_eq!(redact("mysql://root@db:3306/test"), "mysql://root@db:3306/test");
    }
}
