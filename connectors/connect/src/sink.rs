//! Sink tasks: a sink connector fed from topics is a streams job — each
//! topic a `rocketmq` table of the declared columns and format, one
//! `INSERT INTO` the sink table per topic — written as a SQL job file in
//! the connector's state directory and run like any other. Its checkpoints
//! store the topic offsets with the sink's commit (the MySQL sink writes
//! one transaction per checkpoint, the search sink acknowledges every
//! document first), so a restart continues exactly where the last commit
//! ended. The job's dead letters — messages that do not decode, documents
//! the sink refuses — go to the connector's dead-letter topic with their
//! reason (tolerance `all`) or stop it (`none`). It owns the job's text
//! and the dead-letter forwarding; running the job is the streams
//! runtime's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rill_client::{ClientConfig, Message, Producer};
use rill_streams::DeadLetter;
use tokio::sync::{mpsc, watch};

use crate::config::{ConnectorConfig, Tolerance};
use crate::runtime::{Control, Status, runnable};

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

/// Runs sink `config`'s job (text `text`, files under `dir`) while told to
/// run; a pause or stop ends the job at a checkpoint.
pub(crate) async fn run(
    config: ConnectorConfig,
    dir: PathBuf,
    text: String,
    broker: String,
    status: Arc<Mutex<Status>>,
    mut control: watch::Receiver<Control>,
) -> Result<(), String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("job.sql");
    std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    while runnable(&mut control, &status).await {
        let mut sql = rill_sql::SqlJob::parse(&path, &text).map_err(|e| e.to_string())?;
        *sql.connectors_mut() = crate::connectors();
        let job = sql.build().await.map_err(|e| e.to_string())?;
        let (letters, inbox) = mpsc::unbounded_channel();
        job.dead_letters(move |d| {
            let _ = letters.send(d);
        });
        let forwarder = tokio::spawn(forward(config.clone(), broker.clone(), inbox));
        let (stop, stopped) = watch::channel(false);
        let mut watching = control.clone();
        let stopper = tokio::spawn(async move {
            while watching.changed().await.is_ok() {
                if *watching.borrow() != Control::Run {
                    break;
                }
            }
            stop.send_replace(true);
        });
        let report = job.run(stopped).await.map_err(|e| e.to_string());
        stopper.abort();
        // The job is gone, and with it the dead letters' sender: the forwarder ends once it sent them all.
        let forwarded = forwarder.await.map_err(|e| e.to_string())?;
        let report = report?;
        forwarded?;
        let mut s = status.lock();
        s.records += report.messages;
        s.dead_letters += report.dead;
    }
    Ok(())
}

/// A dead letter as a message of `topic`: its body, with the reason and where it came from as properties.
pub(crate) fn dead_letter(
    topic: &str,
    connector: &str,
    body: impl Into<bytes::Bytes>,
    reason: String,
    origin: String,
) -> Message {
    let mut m = Message::new(topic, body);
    m.properties.insert("rill.error".into(), reason);
    m.properties.insert("rill.origin".into(), origin);
    m.properties.insert("rill.connector".into(), connector.to_owned());
    m
}

/// Sends the job's dead letters to the connector's dead-letter topic until the job ends.
async fn forward(
    config: ConnectorConfig,
    broker: String,
    mut inbox: mpsc::UnboundedReceiver<DeadLetter>,
) -> Result<(), String> {
    let topic = config.dead_letter_topic();
    let mut producer = None;
    while let Some(first) = inbox.recv().await {
        let mut letters = vec![first];
        while let Ok(more) = inbox.try_recv() {
            letters.push(more);
        }
        if producer.is_none() {
            let p = Producer::connect(ClientConfig::new(&broker)).await.map_err(|e| format!("broker {broker}: {e}"))?;
            producer = Some(p);
        }
        let Some(p) = producer.as_ref() else { continue };
        let messages = letters
            .into_iter()
            .map(|d| dead_letter(&topic, &config.name, d.body, d.reason, d.origin.to_string()))
            .collect();
        crate::lanes::send(p, &topic, messages).await?;
    }
    Ok(())
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
