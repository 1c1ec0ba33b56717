//! Nexmark through a broker: the generator writes its events as JSON
//! messages to three topics (`<prefix>person`, `<prefix>auction`,
//! `<prefix>bid`), and a query runs on those topics with checkpoints and a
//! two-phase file sink — the setting of the exactly-once test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::LineDelimitedWriter;
use rill_client::{ClientConfig, FilterExpression, Message, Producer, StartFrom};
use rill_streams::dsl::Job;
use rill_streams::{Decoder, JsonFileSink, RunReport, RunnerConfig, TopicInput};
use rill_time::WatermarkConfig;

use crate::generator::{Generator, GeneratorConfig, auction_schema, bid_schema, person_schema};
use crate::{Query, Result};

/// One JSON document per row (event times as epoch ms).
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let columns = crate::epoch_ms_columns(batch)?;
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let plain = RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), columns)?;
    let mut writer = LineDelimitedWriter::new(Vec::new());
    writer.write(&plain)?;
    writer.finish()?;
    Ok(writer.into_inner().split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Writes every event of `config` to the topics under `prefix`; returns how many.
pub async fn produce(client: ClientConfig, prefix: &str, config: GeneratorConfig) -> Result<u64> {
    let producer = Producer::connect(client).await.map_err(|e| crate::Error::Broker(e.to_string()))?;
    let mut sent = 0u64;
    for chunk in Generator::new(config) {
        let chunk = chunk?;
        for (name, batch) in [("person", &chunk.person), ("auction", &chunk.auction), ("bid", &chunk.bid)] {
            let topic = format!("{prefix}{name}");
            let rows = json_rows(batch)?;
            for part in rows.chunks(256) {
                let messages: Vec<Message> = part.iter().map(|r| Message::new(topic.clone(), r.clone())).collect();
                producer.send_batch(messages).await.map_err(|e| crate::Error::Broker(e.to_string()))?;
                sent += part.len() as u64;
            }
        }
    }
    Ok(sent)
}

/// The topic inputs `query` reads, with event time bounded by `disorder` ms.
pub fn inputs(query: Query, prefix: &str, disorder: i64) -> Result<Vec<TopicInput>> {
    let job = Job::new();
    query.build(&job);
    let sources: Vec<String> = job.build()?.sources().into_iter().map(str::to_owned).collect();
    sources
        .into_iter()
        .map(|s| {
            let schema = match s.as_str() {
                "person" => person_schema(),
                "auction" => auction_schema(),
                _ => bid_schema(),
            };
            Ok(TopicInput {
                topic: format!("{prefix}{s}"),
                source: s,
                event_time: "date_time".into(),
                decoder: Decoder::new(schema, vec![])?,
                filter: FilterExpression::all(),
                watermarks: WatermarkConfig { max_out_of_orderness: disorder, idle_timeout: None },
                start: StartFrom::Earliest,
            })
        })
        .collect()
}

/// Where and how [`run`] works.
#[derive(Debug, Clone)]
pub struct BrokerRun {
    /// The broker.
    pub client: ClientConfig,
    /// Consumer group.
    pub group: String,
    /// Topic name prefix.
    pub prefix: String,
    /// Checkpoint directory.
    pub checkpoints: PathBuf,
    /// Output directory (JSON-lines files, exactly once).
    pub output: PathBuf,
    /// Time between checkpoints.
    pub interval: Duration,
    /// Largest event-time disorder of the input (ms).
    pub disorder: i64,
    /// Stop once the topics are read to their end (ending event time).
    pub until_caught_up: bool,
}

/// Runs `query` on the topics until `stop` (or until caught up).
pub async fn run(query: Query, settings: BrokerRun, stop: tokio::sync::watch::Receiver<bool>) -> Result<RunReport> {
    let mut config = RunnerConfig::new(settings.client, &settings.group);
    config.checkpoint_dir = Some(settings.checkpoints);
    config.checkpoint_interval = settings.interval;
    config.until_caught_up = settings.until_caught_up;
    let job = Job::new();
    job.run_with(config);
    let out = query.build_on(&job, inputs(query, &settings.prefix, settings.disorder)?);
    let job = out.sink(JsonFileSink::new(settings.output)?);
    Ok(job.run(stop).await?)
}
