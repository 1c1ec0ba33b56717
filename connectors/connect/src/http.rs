//! `http` as a connect source: every event POSTed to `/ingest/{topic}` is
//! one record, routed by the connector's `topic:` template (`{topic}` is
//! the path's), keyed by the `key.field`, with the caller's address and
//! user agent as the properties `client` and `user-agent`. A request is
//! answered after the broker acknowledged its records, when the runtime
//! says so. Serving HTTP is `rill-http`'s; this adapts it.

use std::time::Duration;

use rill_http::{HttpConfig, HttpIngest};
use rill_sql::{OptionSpec, Options};

use crate::source::{Pending, Record, RecordSource, RecordSourceConnector};

/// Events taken per poll (whole requests).
const BATCH: usize = 4096;
/// How long a poll waits for a request.
const WAIT: Duration = Duration::from_millis(200);

/// The `http` record source connector.
#[derive(Debug)]
pub struct HttpConnector;

impl RecordSourceConnector for HttpConnector {
    fn options(&self) -> &'static [OptionSpec] {
        rill_http::OPTIONS
    }

    fn build(&self, options: &Options) -> Result<Box<dyn RecordSource>, String> {
        let config = HttpConfig::from_options(options).map_err(|e| e.to_string())?;
        Ok(Box::new(HttpRecords { config, ingest: None }))
    }
}

struct HttpRecords {
    config: HttpConfig,
    ingest: Option<HttpIngest>,
}

impl RecordSource for HttpRecords {
    fn open(&mut self, _position: Option<String>) -> Pending<'_, ()> {
        Box::pin(async move {
            self.ingest = Some(HttpIngest::start(self.config.clone()).await.map_err(|e| e.to_string())?);
            Ok(())
        })
    }

    fn poll(&mut self) -> Pending<'_, Vec<Record>> {
        Box::pin(async move {
            let ingest = self.ingest.as_mut().ok_or("the source is not open")?;
            let beacons = ingest.next(BATCH, WAIT).await;
            let tag = self.config.tag.clone();
            Ok(beacons
                .into_iter()
                .map(|b| {
                    let mut properties = Vec::new();
                    if let Some(c) = &b.client {
                        properties.push(("client", c.clone()));
                    }
                    if let Some(a) = b.user_agent {
                        properties.push(("user-agent", a));
                    }
                    Record {
                        location: Some(format!(
                            "event posted to /ingest/{} by {}",
                            b.topic,
                            b.client.as_deref().unwrap_or("?")
                        )),
                        key: b.key,
                        tag: tag.clone(),
                        group: None,
                        vars: vec![("topic".to_owned(), b.topic)],
                        origin_ms: None,
                        properties,
                        error: None,
                        body: b.body,
                    }
                })
                .collect())
        })
    }

    fn position(&self) -> String {
        // How many were handed out: nothing to resume from (callers resend
        // what was not answered, the MQTT broker what was not acknowledged),
        // but what a checkpoint covers.
        self.ingest.as_ref().map_or(0, |s| s.handed()).to_string()
    }

    fn acknowledge_through(&mut self, position: &str) {
        if let (Some(s), Ok(n)) = (&mut self.ingest, position.parse()) {
            s.acknowledge_through(n);
        }
    }

    fn acknowledged(&mut self) {
        if let Some(ingest) = &mut self.ingest {
            ingest.acknowledged();
        }
    }
}
