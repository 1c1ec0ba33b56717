//! Client settings, the gRPC channels (the access point, and one per
//! broker that a topic's route names), topic routes, request headers and
//! signing, and the Telemetry stream that announces a client's settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rill_proto::v2;
use rill_proto::v2::messaging_service_client::MessagingServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Result};

/// An access key and its secret, for brokers with ACL on.
#[derive(Clone)]
pub struct Credentials {
    /// Access key (sent in the clear).
    pub access_key: String,
    /// Secret key (only used to sign).
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Where and how a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`, several separated by `;` (load-balanced).
    pub endpoints: String,
    /// Namespace isolating topics and groups (empty: none).
    pub namespace: String,
    /// Credentials for brokers with ACL on.
    pub credentials: Option<Credentials>,
    /// Timeout of each request.
    pub request_timeout: Duration,
    /// Identifies this client process to the broker.
    pub client_id: String,
    /// Connect over TLS, trusting this CA (PEM); `None` for plaintext.
    pub tls: Option<TlsSettings>,
    /// Ask brokers to trace every message this client sends
    /// (`rill admin trace <id>` shows its life).
    pub trace: bool,
    /// Send a batch of plain messages (one topic, no delay, one message
    /// group or none) as one packed message, when the broker says it
    /// stores them (a Rill broker does; a RocketMQ proxy does not): it
    /// keeps one record and hands consumers the messages one by one.
    pub pack_batches: bool,
}

/// TLS settings of a client.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate(s) of the CA that signed the brokers' certificates.
    pub ca_pem: Vec<u8>,
    /// Name to verify the brokers' certificates against (e.g. `localhost`).
    pub domain: String,
}

impl ClientConfig {
    /// Settings for `endpoints` with defaults (3 s timeout, no namespace).
    pub fn new(endpoints: impl Into<String>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rill".into());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self {
            endpoints: endpoints.into(),
            namespace: String::new(),
            credentials: None,
            request_timeout: Duration::from_secs(3),
            client_id: format!("{host}@{}@{nanos:x}", std::process::id()),
            tls: None,
            trace: false,
            pack_batches: true,
        }
    }

    /// Sends every batch message by message, never packed.
    pub fn without_packing(mut self) -> Self {
        self.pack_batches = false;
        self
    }

    /// Turns message tracing on for what this client sends.
    pub fn with_trace(mut self) -> Self {
        self.trace = true;
        self
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets credentials.
    pub fn with_credentials(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.credentials = Some(Credentials { access_key: access_key.into(), secret_key: secret_key.into() });
        self
    }

    /// Connects over TLS, trusting `ca_pem` and verifying brokers as `domain`.
    pub fn with_tls(mut self, ca_pem: impl Into<Vec<u8>>, domain: impl Into<String>) -> Self {
        self.tls = Some(TlsSettings { ca_pem: ca_pem.into(), domain: domain.into() });
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn addresses(&self) -> Result<Vec<(String, u16)>> {
        self.endpoints
            .split(';')
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let e = e.trim();
                let (host, port) =
                    e.rsplit_once(':').ok_or_else(|| Error::Config(format!("endpoint {e:?} is not host:port")))?;
                let port = port.parse().map_err(|_| Error::Config(format!("endpoint {e:?} has a bad port")))?;
                Ok((host.trim_matches(['[', ']']).to_owned(), port))
            })
            .collect::<Result<Vec<_>>>()
            .and_then(|a| if a.is_empty() { Err(Error::Config("no endpoints given".into())) } else { Ok(a) })
    }
}

/// How long a topic's route is trusted before it is asked for again.
const ROUTE_TTL: Duration = Duration::from_secs(30);

/// A client of one broker (or of the access point), with its channel for
/// calls whose request is encoded beforehand.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    client: MessagingServiceClient<Channel>,
    channel: Channel,
}

impl std::ops::Deref for Rpc {
    type Target = MessagingServiceClient<Channel>;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for Rpc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

/// Largest message either way.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

impl Rpc {
    fn new(channel: Channel) -> Self {
        let client = MessagingServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Self { client, channel }
    }

    /// `SendMessage` with an encoded `SendMessageRequest`: a retry sends
    /// the same bytes again instead of a copy of every message.
    pub async fn send_encoded(
        &mut self,
        request: tonic::Request<bytes::Bytes>,
    ) -> Result<tonic::Response<v2::SendMessageResponse>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        grpc.ready().await.map_err(|e| tonic::Status::unknown(format!("the channel is not ready: {e}")))?;
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/apache.rocketmq.v2.MessagingService/SendMessage");
        grpc.unary(request, path, encoded::Codec).await
    }
}

/// A codec that writes bytes encoded beforehand and decodes the answer.
mod encoded {
    use bytes::{BufMut as _, Bytes};
    use rill_proto::v2;
    use tonic::Status;
    use tonic::codec::{DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Debug, Clone, Copy)]
    pub struct Codec;

    impl tonic::codec::Codec for Codec {
        type Encode = Bytes;
        type Decode = v2::SendMessageResponse;
        type Encoder = Codec;
        type Decoder = Codec;

        fn encoder(&mut self) -> Codec {
            Codec
        }

        fn decoder(&mut self) -> Codec {
            Codec
        }
    }

    impl Encoder for Codec {
        type Item = Bytes;
        type Error = Status;

        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Codec {
        type Item = v2::SendMessageResponse;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
            prost::Message::decode(src).map(Some).map_err(|e| Status::internal(format!("undecodable answer: {e}")))
        }
    }
}

/// A topic's queues as the access point reported them.
pub(crate) type Route = Arc<Vec<v2::MessageQueue>>;

/// A connection to the access point and to every broker its routes name.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub config: Arc<ClientConfig>,
    /// The access point (the configured endpoints, load-balanced).
    pub rpc: Rpc,
    pub access_point: v2::Endpoints,
    /// Channels to brokers named in routes, by [`endpoint_key`].
    brokers: Arc<Mutex<HashMap<String, Rpc>>>,
    /// Routes by topic, with when they were fetched.
    routes: Arc<Mutex<HashMap<String, (Instant, Route)>>>,
    /// Ends the Telemetry streams (one per broker announced to) when the
    /// last clone of the client goes.
    telemetry: Arc<telemetry_task::AbortOnDrop>,
    /// Whether a broker announced to said it stores packed batches.
    packs: Arc<std::sync::atomic::AtomicBool>,
}

mod telemetry_task {
    /// Aborts background tasks (by broker) when dropped.
    #[derive(Debug, Default)]
    pub struct AbortOnDrop(pub std::sync::Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Ok(mut tasks) = self.0.lock() {
                for (_, h) in tasks.drain() {
                    h.abort();
                }
            }
        }
    }
}

/// A stable name for a broker's endpoints: its addresses, `;`-separated.
/// Receives the commands a broker sends over the Telemetry stream.
/// Receives the commands a broker (named by its key) sends over the Telemetry stream.
pub(crate) type CommandHandler = Arc<dyn Fn(&str, v2::TelemetryCommand) + Send + Sync>;

pub(crate) fn endpoint_key(e: &v2::Endpoints) -> String {
    e.addresses.iter().map(|a| format!("{}:{}", a.host, a.port)).collect::<Vec<_>>().join(";")
}

/// A lazily connecting, reconnecting channel over `addresses`.
fn rpc_for(addresses: &[(String, u16)], config: &ClientConfig) -> Result<Rpc> {
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for (host, port) in addresses {
        let uri = if host.contains(':') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        let fail = |source| Error::Connect { endpoint: uri.clone(), source };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(fail)?
            .connect_timeout(config.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if let Some(tls) = &config.tls {
            let settings = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
                .domain_name(tls.domain.clone());
            endpoint = endpoint.tls_config(settings).map_err(fail)?;
        }
        endpoints.push(endpoint);
    }
    Ok(Rpc::new(Channel::balance_list(endpoints.into_iter())))
}

impl Connection {
    /// Builds the channel; it connects lazily and reconnects by itself.
    pub fn open(config: ClientConfig) -> Result<Self> {
        let addresses = config.addresses()?;
        let rpc = rpc_for(&addresses, &config)?;
        let scheme = match addresses[0].0.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => v2::AddressScheme::IPv4,
            Ok(std::net::IpAddr::V6(_)) => v2::AddressScheme::IPv6,
            Err(_) => v2::AddressScheme::DomainName,
        };
        let access_point = v2::Endpoints {
            scheme: scheme as i32,
            addresses: addresses.iter().map(|(h, p)| v2::Address { host: h.clone(), port: i32::from(*p) }).collect(),
        };
        let brokers = HashMap::from([(endpoint_key(&access_point), rpc.clone())]);
        Ok(Self {
            config: Arc::new(config),
            rpc,
            access_point,
            brokers: Arc::new(Mutex::new(brokers)),
            routes: Arc::default(),
            telemetry: Arc::default(),
            packs: Arc::default(),
        })
    }

    /// The channel to the broker at `endpoints` (opened on first use).
    pub fn broker(&self, endpoints: &v2::Endpoints) -> Result<Rpc> {
        let key = endpoint_key(endpoints);
        let mut brokers = self.brokers.lock().map_err(|_| Error::Config("broker table poisoned".into()))?;
        if let Some(rpc) = brokers.get(&key) {
            return Ok(rpc.clone());
        }
        let addresses: Vec<(String, u16)> = endpoints
            .addresses
            .iter()
            .filter_map(|a| u16::try_from(a.port).ok().map(|p| (a.host.clone(), p)))
            .collect();
        if addresses.is_empty() {
            return Err(Error::Config(format!("the route names a broker without a usable address: {key:?}")));
        }
        let rpc = rpc_for(&addresses, &self.config)?;
        brokers.insert(key, rpc.clone());
        Ok(rpc)
    }

    /// The channel named by `key` (an [`endpoint_key`] of a broker this
    /// connection already talks to); the access point for an empty key.
    pub fn broker_by_key(&self, key: &str) -> Result<Rpc> {
        if key.is_empty() {
            return Ok(self.rpc.clone());
        }
        let brokers = self.brokers.lock().map_err(|_| Error::Config("broker table poisoned".into()))?;
        brokers.get(key).cloned().ok_or_else(|| Error::Config(format!("no connection to broker {key:?}")))
    }

    /// The queues of `topic` on every broker, from cache or the access point.
    pub async fn route(&self, topic: &str) -> Result<Route> {
        if let Ok(routes) = self.routes.lock()
            && let Some((at, route)) = routes.get(topic)
            && at.elapsed() < ROUTE_TTL
        {
            return Ok(Arc::clone(route));
        }
        let req =
            v2::QueryRouteRequest { topic: Some(self.resource(topic)), endpoints: Some(self.access_point.clone()) };
        let reply = self
            .rpc
            .clone()
            .query_route(self.request(req))
            .await
            .map_err(|source| Error::Rpc { rpc: "QueryRoute", source })?
            .into_inner();
        crate::check("QueryRoute", reply.status)?;
        let route: Route = Arc::new(reply.message_queues);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(topic.to_owned(), (Instant::now(), Arc::clone(&route)));
        }
        Ok(route)
    }

    /// Drops a cached route (after a failure), so the next call asks again.
    pub fn forget_route(&self, topic: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(topic);
        }
    }

    /// A resource in this client's namespace.
    pub fn resource(&self, name: &str) -> v2::Resource {
        v2::Resource { resource_namespace: self.config.namespace.clone(), name: name.to_owned() }
    }

    /// Wraps `msg` with the protocol headers, signature and timeout.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.config.request_timeout);
        let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let md = req.metadata_mut();
        let mut put = |k: &'static str, v: &str| {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        };
        put("x-mq-client-id", &self.config.client_id);
        put("x-mq-language", "RUST");
        put("x-mq-client-version", env!("CARGO_PKG_VERSION"));
        put("x-mq-protocol", "v2");
        put("x-mq-date-time", &date);
        put("x-mq-namespace", &self.config.namespace);
        if let Some(c) = &self.config.credentials {
            put("authorization", &sign(c, &date));
        }
        req
    }

    /// Opens the Telemetry stream, announces `settings`, and waits for the
    /// broker's reply (its view of the settings). The stream stays open in
    /// the background for later server commands.
    pub async fn announce(&self, settings: v2::Settings) -> Result<v2::Settings> {
        self.announce_with(settings, None).await
    }

    /// [`Connection::announce`], handing every later server command (such
    /// as a transaction check-back) to `on_command`.
    pub async fn announce_with(
        &self,
        settings: v2::Settings,
        on_command: Option<CommandHandler>,
    ) -> Result<v2::Settings> {
        self.announce_at(&endpoint_key(&self.access_point), settings, on_command).await
    }

    /// [`Connection::announce_with`] to the broker with key `broker` (one
    /// the client has a channel to), keeping one stream per broker.
    pub async fn announce_at(
        &self,
        broker: &str,
        settings: v2::Settings,
        on_command: Option<CommandHandler>,
    ) -> Result<v2::Settings> {
        let rpc = self.broker_by_key(broker)?;
        let (tx, mut replies, answered) = self.open_telemetry(&rpc, settings.clone()).await?;
        let key = broker.to_owned();
        // The task must not hold the guard that aborts it, or it would never end.
        let this = Connection { telemetry: Arc::default(), ..self.clone() };
        let task = tokio::spawn(async move {
            // Keep the sender alive (closing it would end the stream) and
            // drain server commands; transactions will handle them here.
            let mut _keep = tx;
            let mut backoff = Duration::from_millis(200);
            loop {
                while let Ok(Some(cmd)) = replies.message().await {
                    match &on_command {
                        Some(handle) => handle(&key, cmd),
                        None => tracing::debug!(?cmd, "telemetry command from the broker"),
                    }
                }
                // The broker went away (restart, network): announce again.
                loop {
                    tokio::time::sleep(backoff).await;
                    match this.open_telemetry(&rpc, settings.clone()).await {
                        Ok((tx, r, _)) => {
                            _keep = tx;
                            replies = r;
                            backoff = Duration::from_millis(200);
                            tracing::info!("telemetry stream to the broker re-established");
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "telemetry reconnect failed; retrying");
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });
        if let Ok(mut tasks) = self.telemetry.0.lock()
            && let Some(old) = tasks.insert(broker.to_owned(), task.abort_handle())
        {
            old.abort();
        }
        Ok(answered)
    }

    /// Whether a Telemetry stream to the broker with key `broker` is open.
    pub(crate) fn telemetry_to(&self, broker: &str) -> bool {
        self.telemetry.0.lock().is_ok_and(|t| t.contains_key(broker))
    }

    /// Opens one Telemetry stream, sends `settings` and waits for the answer.
    async fn open_telemetry(
        &self,
        rpc: &Rpc,
        settings: v2::Settings,
    ) -> Result<(tokio::sync::mpsc::Sender<v2::TelemetryCommand>, tonic::Streaming<v2::TelemetryCommand>, v2::Settings)>
    {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let hello =
            v2::TelemetryCommand { status: None, command: Some(v2::telemetry_command::Command::Settings(settings)) };
        tx.send(hello).await.map_err(|_| Error::Config("telemetry channel closed".into()))?;
        let mut rpc = rpc.clone();
        let mut request = self.request(tokio_stream::wrappers::ReceiverStream::new(rx));
        // The stream lives as long as the client; only the first reply is timed.
        request.set_timeout(Duration::from_secs(365 * 24 * 3600));
        let response = rpc.telemetry(request).await.map_err(|source| Error::Rpc { rpc: "Telemetry", source })?;
        if response.metadata().get(rill_proto::PACKED_BATCHES_HEADER).is_some() {
            self.packs.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut replies = response.into_inner();
        let first = tokio::time::timeout(self.config.request_timeout, replies.message())
            .await
            .map_err(|_| Error::Rpc {
                rpc: "Telemetry",
                source: tonic::Status::deadline_exceeded("no settings reply"),
            })?
            .map_err(|source| Error::Rpc { rpc: "Telemetry", source })?;
        let reply = first.ok_or_else(|| Error::Broker {
            rpc: "Telemetry",
            code: 0,
            message: "the broker closed the telemetry stream".into(),
        })?;
        if reply.status.is_some() {
            crate::check("Telemetry", reply.status.clone())?;
        }
        match reply.command {
            Some(v2::telemetry_command::Command::Settings(s)) => Ok((tx, replies, s)),
            _ => Err(Error::Broker { rpc: "Telemetry", code: 0, message: "the first reply held no settings".into() }),
        }
    }

    /// Whether batches may go packed: the settings allow it and a broker
    /// announced to said it stores them.
    pub fn packs(&self) -> bool {
        self.config.pack_batches && !self.config.trace && self.packs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The user agent announced in settings.
    pub fn user_agent() -> v2::Ua {
        v2::Ua {
            language: v2::Language::Rust as i32,
            version: env!("CARGO_PKG_VERSION").into(),
            platform: std::env::consts::OS.into(),
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
        }
    }
}

/// `MQv2-HMAC-SHA1` authorization header value for `date`.
pub(crate) fn sign(c: &Credentials, date: &str) -> String {
    use std::fmt::Write;
    let signature = match Hmac::<sha1::Sha1>::new_from_slice(c.secret_key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(date.as_bytes());
            mac.finalize().into_bytes().iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        }
        Err(_) => String::new(),
    };
    format!("MQv2-HMAC-SHA1 Credential={}, SignedHeaders=x-mq-date-time, Signature={signature}", c.access_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_bad_ones_are_named() {
        let c = ClientConfig::new("127.0.0.1:8081; example.org:9876");
        assert_eq!(c.addresses().unwrap(), vec![("127.0.0.1".into(), 8081), ("example.org".into(), 9876)]);
        assert!(ClientConfig::new("nope").addresses().unwrap_err().to_string().contains("nope"));
        assert!(ClientConfig::new("").addresses().is_err());
        assert_eq!(ClientConfig::new("[::1]:81").addresses().unwrap(), vec![("::1".into(), 81)]);
    }

    #[test]
    fn signature_is_hmac_sha1_of_the_date() {
        let c = Credentials { access_key: "AK".into(), secret_key: "key".into() };
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog") from RFC 2104 test vectors.
        let h = sign(&c, "The quick brown fox jumps over the lazy dog");
        assert_eq!(
            h,
            "MQv2-HMAC-SHA1 Credential=AK, SignedHeaders=x-mq-date-time, Signature=de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
    }
}
