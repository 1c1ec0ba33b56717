//! `file-tail` as a connect source: each line (or multi-line event) of
//! the group's files is one record, tagged with the group's `tag`, with
//! the file name, host and byte offset as the properties `file`, `host`
//! and `offset`. Lines that do not parse (or were cut for length) go to
//! the dead-letter topic with the reason. Reading files is `rill-tail`'s;
//! this adapts it, reading on a blocking thread.

use std::time::Duration;

use rill_sql::{OptionSpec, Options};
use rill_tail::{TailConfig, Tailer};

use crate::source::{Pending, Record, RecordSource, RecordSourceConnector};

/// Bytes read per poll.
const BUDGET: usize = 8 << 20;
/// How long a poll that found nothing waits before saying so.
const IDLE: Duration = Duration::from_millis(50);

/// The `file-tail` record source connector.
#[derive(Debug)]
pub struct TailConnector;

impl RecordSourceConnector for TailConnector {
    fn options(&self) -> &'static [OptionSpec] {
        rill_tail::OPTIONS
    }

    fn build(&self, options: &Options) -> Result<Box<dyn RecordSource>, String> {
        let config = TailConfig::from_options(options).map_err(|e| e.to_string())?;
        Ok(Box::new(TailRecords { config, tailer: None }))
    }
}

struct TailRecords {
    config: TailConfig,
    tailer: Option<Tailer>,
}

impl RecordSource for TailRecords {
    fn open(&mut self, position: Option<String>) -> Pending<'_, ()> {
        Box::pin(async move {
            let config = self.config.clone();
            let tailer = tokio::task::spawn_blocking(move || Tailer::open(config, position.as_deref()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            self.tailer = Some(tailer);
            Ok(())
        })
    }

    fn poll(&mut self) -> Pending<'_, Vec<Record>> {
        Box::pin(async move {
            let mut tailer = self.tailer.take().ok_or("the source is not open")?;
            let (tailer, events) = tokio::task::spawn_blocking(move || {
                let events = tailer.poll(BUDGET);
                (tailer, events)
            })
            .await
            .map_err(|e| e.to_string())?;
            self.tailer = Some(tailer);
            let events = events.map_err(|e| e.to_string())?;
            if events.is_empty() {
                tokio::time::sleep(IDLE).await;
            }
            let (tag, host) = (self.config.tag.clone(), self.config.host.clone());
            // A poll's events mostly share a file: its name is spelled once.
            let mut named: Option<(std::sync::Arc<std::path::Path>, String)> = None;
            Ok(events
                .into_iter()
                .map(|e| {
                    let file = match &named {
                        Some((path, name)) if std::sync::Arc::ptr_eq(path, &e.path) => name.clone(),
                        _ => {
                            let name = e.path.display().to_string();
                            named = Some((std::sync::Arc::clone(&e.path), name.clone()));
                            name
                        }
                    };
                    Record {
                        key: None,
                        tag: tag.clone(),
                        group: None,
                        vars: Vec::new(),
                        origin_ms: None,
                        // Spelled from the properties when asked ([`RecordSource::locate`]).
                        location: None,
                        properties: vec![("file", file), ("host", host.clone()), ("offset", e.offset.to_string())],
                        error: e.error,
                        body: e.body,
                    }
                })
                .collect())
        })
    }

    fn position(&self) -> String {
        self.tailer.as_ref().map(Tailer::position).unwrap_or_default()
    }

    fn locate(&self, record: &Record) -> Option<String> {
        let property = |name| record.properties.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
        Some(format!("file {} at byte {}", property("file")?, property("offset")?))
    }
}
