//! The connectors a table can name in `WITH ('connector' = …)`: the
//! options each takes (checked before anything runs, with the valid ones
//! named on a mistake) and what each builds. `rocketmq` reads a topic of
//! Rill's broker or any RocketMQ 5 endpoint, `datagen` makes rows up;
//! `print`, `blackhole` and `filesystem` take results. Crates with more
//! connectors add them with [`Connectors::register_source`],
//! [`Connectors::register_sink`] and [`Connectors::register_lookup`] (tables
//! a lookup join reads by key).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::LineDelimitedWriter;
use rill_streams::{JsonFileSink, Sink, Source};

mod lookup;

pub use lookup::{LOOKUP_OPTIONS, LookupConnector, lookup_cache};

use crate::Result;
use crate::ddl::TableDef;
use crate::script::Position;

/// What a connector can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    /// Rows come from it.
    Source,
    /// Rows go to it.
    Sink,
}

/// One option a connector takes.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// Its name.
    pub key: &'static str,
    /// Whether a table must give it.
    pub required: bool,
    /// The values it accepts (any when empty).
    pub values: &'static [&'static str],
}

/// An option spec: its key, whether it is required, the values it takes (any when empty).
pub const fn opt(key: &'static str, required: bool, values: &'static [&'static str]) -> OptionSpec {
    OptionSpec { key, required, values }
}

/// Options of the `rocketmq` source.
pub(crate) const ROCKETMQ: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("endpoints", true, &[]),
    opt("topic", true, &[]),
    opt("consumer-group", true, &[]),
    opt("tag", false, &[]),
    opt("sql", false, &[]),
    opt("format", false, &["json", "csv", "raw", "debezium-json"]),
    opt("csv.field-delimiter", false, &[]),
    opt("scan.startup.mode", false, &["earliest", "latest", "timestamp", "group-offsets"]),
    opt("scan.startup.timestamp-millis", false, &[]),
    opt("scan.bounded", false, &["true", "false"]),
];

/// A source connector other than `rocketmq` (whose reading the runner owns).
pub trait SourceConnector: Send + Sync {
    /// The options it takes (`connector` included).
    fn options(&self) -> &'static [OptionSpec];
    /// Whether a table with these options has an end (a job reading only such tables stops there).
    fn bounded(&self, options: &Options) -> bool;
    /// Whether its rows are a changelog (a last `__op` column of `+I`/`-U`/`+U`/`-D`).
    fn changelog(&self) -> bool {
        false
    }
    /// The column its sources add after the table's for event time when the
    /// table declares no TIMESTAMP column (none: such a table is an error).
    fn implicit_time(&self) -> Option<&'static str> {
        None
    }
    /// A source of rows with `schema` (the table's physical columns) for `table`, given its checked options.
    fn build(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        options: &Options,
    ) -> std::result::Result<Box<dyn Source>, String>;
}

/// A date pattern in Java's letters (as Elasticsearch index patterns and
/// Flink's `DATE_FORMAT` write them: `yyyy-MM-dd`, `HH`, text in single
/// quotes taken as it is) in chrono's (`%Y-%m-%d`, `%H`); other letters
/// are refused, naming the letter.
pub fn date_pattern(java: &str) -> std::result::Result<String, String> {
    const TOKENS: &[(&str, &str)] =
        &[("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")];
    let mut out = String::new();
    let mut rest = java;
    'next: while let Some(c) = rest.chars().next() {
        for (token, spec) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(spec);
                rest = after;
                continue 'next;
            }
        }
        if c == '\'' {
            let Some(end) = rest[1..].find('\'') else {
                return Err(format!("date format '{java}': a quote without its end"));
            };
            out.push_str(&rest[1..=end].replace('%', "%%"));
            rest = &rest[end + 2..];
            continue;
        }
        if c.is_ascii_alphabetic() {
            return Err(format!("date format '{java}': '{c}' is not one of yyyy, yy, MM, dd, HH, mm, ss"));
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// `2mb`, `512kb`, `1gb` or plain bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim().to_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().ok()?;
    let scale = match unit.trim() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|n| *n > 0)
}

