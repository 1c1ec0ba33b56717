//! Lookup connectors: tables a lookup join reads by key (`JOIN t FOR
//! SYSTEM_TIME AS OF o.proc_time`) instead of streaming them, and the
//! cache options they all take. What a lookup does is the connector's;
//! the join is `rill-streams`'.

use datafusion::arrow::datatypes::SchemaRef;
use rill_streams::{Lookup, LookupConfig};

use super::{OptionError, OptionSpec, Options, opt};
use crate::ddl::TableDef;

/// A connector whose tables a lookup join reads by key (`JOIN t FOR
/// SYSTEM_TIME AS OF o.proc_time`), as they are when each row arrives.
pub trait LookupConnector: Send + Sync {
    /// The options it takes (`connector` and [`LOOKUP_OPTIONS`] included).
    fn options(&self) -> &'static [OptionSpec];
    /// What a table with these options is, for EXPLAIN (`mysql table `customers``).
    fn describe(&self, table: &TableDef, options: &Options) -> String;
    /// A lookup of rows with `schema` (the table's physical columns) by the
    /// columns `keys`, given its checked options; a table that cannot be
    /// read is refused here, before the job starts.
    fn build(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        keys: &[String],
        options: &Options,
    ) -> std::result::Result<Box<dyn Lookup>, String>;
}

/// The cache options every lookup connector takes (Flink's names; the
/// older `lookup.cache.max-rows` / `lookup.cache.ttl` too).
pub const LOOKUP_OPTIONS: &[OptionSpec] = &[
    opt("lookup.cache", false, &["NONE", "PARTIAL"]),
    opt("lookup.partial-cache.max-rows", false, &[]),
    opt("lookup.partial-cache.expire-after-write", false, &[]),
    opt("lookup.partial-cache.cache-missing-key", false, &["true", "false"]),
    opt("lookup.cache.max-rows", false, &[]),
    opt("lookup.cache.ttl", false, &[]),
];

/// The cache a table's options ask for, in `config`: none by default;
/// `'lookup.cache' = 'PARTIAL'` with a number of keys (and maybe a time
/// after which they are read again) keeps one. A mistake names its option.
pub fn lookup_cache(options: &Options, config: &mut LookupConfig) -> std::result::Result<(), OptionError> {
    let wrong = |key: &str, message: String| OptionError { key: Some(key.to_owned()), message };
    let rows = |key: &str| options.positive(key).map_err(|m| wrong(key, m));
    let ttl = |key: &str| options.duration(key).map_err(|m| wrong(key, m));
    let (max_rows, expire) = match options.get("lookup.cache") {
        Some("PARTIAL") => {
            let max = rows("lookup.partial-cache.max-rows")?.ok_or_else(|| {
                wrong(
                    "lookup.cache",
                    "'lookup.cache' = 'PARTIAL' needs 'lookup.partial-cache.max-rows' (keys kept at most)".to_owned(),
                )
            })?;
            (max, ttl("lookup.partial-cache.expire-after-write")?)
        }
        Some(_) => (0, None),
        None => (rows("lookup.cache.max-rows")?.unwrap_or(0), ttl("lookup.cache.ttl")?),
    };
    config.cache_rows = max_rows;
    config.cache_ttl = expire;
    config.cache_missing = options.get("lookup.partial-cache.cache-missing-key") != Some("false");
    Ok(())
}
