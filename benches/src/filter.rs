//! `rill bench filter`: bytes a consumer receives over gRPC with a
//! broker-side filter matching a share of a topic, against the same topic
//! read without a filter, in one run. The broker filters before sending, so
//! the filtered consumer should receive about the matching share of the
//! bytes (RocketMQ reports 80–90 % savings for selective filters).

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use rill_client::{ClientConfig, Message, Producer};
use rill_proto::v2;
use rill_proto::v2::messaging_service_client::MessagingServiceClient;
use serde::Serialize;

use crate::local::LocalBroker;
use crate::report::{table, thousands};
use crate::{Error, Result, client_error};

/// What to run.
#[derive(Debug, Clone)]
pub struct FilterBenchOptions {
    /// Scratch directory for the broker's data; removed afterwards.
    pub dir: std::path::PathBuf,
    /// Messages in the topic.
    pub messages: u64,
    /// Body size in bytes.
    pub message_size: usize,
    /// One message in this many matches the filters.
    pub one_in: u64,
}

/// One consumer's view.
#[derive(Debug, Clone, Serialize)]
pub struct FilterCase {
    /// The filter it subscribed with.
    pub filter: String,
    /// Messages it received.
    pub messages: u64,
    /// Encoded gRPC response bytes it received (HTTP/2 framing excluded).
    pub bytes: u64,
    /// Its bytes over the unfiltered consumer's (the anchor).
    pub ratio_vs_unfiltered: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FilterBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// Share of the topic the filters match.
    pub matching_share: f64,
    /// The consumers.
    pub cases: Vec<FilterCase>,
}

impl FilterBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.filter.clone(),
                    thousands(c.messages as f64),
                    thousands(c.bytes as f64),
                    format!("{:.3} (matching share {:.3})", c.ratio_vs_unfiltered, self.matching_share),
                ]
            })
            .collect();
        table(&["filter", "messages", "bytes received", "ratio vs unfiltered"], &rows)
    }
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &FilterBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<FilterBenchReport> {
    if opts.messages == 0 || opts.messages > 1_000_000 || opts.one_in == 0 {
        return Err(Error::Options {
            option: "--messages / --one-in",
            reason: "messages 1..=1,000,000, one-in ≥ 1".into(),
        });
    }
    let broker = LocalBroker::start(&opts.dir, false)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| Error::Io {
        op: "start a runtime in",
        path: opts.dir.clone(),
        source,
    })?;
    let endpoint = broker.addr.to_string();
    let result = runtime.block_on(async {
        progress(&format!("sending {} messages, one in {} tagged 'hot'", thousands(opts.messages as f64), opts.one_in));
        let producer = Producer::connect(ClientConfig::new(&endpoint)).await.map_err(client_error)?;
        let body = Bytes::from(vec![b'x'; opts.message_size]);
        let mut pending = Vec::new();
        for i in 0..opts.messages {
            let hot = i % opts.one_in == 0;
            let m = Message::new("filtered", body.clone())
                .with_tag(if hot { "hot" } else { "cold" })
                .with_property("heat", if hot { "hot" } else { "cold" });
            pending.push(producer.send_async(m));
            if pending.len() >= 256 {
                for p in pending.drain(..) {
                    p.await
                        .map_err(|_| Error::Options { option: "send", reason: "producer went away".into() })?
                        .map_err(client_error)?;
                }
            }
        }
        for p in pending {
            p.await
                .map_err(|_| Error::Options { option: "send", reason: "producer went away".into() })?
                .map_err(client_error)?;
        }
        let mut rpc = MessagingServiceClient::connect(format!("http://{endpoint}"))
            .await
            .map_err(|e| Error::Options { option: "connect", reason: e.to_string() })?
            .max_decoding_message_size(64 << 20);
        let mut cases = Vec::new();
        for (group, kind, expr) in [
            ("all", v2::FilterType::Tag, "*"),
            ("tag", v2::FilterType::Tag, "hot"),
            ("sql", v2::FilterType::Sql, "heat = 'hot'"),
        ] {
            progress(&format!("consuming with {expr:?}"));
            let (messages, bytes) = drain(&mut rpc, group, kind, expr).await?;
            let label = if kind == v2::FilterType::Sql { format!("SQL92 {expr}") } else { format!("tag {expr}") };
            cases.push(FilterCase { filter: label, messages, bytes, ratio_vs_unfiltered: 0.0 });
        }
        let all = cases[0].bytes.max(1) as f64;
        for c in &mut cases {
            c.ratio_vs_unfiltered = c.bytes as f64 / all;
        }
        Ok(FilterBenchReport { bench: "filter", matching_share: 1.0 / opts.one_in as f64, cases })
    });
    drop(runtime);
    broker.shutdown()?;
    let _ = std::fs::remove_dir_all(&opts.dir);
    result
}

/// Receives everything `group` gets with the filter; returns messages and bytes.
async fn drain(
    rpc: &mut MessagingServiceClient<tonic::transport::Channel>,
    group: &str,
    kind: v2::FilterType,
    expr: &str,
) -> Result<(u64, u64)> {
    let limit = Instant::now() + Duration::from_secs(120);
    let (mut messages, mut bytes) = (0u64, 0u64);
    let resource = |name: &str| Some(v2::Resource { resource_namespace: String::new(), name: name.into() });
    loop {
        let req = v2::ReceiveMessageRequest {
            group: resource(group),
            message_queue: Some(v2::MessageQueue { topic: resource("filtered"), id: -1, ..Default::default() }),
            filter_expression: Some(v2::FilterExpression { r#type: kind as i32, expression: expr.into() }),
            batch_size: 32,
            invisible_duration: Some(rill_proto::time::from_duration(Duration::from_secs(300))),
            auto_renew: false,
            long_polling_timeout: Some(rill_proto::time::from_duration(Duration::from_millis(200))),
            attempt_id: None,
        };
        let mut stream = rpc
            .receive_message(req)
            .await
            .map_err(|e| Error::Options { option: "receive", reason: e.to_string() })?
            .into_inner();
        let mut got = 0;
        while let Some(item) =
            stream.message().await.map_err(|e| Error::Options { option: "receive", reason: e.to_string() })?
        {
            bytes += item.encoded_len() as u64;
            if let Some(v2::receive_message_response::Content::Message(_)) = item.content {
                got += 1;
            }
        }
        messages += got;
        if got == 0 || Instant::now() > limit {
            return Ok((messages, bytes));
        }
    }
}