/// A sink connector.
pub trait SinkConnector: Send + Sync {
    /// The options it takes (`connector` included).
    fn options(&self) -> &'static [OptionSpec];
    /// A sink for rows of `table`, given its checked options.
    fn build(&self, table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String>;
}

/// A table's options after checking, `${VAR}`s filled in.
#[derive(Debug, Clone, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key` as a positive whole number, if given.
    pub fn positive(&self, key: &str) -> std::result::Result<Option<usize>, String> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("'{key}' = '{v}' is not a positive whole number"))
            })
            .transpose()
    }

    /// The value of `key` as a length of time (`500 ms`, `10 s`, `5 min`), if given.
    pub fn duration(&self, key: &str) -> std::result::Result<Option<std::time::Duration>, String> {
        self.get(key)
            .map(|v| {
                crate::job::parse_duration(v)
                    .ok_or_else(|| format!("'{key}' = '{v}' is not a duration such as '1 s' or '500 ms'"))
            })
            .transpose()
    }
}

/// The connectors SQL can name.
#[derive(Clone)]
pub struct Connectors {
    sources: BTreeMap<String, Arc<dyn SourceConnector>>,
    sinks: BTreeMap<String, Arc<dyn SinkConnector>>,
    lookups: BTreeMap<String, Arc<dyn LookupConnector>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .field("lookups", &self.lookups.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Connectors {
    fn default() -> Self {
        let mut c = Self { sources: BTreeMap::new(), sinks: BTreeMap::new(), lookups: BTreeMap::new() };
        c.register_source("datagen", Arc::new(crate::datagen::DataGenConnector));
        c.register_sink("print", Arc::new(Print));
        c.register_sink("blackhole", Arc::new(Blackhole));
        c.register_sink("filesystem", Arc::new(Filesystem));
        c
    }
}

impl Connectors {
    /// Adds (or replaces) the source connector `name` (`rocketmq` cannot be replaced).
    pub fn register_source(&mut self, name: &str, connector: Arc<dyn SourceConnector>) {
        self.sources.insert(name.to_owned(), connector);
    }

    /// The source connector `name`, unless it is `rocketmq`'s.
    pub(crate) fn source_connector(&self, name: &str) -> Option<&Arc<dyn SourceConnector>> {
        if name == "rocketmq" { None } else { self.sources.get(name) }
    }

    /// Adds (or replaces) the sink connector `name`.
    pub fn register_sink(&mut self, name: &str, connector: Arc<dyn SinkConnector>) {
        self.sinks.insert(name.to_owned(), connector);
    }

    /// Adds (or replaces) the lookup connector `name`.
    pub fn register_lookup(&mut self, name: &str, connector: Arc<dyn LookupConnector>) {
        self.lookups.insert(name.to_owned(), connector);
    }

    /// The lookup connector `table` names, unless the same name also streams rows.
    pub(crate) fn lookup_connector(&self, table: &TableDef) -> Option<Arc<dyn LookupConnector>> {
        let (name, _) = table.option("connector")?;
        if self.sources.contains_key(name) || name == "rocketmq" {
            return None;
        }
        self.lookups.get(name).cloned()
    }

    /// The checked options of `table`, read by lookup connector `connector`.
    pub(crate) fn lookup_options(
        &self,
        table: &TableDef,
        connector: &dyn LookupConnector,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Options> {
        let name = table.option("connector").map_or("", |(n, _)| n);
        check(table, connector.options(), name, vars)
    }

    /// The options of the sink connector `name`, if there is one.
    pub fn sink_options(&self, name: &str) -> Option<&'static [OptionSpec]> {
        self.sinks.get(name).map(|c| c.options())
    }

    /// The sink connectors' names.
    pub fn sink_names(&self) -> Vec<&str> {
        self.sinks.keys().map(String::as_str).collect()
    }

    /// The names SQL can give, for messages.
    fn names(&self, kind: ConnectorKind) -> Vec<String> {
        match kind {
            ConnectorKind::Source => {
                let mut names: Vec<String> = self.sources.keys().cloned().collect();
                names.push("rocketmq".to_owned());
                names.sort();
                names
            }
            ConnectorKind::Sink => self.sinks.keys().cloned().collect(),
        }
    }

    /// The connector `table` names, checked for `kind`.
    fn connector<'a>(&self, table: &'a TableDef, kind: ConnectorKind) -> Result<(&'a str, &'a Position)> {
        let (name, at) = table.option("connector").ok_or_else(|| crate::Error::At {
            at: table.at.clone(),
            message: format!("table '{}' has no 'connector' option in its WITH (…)", table.name),
        })?;
        let known = self.names(kind);
        if !known.iter().any(|k| k == name) {
            let role = if kind == ConnectorKind::Source { "read from" } else { "written to" };
            let hint = if kind == ConnectorKind::Source && self.lookups.contains_key(name) {
                format!(
                    " (a {name} table is read by key in a lookup join: JOIN {} FOR SYSTEM_TIME AS OF <a PROCTIME() column> ON …)",
                    table.name
                )
            } else {
                String::new()
            };
            return Err(crate::Error::At {
                at: at.clone(),
                message: format!(
                    "table '{}' is {role}, and connector '{name}' cannot be; connectors that can: {}{hint}",
                    table.name,
                    known.join(", ")
                ),
            });
        }
        Ok((name, at))
    }

    /// The connector `table` reads from and its checked options.
    pub(crate) fn source_options(
        &self,
        table: &TableDef,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Options)> {
        let (name, _) = self.connector(table, ConnectorKind::Source)?;
        let specs = self.source_connector(name).map_or(ROCKETMQ, |c| c.options());
        Ok((name.to_owned(), check(table, specs, name, vars)?))
    }

    /// A sink for `table`.
    pub(crate) fn sink(&self, table: &TableDef, vars: &dyn Fn(&str) -> Option<String>) -> Result<Box<dyn Sink>> {
        let (name, at) = self.connector(table, ConnectorKind::Sink)?;
        let connector = self.sinks.get(name).ok_or_else(|| crate::Error::At {
            at: at.clone(),
            message: format!("connector '{name}' is not registered"),
        })?;
        let options = check(table, connector.options(), name, vars)?;
        connector.build(table, &options).map_err(|message| crate::Error::At { at: table.at.clone(), message })
    }
}

/// Checks `table`'s options against `specs` and fills in `${VAR}`s.
fn check(
    table: &TableDef,
    specs: &[OptionSpec],
    connector: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Options> {
    let mut pairs = Vec::new();
    for (key, value, at) in &table.options {
        let value = substitute(value, vars).map_err(|message| crate::Error::At { at: at.clone(), message })?;
        pairs.push((key.clone(), value));
    }
    validate(specs, connector, &pairs).map_err(|e| {
        let at = e.key.as_ref().and_then(|k| table.options.iter().find(|o| &o.0 == k)).map(|o| o.2.clone());
        let message = if e.key.is_none() { format!("table '{}' {}", table.name, e.message) } else { e.message };
        crate::Error::At { at: at.unwrap_or_else(|| table.at.clone()), message }
    })
}

/// A mistake in a connector's options: the option it is about (none for a missing one) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option given wrongly, if the mistake is in one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Checks `pairs` (key, value) against a connector's `specs`: unknown keys
/// (with the nearest valid one), values outside a spec's list, missing
/// required options. The same checks for SQL tables and connect files.
pub fn validate(
    specs: &[OptionSpec],
    connector: &str,
    pairs: &[(String, String)],
) -> std::result::Result<Options, OptionError> {
    let mut values = BTreeMap::new();
    for (key, value) in pairs {
        // `#` in a spec's key stands for a column name (`fields.#.kind`).
        let matches = |spec: &str| match spec.split_once('#') {
            Some((before, after)) => {
                key.len() > before.len() + after.len() && key.starts_with(before) && key.ends_with(after)
            }
            None => spec == key,
        };
        let wrong = |message: String| OptionError { key: Some(key.clone()), message };
        let Some(spec) = specs.iter().find(|s| matches(s.key)) else {
            let valid: Vec<&str> = specs.iter().map(|s| s.key).collect();
            let hint = closest(key, &valid).map(|c| format!("did you mean '{c}'? ")).unwrap_or_default();
            return Err(wrong(format!(
                "unknown option '{key}' for connector '{connector}'; {hint}valid options: {}",
                valid.join(", ")
            )));
        };
        if !spec.values.is_empty() && !spec.values.contains(&value.as_str()) {
            return Err(wrong(format!("option '{key}' is '{value}'; it takes one of: {}", spec.values.join(", "))));
        }
        values.insert(key.clone(), value.clone());
    }
    for spec in specs.iter().filter(|s| s.required) {
        if !values.contains_key(spec.key) {
            return Err(OptionError {
                key: None,
                message: format!("needs option '{}' for connector '{connector}'", spec.key),
            });
        }
    }
    Ok(Options { values })
}

/// `${NAME}` replaced by the variable's value, `${NAME:-default}` by the
/// default when it is unset; any other unset one is an error.
pub fn substitute(value: &str, vars: &dyn Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| format!("'{value}' opens a ${{…}} it does not close"))?;
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let text = vars(name).or_else(|| default.map(str::to_owned));
        out.push_str(&text.ok_or_else(|| format!("variable {name} in '{value}' is not set"))?);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The candidate nearest to `word` by edit distance, if near at all.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    if let Some(c) = candidates.iter().find(|c| c.starts_with(word) || word.starts_with(**c)) {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `print`: each row as a JSON line on standard output.
struct Print;

impl SinkConnector for Print {
    fn options(&self) -> &'static [OptionSpec] {
        const O: &[OptionSpec] = &[opt("connector", true, &[]), opt("print-identifier", false, &[])];
        O
    }
    fn build(&self, _table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        Ok(Box::new(PrintSink { prefix: options.get("print-identifier").map(|p| format!("{p}> ")) }))
    }
}

struct PrintSink {
    prefix: Option<String>,
}

impl Sink for PrintSink {
    fn write(&mut self, batch: RecordBatch) -> rill_streams::Result<()> {
        let mut buf = LineDelimitedWriter::new(Vec::new());
        buf.write(&batch)?;
        buf.finish()?;
        let text = buf.into_inner();
        let mut out = std::io::stdout().lock();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let written = match &self.prefix {
                Some(p) => out.write_all(p.as_bytes()).and_then(|()| out.write_all(line)),
                None => out.write_all(line),
            };
            written.and_then(|()| out.write_all(b"\n")).map_err(|e| rill_streams::Error::Sink(e.to_string()))?;
        }
        out.flush().map_err(|e| rill_streams::Error::Sink(e.to_string()))
    }
}

/// `blackhole`: takes rows and keeps none (for trying a job's speed).
struct Blackhole;

impl SinkConnector for Blackhole {
    fn options(&self) -> &'static [OptionSpec] {
        const O: &[OptionSpec] = &[opt("connector", true, &[])];
        O
    }
    fn build(&self, _table: &TableDef, _options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        Ok(Box::new(rill_streams::FnSink(|_| {})))
    }
}

