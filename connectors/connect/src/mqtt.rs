//! `mqtt` as a connect source: every MQTT message is one record, routed
//! by the connector's `topic:` template over the topic pattern's names
//! (`iot-{kind}`), keyed and tagged by the `key` and `tag` templates, with
//! the MQTT topic as the property `mqtt-topic`. A message whose topic does
//! not fit the pattern goes to the dead-letter topic. QoS 1 messages are
//! acknowledged to the MQTT broker when the runtime says the broker has
//! them. The session is `rill-mqtt`'s; this adapts it.

use std::time::Duration;

use rill_mqtt::{MqttConfig, MqttSource};
use rill_sql::{OptionSpec, Options};

use crate::source::{Pending, Record, RecordSource, RecordSourceConnector};

/// Messages taken per poll.
const BATCH: usize = 4096;
/// How long a poll waits for a message.
const WAIT: Duration = Duration::from_millis(200);

/// The `mqtt` record source connector.
#[derive(Debug)]
pub struct MqttConnector;

impl RecordSourceConnector for MqttConnector {
    fn options(&self) -> &'static [OptionSpec] {
        rill_mqtt::OPTIONS
    }

    fn build(&self, options: &Options) -> Result<Box<dyn RecordSource>, String> {
        let config = MqttConfig::from_options(options).map_err(|e| e.to_string())?;
        Ok(Box::new(MqttRecords { config, session: None }))
    }
}

struct MqttRecords {
    config: MqttConfig,
    session: Option<MqttSource>,
}

impl RecordSource for MqttRecords {
    fn open(&mut self, _position: Option<String>) -> Pending<'_, ()> {
        Box::pin(async move {
            // The MQTT broker keeps the session's place; there is no position of ours.
            self.session = Some(MqttSource::connect(self.config.clone()).await.map_err(|e| e.to_string())?);
            Ok(())
        })
    }

    fn poll(&mut self) -> Pending<'_, Vec<Record>> {
        Box::pin(async move {
            let session = self.session.as_mut().ok_or("the source is not open")?;
            let messages = session.next(BATCH, WAIT).await;
            Ok(messages
                .into_iter()
                .map(|m| Record {
                    location: Some(format!("MQTT message on {}", m.topic)),
                    group: None,
                    key: m.key,
                    tag: m.tag,
                    vars: m.vars,
                    origin_ms: None,
                    properties: vec![("mqtt-topic", m.topic)],
                    error: m.error,
                    body: m.payload,
                })
                .collect())
        })
    }

    fn position(&self) -> String {
        // How many were handed out: nothing to resume from (callers resend
        // what was not answered, the MQTT broker what was not acknowledged),
        // but what a checkpoint covers.
        self.session.as_ref().map_or(0, |s| s.handed()).to_string()
    }

    fn acknowledge_through(&mut self, position: &str) {
        if let (Some(s), Ok(n)) = (&mut self.session, position.parse()) {
            s.acknowledge_through(n);
        }
    }

    fn acknowledged(&mut self) {
        if let Some(s) = &mut self.session {
            s.acknowledged();
        }
    }

    fn close(&mut self) -> Pending<'_, ()> {
        Box::pin(async move {
            if let Some(s) = self.session.take() {
                s.close().await;
            }
            Ok(())
        })
    }
}
