//! The `elasticsearch` connector SQL job files and connect YAML name (also
//! as `opensearch`): its options, with Flink's names where Flink has one,
//! and how they become an [`ElasticsearchConfig`].

use std::sync::Arc;

use rill_sql::{Connectors, OptionSpec, Options, SinkConnector, TableDef, opt};
use rill_streams::Sink;

use crate::{ElasticsearchConfig, ElasticsearchSink, IndexPattern};

/// Options of the sink.
const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("hosts", true, &[]),
    opt("index", true, &[]),
    opt("document-id.key-delimiter", false, &[]),
    opt("username", false, &[]),
    opt("password", false, &[]),
    opt("sink.bulk-flush.max-actions", false, &[]),
    opt("sink.bulk-flush.max-size", false, &[]),
    opt("sink.bulk-flush.interval", false, &[]),
    opt("sink.bulk-flush.backoff.max-retries", false, &[]),
    opt("sink.bulk-flush.backoff.delay", false, &[]),
    opt("sink.refresh", false, &["false", "true", "wait_for"]),
    opt("connection.request-timeout", false, &[]),
    opt("tls.ca-file", false, &[]),
    opt("tls.insecure", false, &["true", "false"]),
];

/// The `elasticsearch` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct ElasticsearchConnector;

/// Adds the sink to `connectors` as `elasticsearch` and `opensearch`.
pub fn register(connectors: &mut Connectors) {
    connectors.register_sink("elasticsearch", Arc::new(ElasticsearchConnector));
    connectors.register_sink("opensearch", Arc::new(ElasticsearchConnector));
}

impl ElasticsearchConnector {
    /// The sink's configuration from a table and its checked options.
    pub fn config(table: &TableDef, options: &Options) -> Result<ElasticsearchConfig, String> {
        let hosts: Vec<String> = options
            .get("hosts")
            .unwrap_or_default()
            .split(';')
            .map(|h| h.trim().trim_end_matches('/').to_owned())
            .filter(|h| !h.is_empty())
            .collect();
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let index =
            IndexPattern::parse(options.get("index").unwrap_or_default(), &columns).map_err(|e| e.to_string())?;
        let mut config = ElasticsearchConfig::new(&table.name, hosts, index, table.primary_key.clone());
        if let Some(d) = options.get("document-id.key-delimiter") {
            config.key_delimiter = d.to_owned();
        }
        config.username = options.get("username").map(str::to_owned);
        config.password = options.get("password").map(str::to_owned);
        if config.password.is_some() && config.username.is_none() {
            return Err("'password' is given without 'username'".into());
        }
        if let Some(n) = options.positive("sink.bulk-flush.max-actions")? {
            config.max_actions = n;
        }
        if let Some(v) = options.get("sink.bulk-flush.max-size") {
            config.max_bytes = rill_sql::parse_size(v)
                .ok_or_else(|| format!("'sink.bulk-flush.max-size' = '{v}' is not a size such as '2mb' or '512kb'"))?;
        }
        if let Some(d) = options.duration("sink.bulk-flush.interval")? {
            config.flush_interval = d;
        }
        if let Some(v) = options.get("sink.bulk-flush.backoff.max-retries") {
            config.max_retries = v
                .trim()
                .parse()
                .map_err(|_| format!("'sink.bulk-flush.backoff.max-retries' = '{v}' is not a whole number"))?;
        }
        if let Some(d) = options.duration("sink.bulk-flush.backoff.delay")? {
            config.backoff = d;
        }
        if let Some(d) = options.duration("connection.request-timeout")? {
            config.request_timeout = d;
        }
        config.refresh = options.get("sink.refresh").filter(|r| *r != "false").map(str::to_owned);
        config.ca_file = options.get("tls.ca-file").map(Into::into);
        config.insecure = options.get("tls.insecure") == Some("true");
        Ok(config)
    }
}

impl SinkConnector for ElasticsearchConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn build(&self, table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        let config = Self::config(table, options)?;
        Ok(Box::new(ElasticsearchSink::new(config).map_err(|e| e.to_string())?))
    }
}