/// `filesystem`: JSON lines in a directory, published at checkpoints (exactly once).
struct Filesystem;

impl SinkConnector for Filesystem {
    fn options(&self) -> &'static [OptionSpec] {
        const O: &[OptionSpec] =
            &[opt("connector", true, &[]), opt("path", true, &[]), opt("format", false, &["json"])];
        O
    }
    fn build(&self, _table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        let path = options.get("path").unwrap_or_default();
        JsonFileSink::new(path).map(|s| Box::new(s) as Box<dyn Sink>).map_err(|e| format!("path '{path}': {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_fill_in_and_unset_ones_are_named() {
        let vars = |n: &str| (n == "HOST").then(|| "127.0.0.1".to_owned());
        assert_eq!(substitute("${HOST}:8081", &vars).unwrap(), "127.0.0.1:8081");
        assert!(substitute("${PORT}", &vars).unwrap_err().contains("PORT"));
        assert!(substitute("${HOST", &vars).is_err());
        assert_eq!(substitute("${PORT:-8081}/${HOST:-x}", &vars).unwrap(), "8081/127.0.0.1");
        assert_eq!(substitute("${PORT:-}", &vars).unwrap(), "");
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("2mb"), Some(2 << 20));
        assert_eq!(parse_size("512 KB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("2 parsecs"), None);
    }

    #[test]
    fn java_date_letters_become_chrono_specs() {
        assert_eq!(date_pattern("yyyy-MM-dd/HH").unwrap(), "%Y-%m-%d/%H");
        assert!(
            date_pattern("dt=yyyy").unwrap_err().contains("'d' is not one of"),
            "letters outside quotes are pattern letters"
        );
        assert_eq!(date_pattern("yy.MM.dd mm:ss 100%").unwrap(), "%y.%m.%d %M:%S 100%%");
        assert!(date_pattern("yyyy-QQ").unwrap_err().contains("'Q' is not one of"));
        assert_eq!(date_pattern("'dt='yyyy-MM-dd/'hr='HH").unwrap(), "dt=%Y-%m-%d/hr=%H");
        assert!(date_pattern("'dt=yyyy").unwrap_err().contains("quote"));
    }

    #[test]
    fn the_closest_name_is_suggested() {
        assert_eq!(closest("consumer_group", &["topic", "consumer-group"]), Some("consumer-group"));
        assert_eq!(closest("zzz", &["topic", "endpoints"]), None);
    }
}
