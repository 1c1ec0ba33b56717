//! `rill produce`: sends the lines of a file (or standard input) to a
//! topic, one message per line — for loading sample data and trying jobs
//! out. The tag and keys may come from fields of JSON lines.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rill_client::{ClientConfig, Message, Producer};

/// Messages sent per request.
const BATCH: usize = 256;

/// Options of `rill produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The broker's gRPC address.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "HOST:PORT")]
    server: String,
    /// The topic to send to.
    #[arg(long)]
    topic: String,
    /// The tag of every message.
    #[arg(long, conflicts_with = "tag_field")]
    tag: Option<String>,
    /// Take each message's tag from this field of its JSON line.
    #[arg(long, value_name = "FIELD")]
    tag_field: Option<String>,
    /// Take each message's key from this field of its JSON line.
    #[arg(long, value_name = "FIELD")]
    key_field: Option<String>,
    /// The FIFO message group of every message: they stay in order, on one queue.
    #[arg(long, value_name = "GROUP")]
    message_group: Option<String>,
    /// A property of every message (repeat for several).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    properties: Vec<(String, String)>,
    /// The file to read ('-' or none: standard input); empty lines are skipped.
    file: Option<PathBuf>,
}

fn property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))
}

/// A JSON field as message text (strings without their quotes).
fn field_text(value: &serde_json::Value, field: &str) -> Option<String> {
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl ProduceArgs {
    /// The message for line `number` of `name`.
    fn message(&self, name: &str, number: usize, line: &str) -> Result<Message> {
        let mut m = Message::new(self.topic.as_str(), line.to_owned());
        if let Some(tag) = &self.tag {
            m = m.with_tag(tag.as_str());
        }
        for (k, v) in &self.properties {
            m = m.with_property(k.as_str(), v.as_str());
        }
        if let Some(group) = &self.message_group {
            m = m.with_message_group(group.as_str());
        }
        if self.tag_field.is_none() && self.key_field.is_none() {
            return Ok(m);
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{name}:{number}: not a JSON object"))?;
        for (field, is_tag) in [(&self.tag_field, true), (&self.key_field, false)] {
            let Some(field) = field else { continue };
            let Some(text) = field_text(&value, field) else {
                bail!("{name}:{number}: the line has no field '{field}'");
            };
            m = if is_tag { m.with_tag(text) } else { m.with_key(text) };
        }
        Ok(m)
    }
}

/// Runs the command.
pub fn run(args: ProduceArgs) -> Result<()> {
    let (name, reader): (String, Box<dyn BufRead>) = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (path.display().to_string(), Box::new(std::io::BufReader::new(file)))
        }
        _ => ("<stdin>".to_owned(), Box::new(std::io::stdin().lock())),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let producer = Producer::connect(ClientConfig::new(args.server.as_str()))
            .await
            .with_context(|| format!("cannot reach the broker at {}", args.server))?;
        let (mut batch, mut sent) = (Vec::with_capacity(BATCH), 0usize);
        for (i, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{name}:{}: cannot read", i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            batch.push(args.message(&name, i + 1, &line)?);
            if batch.len() == BATCH {
                sent += batch.len();
                producer.send_batch(std::mem::take(&mut batch)).await?;
                if sent % (BATCH * 40) == 0 {
                    tracing::info!(sent, topic = %args.topic, "sending");
                }
            }
        }
        if !batch.is_empty() {
            sent += batch.len();
            producer.send_batch(batch).await?;
        }
        eprintln!("sent {sent} messages to {}", args.topic);
        Ok(())
    })
}
