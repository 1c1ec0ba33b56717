//! The connect file (`connectors.yaml`): the broker, the REST address,
//! where offsets live, and the connectors — each a source (→ a topic) or a
//! sink (topics →) by registered name, with the connector's own options
//! under `config` (the names SQL's `WITH (…)` takes), optional transforms
//! and an error policy. `${VAR}` and `${VAR:-default}` take values from
//! the environment (secrets stay out of the file).
//!
//! Every mistake names the file, line and column and the YAML path:
//! unknown keys, wrong types, missing options, unknown connectors and
//! option names (with the valid ones listed). It owns the file's model
//! and its checking; running connectors is the runtime's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectFile {
    /// The broker's endpoints (`host:port`).
    #[serde(default = "default_broker")]
    pub broker: String,
    /// Where the REST API listens.
    #[serde(default = "default_rest")]
    pub rest: String,
    /// Where offsets and sink checkpoints are kept (default: the user's data dir).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The connectors.
    pub connectors: Vec<ConnectorConfig>,
}

fn default_broker() -> String {
    "127.0.0.1:8081".to_owned()
}

fn default_rest() -> String {
    "127.0.0.1:8083".to_owned()
}

/// One connector.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectorConfig {
    /// Its unique name.
    pub name: String,
    /// A source connector's registered name (`mysql-cdc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A sink connector's registered name (`mysql`, `elasticsearch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// A source's topic; `{db}` and `{table}` route each record by its table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// A sink's topics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// How a sink's messages are written: `debezium-json` (change events) or `json` (rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// A sink's columns, as in SQL: `id BIGINT`, `amount DECIMAL(10, 2)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// A sink's key columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// The connector's options.
    #[serde(default)]
    pub config: BTreeMap<String, OptionValue>,
    /// Per-record transforms, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<crate::transform::Transform>,
    /// What a bad record does.
    #[serde(default)]
    pub errors: ErrorPolicy,
}

/// An option's value: YAML scalars all become text.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum OptionValue {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A number.
    Number(f64),
    /// A flag.
    Flag(bool),
}

impl OptionValue {
    /// The value as an option's text.
    pub fn text(&self) -> String {
        match self {
            OptionValue::Text(s) => s.clone(),
            OptionValue::Integer(i) => i.to_string(),
            OptionValue::Number(n) => n.to_string(),
            OptionValue::Flag(b) => b.to_string(),
        }
    }
}

