//! The `rill` configuration: built-in defaults, then the `--config` file,
//! then `RILL__SECTION__KEY` environment variables, then command-line flags.
//!
//! The merged result is one [`RillConfig`] passed explicitly to whatever
//! runs; nothing reads configuration from globals.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Everything `rill` can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RillConfig {
    /// The storage engine.
    pub store: rill_store::StoreConfig,
    /// The broker's service.
    #[serde(default)]
    pub broker: BrokerSection,
    /// The name server.
    #[serde(default)]
    pub namesrv: NamesrvSection,
}

/// The `[broker]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Where the RocketMQ 5 gRPC service listens.
    #[serde(default = "default_grpc_addr")]
    pub grpc_addr: String,
    /// Create topics when a client first uses them [default: on in
    /// standalone, off for `rill broker`].
    #[serde(default)]
    pub auto_create_topics: Option<bool>,
    /// Queues of an auto-created topic.
    #[serde(default = "default_queues")]
    pub default_queues: u32,
    /// Name of this broker in routes and on the name server.
    #[serde(default = "default_broker_name")]
    pub broker_name: String,
    /// Cluster the broker registers in.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Where Prometheus metrics are served (`GET /metrics`); none when unset.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// PEM certificate chain: serve gRPC over TLS (needs `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Redeliveries before a message becomes a dead letter (groups without
    /// their own setting).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before each retry, in milliseconds (announced to consumers;
    /// the last one repeats) [default: 10 s, 30 s, 1 m … 2 h].
    #[serde(default = "default_retry_delays")]
    pub retry_delays_ms: Vec<u64>,
    /// Shortest invisible duration a receive may ask for, in seconds.
    #[serde(default = "default_min_invisible")]
    pub min_invisible_secs: u64,
    /// Latest delivery time a delay message may ask for, in days from now.
    #[serde(default = "default_max_delay_days")]
    pub max_delay_days: u64,
    /// Open transactions younger than this many milliseconds are not checked back.
    #[serde(default = "default_txn_check_after")]
    pub transaction_check_after_ms: u64,
    /// Milliseconds between check-backs of one open transaction.
    #[serde(default = "default_txn_check_interval")]
    pub transaction_check_interval_ms: u64,
    /// Check-backs before an open transaction is discarded.
    #[serde(default = "default_txn_max_checks")]
    pub transaction_max_checks: u32,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            grpc_addr: default_grpc_addr(),
            auto_create_topics: None,
            default_queues: default_queues(),
            broker_name: default_broker_name(),
            cluster_name: default_cluster_name(),
            metrics_addr: None,
            tls_cert: None,
            tls_key: None,
            max_retries: default_max_retries(),
            retry_delays_ms: default_retry_delays(),
            min_invisible_secs: default_min_invisible(),
            max_delay_days: default_max_delay_days(),
            transaction_check_after_ms: default_txn_check_after(),
            transaction_check_interval_ms: default_txn_check_interval(),
            transaction_max_checks: default_txn_max_checks(),
        }
    }
}

/// The `[namesrv]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesrvSection {
    /// Where the name server listens (`rill namesrv`, `rill standalone`)
    /// and where a broker registers (`rill broker`).
    #[serde(default = "default_namesrv_addr")]
    pub addr: String,
    /// A broker silent for longer than this many seconds leaves routes.
    #[serde(default = "default_broker_timeout")]
    pub broker_timeout_secs: u64,
}

impl Default for NamesrvSection {
    fn default() -> Self {
        Self { addr: default_namesrv_addr(), broker_timeout_secs: default_broker_timeout() }
    }
}

fn default_namesrv_addr() -> String {
    "127.0.0.1:9876".into()
}
fn default_broker_timeout() -> u64 {
    rill_namesrv::DEFAULT_BROKER_TIMEOUT.as_secs()
}
fn default_broker_name() -> String {
    "broker-a".into()
}
fn default_cluster_name() -> String {
    "DefaultCluster".into()
}

