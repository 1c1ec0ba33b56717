//! The Settings the broker answers a client's Telemetry Settings with.
//!
//! Clients take several limits from the server (a missing backoff policy
//! crashes the Node producer; `max_body_size` 0 rejects every send; the
//! Python push consumer stalls without `metric`), so every field the
//! clients rely on is filled in.

use std::time::Duration;

use rill_proto::time::from_duration;
use rill_proto::v2;

/// RocketMQ's retry delays for consumers, in seconds (levels 3..18); the
/// broker's default `retry_delays`.
pub const CONSUMER_RETRY_DELAYS: [u64; 16] =
    [10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];

/// What the broker tells clients.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest message body accepted.
    pub max_body_size: usize,
    /// Messages per receive call.
    pub receive_batch_size: i32,
    /// Longest a receive waits for messages.
    pub long_polling_timeout: Duration,
    /// Redeliveries before a message goes to the dead-letter queue.
    pub max_retries: u32,
    /// Wait before each retry (push consumers nack with these).
    pub retry_delays: Vec<Duration>,
}

/// Completes a client's Settings with the server's view.
///
/// `metric_endpoints` is where clients are told to send metrics. Metrics are
/// announced as on: the Python push consumer registers its gauges on the
/// meter provider that only exists when metrics are on, and without it the
/// Telemetry stream reader dies (so later server commands would be lost).
pub fn merge(
    client: v2::Settings,
    server: &ServerSettings,
    group_fifo: bool,
    metric_endpoints: &v2::Endpoints,
) -> v2::Settings {
    let client_type = client.client_type.and_then(|t| v2::ClientType::try_from(t).ok());
    let mut out = client;
    let producer = matches!(client_type, Some(v2::ClientType::Producer));
    out.backoff_policy = Some(if producer {
        v2::RetryPolicy {
            max_attempts: 3,
            strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(v2::ExponentialBackoff {
                initial: Some(from_duration(Duration::from_millis(10))),
                max: Some(from_duration(Duration::from_secs(1))),
                multiplier: 2.0,
            })),
        }
    } else {
        v2::RetryPolicy {
            max_attempts: server.max_retries as i32 + 1,
            strategy: Some(v2::retry_policy::Strategy::CustomizedBackoff(v2::CustomizedBackoff {
                next: server.retry_delays.iter().map(|d| from_duration(*d)).collect(),
            })),
        }
    });
    match out.pub_sub.as_mut() {
        Some(v2::settings::PubSub::Publishing(p)) => {
            p.max_body_size = server.max_body_size as i32;
            p.validate_message_type = true;
        }
        Some(v2::settings::PubSub::Subscription(s)) => {
            s.fifo = Some(group_fifo);
            s.receive_batch_size = Some(server.receive_batch_size);
            s.long_polling_timeout = Some(from_duration(server.long_polling_timeout));
        }
        None if producer => {
            out.pub_sub = Some(v2::settings::PubSub::Publishing(v2::Publishing {
                topics: Vec::new(),
                max_body_size: server.max_body_size as i32,
                validate_message_type: true,
            }))
        }
        None => {}
    }
    out.metric = Some(v2::Metric { on: true, endpoints: Some(metric_endpoints.clone()) });
    if out.request_timeout.is_none() {
        out.request_timeout = Some(from_duration(Duration::from_secs(3)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerSettings {
        ServerSettings {
            max_body_size: 4 << 20,
            receive_batch_size: 32,
            long_polling_timeout: Duration::from_secs(20),
            max_retries: 16,
            retry_delays: CONSUMER_RETRY_DELAYS.iter().map(|s| Duration::from_secs(*s)).collect(),
        }
    }

    #[test]
    fn producers_get_limits_and_a_backoff_policy() {
        let client = v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing::default())),
            ..Default::default()
        };
        let s = merge(client, &server(), false, &v2::Endpoints::default());
        let Some(v2::settings::PubSub::Publishing(p)) = s.pub_sub else { panic!("no publishing") };
        assert_eq!(p.max_body_size, 4 << 20);
        assert!(p.validate_message_type);
        assert!(matches!(s.backoff_policy.unwrap().strategy, Some(v2::retry_policy::Strategy::ExponentialBackoff(_))));
        assert!(s.metric.unwrap().on);
    }

    #[test]
    fn consumers_get_the_retry_schedule_and_polling_settings() {
        let client = v2::Settings {
            client_type: Some(v2::ClientType::SimpleConsumer as i32),
            pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription::default())),
            ..Default::default()
        };
        let s = merge(client, &server(), true, &v2::Endpoints::default());
        let policy = s.backoff_policy.unwrap();
        assert_eq!(policy.max_attempts, 17);
        let Some(v2::retry_policy::Strategy::CustomizedBackoff(b)) = policy.strategy else { panic!("no backoff") };
        assert_eq!(b.next.len(), 16);
        assert_eq!(b.next[0].seconds, 10);
        let Some(v2::settings::PubSub::Subscription(sub)) = s.pub_sub else { panic!("no subscription") };
        assert_eq!(sub.receive_batch_size, Some(32));
        assert_eq!(sub.fifo, Some(true));
        assert_eq!(sub.long_polling_timeout.unwrap().seconds, 20);
    }
}
