//! The `parquet` and `filesystem` connectors SQL job files and connect YAML
//! name: `filesystem` with `'format' = 'parquet'` (or `parquet` itself)
//! builds a [`ParquetSink`]; `filesystem` with `'format' = 'json'` (its
//! default, as before) the runtime's JSON-lines file sink.

use std::sync::Arc;

use datafusion::parquet::basic::{Compression, GzipLevel, ZstdLevel};
use rill_sql::{Connectors, OptionSpec, Options, SinkConnector, TableDef, opt};
use rill_streams::{JsonFileSink, Sink};

use crate::{ParquetConfig, ParquetSink, Partitioning};

/// Options of both connectors.
const OPTIONS: &[OptionSpec] = &[
    opt("connector", true, &[]),
    opt("path", true, &[]),
    opt("format", false, &["json", "parquet"]),
    opt("partition.fields", false, &[]),
    opt("partition.time-column", false, &[]),
    opt("partition.time-pattern", false, &[]),
    opt("sink.rolling-policy.file-size", false, &[]),
    opt("sink.success-file", false, &["true", "false"]),
    opt("parquet.compression", false, &["zstd", "snappy", "gzip", "lz4", "uncompressed"]),
];

/// `filesystem` / `parquet`: files in a directory (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct FilesystemConnector {
    /// The format when the table names none.
    default_format: &'static str,
}

/// Adds `parquet` and a `filesystem` that writes JSON lines or Parquet to `connectors`.
pub fn register(connectors: &mut Connectors) {
    connectors.register_sink("filesystem", Arc::new(FilesystemConnector { default_format: "json" }));
    connectors.register_sink("parquet", Arc::new(FilesystemConnector { default_format: "parquet" }));
}

impl FilesystemConnector {
    /// The Parquet sink's configuration from a table and its checked options.
    pub fn config(table: &TableDef, options: &Options) -> Result<ParquetConfig, String> {
        let mut config = ParquetConfig::new(options.get("path").unwrap_or_default());
        let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        let known = |name: &str, option: &str| {
            if columns.contains(&name) {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "'{option}' names '{name}', which is not a column of '{}' ({})",
                    table.name,
                    columns.join(", ")
                ))
            }
        };
        let mut partitioning = Partitioning::default();
        if let Some(fields) = options.get("partition.fields") {
            for f in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                partitioning.fields.push(known(f, "partition.fields")?);
            }
        }
        match (options.get("partition.time-column"), options.get("partition.time-pattern")) {
            (Some(column), pattern) => {
                let pattern = rill_sql::date_pattern(pattern.unwrap_or("'dt='yyyy-MM-dd/'hr='HH"))
                    .map_err(|e| format!("'partition.time-pattern': {e}"))?;
                partitioning.time = Some((known(column, "partition.time-column")?, pattern));
            }
            (None, Some(_)) => return Err("'partition.time-pattern' needs 'partition.time-column'".into()),
            (None, None) => {}
        }
        config.partitioning = partitioning;
        if let Some(v) = options.get("sink.rolling-policy.file-size") {
            config.max_file_bytes = rill_sql::parse_size(v)
                .map(|n| n as u64)
                .ok_or_else(|| format!("'sink.rolling-policy.file-size' = '{v}' is not a size such as '128mb'"))?;
        }
        config.success_file = options.get("sink.success-file") != Some("false");
        config.compression = match options.get("parquet.compression").unwrap_or("zstd") {
            "snappy" => Compression::SNAPPY,
            "gzip" => Compression::GZIP(GzipLevel::default()),
            "lz4" => Compression::LZ4_RAW,
            "uncompressed" => Compression::UNCOMPRESSED,
            _ => Compression::ZSTD(ZstdLevel::default()),
        };
        Ok(config)
    }
}

impl SinkConnector for FilesystemConnector {
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    fn build(&self, table: &TableDef, options: &Options) -> std::result::Result<Box<dyn Sink>, String> {
        let path = options.get("path").unwrap_or_default();
        if options.get("format").unwrap_or(self.default_format) == "json" {
            if let Some(k) = OPTIONS[3..].iter().map(|o| o.key).find(|k| options.get(k).is_some()) {
                return Err(format!("'{k}' is for 'format' = 'parquet'; JSON files are written unpartitioned"));
            }
            let sink = JsonFileSink::new(path).map_err(|e| format!("path '{path}': {e}"))?;
            return Ok(Box::new(sink));
        }
        let sink = ParquetSink::new(Self::config(table, options)?).map_err(|e| format!("path '{path}': {e}"))?;
        Ok(Box::new(sink))
    }
}