fn default_max_retries() -> u32 {
    16
}
fn default_retry_delays() -> Vec<u64> {
    rill_broker::settings::CONSUMER_RETRY_DELAYS.iter().map(|s| s * 1000).collect()
}
fn default_min_invisible() -> u64 {
    10
}
fn default_max_delay_days() -> u64 {
    40
}
fn default_txn_check_after() -> u64 {
    6_000
}
fn default_txn_check_interval() -> u64 {
    30_000
}
fn default_txn_max_checks() -> u32 {
    15
}

fn default_grpc_addr() -> String {
    "127.0.0.1:8081".into()
}
fn default_queues() -> u32 {
    8
}

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "RILL__";

/// The default data directory: `<user data dir>/rill`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("rill")
}

/// Builds the configuration from its layers; `overrides` are `(dotted.key, value)` from flags.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, Value)],
) -> Result<RillConfig> {
    let mut root = Table::new();
    set(&mut root, "store.data_dir", Value::String(default_data_dir().display().to_string()))?;
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        // Parse errors carry line and column.
        let table: Table = text.parse().with_context(|| format!("in config file {}", path.display()))?;
        merge(&mut root, table);
    }
    let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (key, raw) in env {
        let dotted = key[ENV_PREFIX.len()..].to_ascii_lowercase().replace("__", ".");
        set(&mut root, &dotted, parse_scalar(&raw)).with_context(|| format!("in environment variable {key}"))?;
    }
    for (key, value) in overrides {
        set(&mut root, key, value.clone())?;
    }
    let config = RillConfig::deserialize(Value::Table(root)).map_err(|e| {
        let origin = file.map_or_else(|| "configuration".to_owned(), |p| format!("config file {}", p.display()));
        anyhow::anyhow!("invalid {origin}: {e}")
    })?;
    config.store.validate()?;
    Ok(config)
}

/// An environment value as TOML if it parses as a scalar, else as a string.
fn parse_scalar(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn merge(into: &mut Table, from: Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Table(a)), Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn set(root: &mut Table, dotted: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { bail!("empty configuration key") };
    let mut table = root;
    for p in parts {
        let entry = table.entry(p.to_owned()).or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(next) = entry else { bail!("configuration key {dotted}: {p} is not a section") };
        table = next;
    }
    table.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rill.toml");
        std::fs::write(
            &file,
            "[store]\nsegment_size = 16777216\ndata_dir = \"/from/file\"\n[store.flush]\nmode = \"sync\"\n",
        )
        .unwrap();
        let env = vec![
            ("RILL__STORE__SEGMENT_SIZE".to_owned(), "8388608".to_owned()),
            ("RILL__STORE__RETENTION__DELETE_HOUR_UTC".to_owned(), "5".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = load(Some(&file), env, &[("store.data_dir", Value::String("/from/flag".into()))]).unwrap();
        assert_eq!(c.store.segment_size, 8 << 20);
        assert_eq!(c.store.retention.delete_hour_utc, 5);
        assert!(c.store.flush.is_sync());
        assert_eq!(c.store.data_dir, PathBuf::from("/from/flag"));
        let defaults = load(None, Vec::new(), &[]).unwrap();
        assert_eq!(defaults.store.data_dir, default_data_dir());
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[store]\nsegment_size = \n").unwrap();
        let err = format!("{:#}", load(Some(&file), Vec::new(), &[]).unwrap_err());
        assert!(err.contains("bad.toml") && err.contains("line 2"), "{err}");
        std::fs::write(&file, "[store]\nsegmentsize = 1\n").unwrap();
        let err = format!("{:#}", load(Some(&file), Vec::new(), &[]).unwrap_err());
        assert!(err.contains("segmentsize"), "{err}");
        let env = vec![("RILL__STORE__SEGMENT_SIZE".to_owned(), "12".to_owned())];
        let err = format!("{:#}", load(None, env, &[]).unwrap_err());
        assert!(err.contains("segment_size"), "{err}");
    }
}
