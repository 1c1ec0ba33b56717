//! Sink tasks: a sink connector fed from topics is a streams job — each
//! topic a `rocketmq` table of the declared columns and format, one
//! `INSERT INTO` the sink table per topic — written as a SQL job file in
//! the connector's state directory and run like any other. Its checkpoints
//! store the topic offsets with the sink's commit (the MySQL sink writes
//! one transaction per checkpoint), so a restart continues exactly where
//! the last commit ended. It owns the job's text; running it is the
//! streams runtime's.

use std::path::{Path, PathBuf};

use crate::config::{ConnectorConfig, Tolerance};

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The job file of sink `config` reading from `broker`, with its checkpoints under `dir`.
pub(crate) fn job_text(config: &ConnectorConfig, options: &[(String, String)], broker: &str, dir: &Path) -> String {
    let mut columns: Vec<String> = config.columns.clone();
    if !config.primary_key.is_empty() {
        columns.push(format!("PRIMARY KEY ({}) NOT ENFORCED", config.primary_key.join(", ")));
    }
    let columns = columns.join(",\n  ");
    let format = config.format.clone().unwrap_or_else(|| "debezium-json".to_owned());
    let dead = if config.errors.tolerance == Tolerance::All { "skip" } else { "fail" };
    let mut text = format!(
        "-- The sink connector '{name}' of a connect file, as a job: its topics into its sink.\n\
         SET 'pipeline.name' = {pipeline};\n\
         SET 'state.checkpoints.dir' = {dir};\n\
         SET 'execution.checkpointing.interval' = '1 s';\n\
         SET 'rill.dead-letters' = '{dead}';\n\n",
        name = config.name,
        pipeline = quote(&format!("connect-{}", config.name)),
        dir = quote(&dir.join("checkpoints").display().to_string()),
    );
    let with: Vec<String> = options.iter().map(|(k, v)| format!("  {} = {}", quote(k), quote(v))).collect();
    text.push_str(&format!("CREATE TABLE target (\n  {columns}\n) WITH (\n{}\n);\n\n", with.join(",\n")));
    for (i, topic) in config.topics.iter().enumerate() {
        text.push_str(&format!(
            "CREATE TABLE source_{i} (\n  {columns}\n) WITH (\n  'connector' = 'rocketmq',\n  'endpoints' = {},\n  \
             'topic' = {},\n  'consumer-group' = {},\n  'format' = {}\n);\n\n\
             INSERT INTO target SELECT * FROM source_{i};\n\n",
            quote(broker),
            quote(topic),
            quote(&format!("connect-{}", config.name)),
            quote(&format),
        ));
    }
    text
}

/// Where sink `name` keeps its job file and checkpoints.
pub(crate) fn dir(state: &Path, name: &str) -> PathBuf {
    state.join("sinks").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_becomes_a_job_file() {
        let config: ConnectorConfig = serde_norway::from_str(
            "name: copy\nsink: mysql\ntopics: [a, b]\ncolumns: [id BIGINT, note STRING]\nprimary-key: [id]\n",
        )
        .unwrap();
        let options = vec![("connector".to_owned(), "mysql".to_owned()), ("table-name".to_owned(), "it's".to_owned())];
        let text = job_text(&config, &options, "127.0.0.1:8081", Path::new("/s"));
        assert!(text.contains("'table-name' = 'it''s'"), "{text}");
        assert!(text.contains("INSERT INTO target SELECT * FROM source_1;"), "{text}");
        assert!(text.contains("PRIMARY KEY (id) NOT ENFORCED"), "{text}");
        assert!(text.contains("'format' = 'debezium-json'"), "{text}");
        assert!(text.contains("SET 'rill.dead-letters' = 'fail';"), "{text}");
    }
}