/// What a record that cannot be handled does.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ErrorPolicy {
    /// `none`: the connector stops with the error; `all`: the record goes to the dead-letter topic.
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Where bad records go (default `<connector>-dlq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// See [`ErrorPolicy::tolerance`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Tolerance {
    /// Stop at the first bad record.
    #[default]
    None,
    /// Set bad records aside and go on.
    All,
}

impl ConnectorConfig {
    /// `source` or `sink`.
    pub fn role(&self) -> &'static str {
        if self.source.is_some() { "source" } else { "sink" }
    }

    /// The registered connector it names.
    pub fn connector(&self) -> &str {
        self.source.as_deref().or(self.sink.as_deref()).unwrap_or_default()
    }

    /// Its dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.errors.dead_letter_topic.clone().unwrap_or_else(|| format!("{}-dlq", self.name))
    }

    /// Its options as text, `connector` included, `${VAR}`s filled in.
    pub fn options(&self, vars: &dyn Fn(&str) -> Option<String>) -> std::result::Result<Vec<(String, String)>, String> {
        let mut out = vec![("connector".to_owned(), self.connector().to_owned())];
        for (k, v) in &self.config {
            let text = rill_sql::substitute(&v.text(), vars).map_err(|e| format!("config.{k}: {e}"))?;
            out.push((k.clone(), text));
        }
        Ok(out)
    }
}

/// A place in the file, for messages: the line where `key` first appears
/// after the line of connector `name`'s entry (the whole file without a name).
pub(crate) fn locate(text: &str, name: Option<&str>, key: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let start = name
        .and_then(|n| {
            lines.iter().position(|l| {
                let t = l.trim_start().trim_start_matches("- ").trim();
                t.strip_prefix("name:").is_some_and(|v| v.trim().trim_matches(['"', '\'']) == n)
            })
        })
        .unwrap_or(0);
    for (i, line) in lines.iter().enumerate().skip(start) {
        let t = line.trim_start().trim_start_matches("- ");
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')) {
            return (i + 1, line.len() - t.len() + 1);
        }
    }
    (start + 1, 1)
}

/// `text` with `${VAR}` / `${VAR:-default}` filled in line by line (comments too), so places stay put.
fn environment(path: &Path, text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let filled = rill_sql::substitute(line, vars).map_err(|_| {
            let column = line.find("${").map_or(1, |c| c + 1);
            let name: String = line[column + 1..].chars().take_while(|c| *c != '}' && *c != ':').collect();
            Error::Config(format!("{}:{}:{column}: environment variable {name} is not set", path.display(), i + 1))
        })?;
        out.push_str(&filled);
    }
    Ok(out)
}

/// Reads and checks `path` (shape only; the runtime checks connectors and options).
pub fn load(path: &Path) -> Result<(ConnectFile, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok((parse(path, &text)?, text))
}

/// Parses the text of a connect file (`path` is for messages).
pub fn parse(path: &Path, text: &str) -> Result<ConnectFile> {
    let text = &environment(path, text, &|name: &str| std::env::var(name).ok())?;
    let de = serde_norway::Deserializer::from_str(text);
    let file: ConnectFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.inner().location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        let yaml_path = e.path().to_string();
        let message = e.inner().to_string();
        // The library appends the place to its message (it is already in front) and may lead with the path.
        let message = message.split(" at line ").next().unwrap_or(&message);
        let message = match message.split_once(": ") {
            Some((head, rest)) if yaml_path.starts_with(head) => rest,
            _ => message,
        };
        Error::Config(format!("{}{at}: {yaml_path}: {message}", path.display()))
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in file.connectors.iter().enumerate() {
        let at = |key: &str| {
            let (line, column) = locate(text, Some(&c.name), key);
            format!("{}:{line}:{column}: connectors[{i}]", path.display())
        };
        if !seen.insert(c.name.clone()) {
            return Err(Error::Config(format!("{}: a second connector named '{}'", at("name"), c.name)));
        }
        for (j, column) in c.columns.iter().enumerate() {
            if column.matches('(').count() != column.matches(')').count() {
                return Err(Error::Config(format!(
                    "{}.columns[{j}]: '{column}' has unbalanced parentheses; quote a column whose type holds a comma \
                     (\"amount DECIMAL(10, 2)\")",
                    at("columns")
                )));
            }
        }
        match (&c.source, &c.sink) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::Config(format!(
                    "{}: give either `source: <connector>` or `sink: <connector>`",
                    at("name")
                )));
            }
            (Some(_), None) if c.topic.is_none() => {
                return Err(Error::Config(format!("{}: a source needs `topic:` (where its records go)", at("source"))));
            }
            (None, Some(_)) if c.topics.is_empty() => {
                return Err(Error::Config(format!("{}: a sink needs `topics:` (what it reads)", at("sink"))));
            }
            _ => {}
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "broker: 127.0.0.1:8081
connectors:
  - name: orders-cdc
    source: mysql-cdc
    topic: cdc-{table}
    config:
      hostname: 127.0.0.1
      port: 3306
  - name: orders-to-mysql
    sink: mysql
    topics: [cdc-orders]
    columns: [id BIGINT, \"amount DECIMAL(10, 2)\"]
    primary-key: [id]
    config:
      url: mysql://root@127.0.0.1:3306/test
";

    #[test]
    fn a_file_reads_with_scalars_as_text() {
        let f = parse(Path::new("c.yaml"), FILE).unwrap();
        assert_eq!(f.connectors.len(), 2);
        assert_eq!(f.connectors[0].config["port"].text(), "3306");
        assert_eq!(f.connectors[1].columns[1], "amount DECIMAL(10, 2)");
        assert_eq!(f.rest, "127.0.0.1:8083");
    }

    #[test]
    fn mistakes_name_the_place_and_the_path() {
        let bad = FILE.replace("primary-key", "primary-keys");
        let e = parse(Path::new("c.yaml"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("c.yaml:13:5: connectors[1].primary-keys: unknown field `primary-keys`"), "{e}");
        let bad = FILE.replace("\"amount DECIMAL(10, 2)\"", "amount DECIMAL(10, 2)");
        let e = parse(Path::new("c.yaml"), &bad).unwrap_err().to_string();
        assert!(e.contains("c.yaml:12:5: connectors[1].columns[1]: 'amount DECIMAL(10' has unbalanced"), "{e}");
        let bad = FILE.replace("topics: [cdc-orders]", "topics: 7");
        let e = parse(Path::new("c.yaml"), &bad).unwrap_err().to_string();
        assert!(e.contains("c.yaml:11:13: connectors[1].topics: invalid type: integer `7`"), "{e}");
        let bad = FILE.replace("    topic: cdc-{table}\n", "");
        let e = parse(Path::new("c.yaml"), &bad).unwrap_err().to_string();
        assert!(e.contains("c.yaml:4:5: connectors[0]: a source needs `topic:`"), "{e}");
    }

    #[test]
    fn environment_variables_fill_in_and_missing_ones_are_placed() {
        let vars = |n: &str| (n == "PORT").then(|| "3307".to_owned());
        let text = "a: 1\nport: ${PORT}\nhost: ${HOST:-127.0.0.1}\n";
        assert_eq!(environment(Path::new("c.yaml"), text, &vars).unwrap(), "a: 1\nport: 3307\nhost: 127.0.0.1\n");
        let e = environment(Path::new("c.yaml"), "a: 1\n  pw: ${SECRET}\n", &vars).unwrap_err().to_string();
        assert_eq!(e, "c.yaml:2:7: environment variable SECRET is not set");
    }

    #[test]
    fn places_are_found_under_their_connector() {
        assert_eq!(locate(FILE, Some("orders-to-mysql"), "url"), (15, 7));
        assert_eq!(locate(FILE, Some("orders-cdc"), "port"), (8, 7));
    }
}
