//! A pipeline against an in-process broker: JSON bids in, per-auction
//! window counts and sums out, equal to a direct computation; a message
//! that does not fit the schema goes to the dead-letter output with its
//! coordinates.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMillisecondType};
use datafusion::logical_expr::{col, lit};
use rill_broker::{Broker, BrokerConfig};
use rill_client::{ClientConfig, FilterExpression, Message, Producer, StartFrom};
use rill_store::{MetaStore, Store, StoreConfig};
use rill_streams::dsl::Tumbling;
use rill_streams::{CollectSink, DeadLetter, Decoder, Pipeline, RunnerConfig, TopicInput, agg};
use rill_time::WatermarkConfig;

async fn broker(dir: &std::path::Path) -> (Arc<Broker>, String, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = StoreConfig::new(dir.join("data"));
    cfg.segment_size = 8 << 20;
    let store = Store::open(cfg).unwrap();
    let meta = MetaStore::open(dir.join("data/meta")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker =
        Broker::new(store, meta, BrokerConfig { store_host: addr, default_queues: 4, ..BrokerConfig::default() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(rill_broker::service::serve(Arc::clone(&broker), addr, listener, None, async move {
        let _ = stopped.await;
    }));
    (broker, addr.to_string(), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bids_become_window_counts_equal_to_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr, _stop) = broker(dir.path()).await;
    let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
    let base = 1_700_000_000_000i64;
    let mut bids = Vec::new();
    for i in 0..400i64 {
        // Out of order by up to 300 ms.
        let ts = base + i * 10 - (i * 37 % 30) * 10;
        bids.push((i % 5, ts, i));
    }
    for (auction, ts, price) in &bids {
        let body = format!(r#"{{"auction": {auction}, "ts": {ts}, "price": {price}}}"#);
        producer.send(Message::new("bids", body)).await.unwrap();
    }
    producer.send(Message::new("bids", "not json")).await.unwrap();

    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
    ]));
    let results = CollectSink::new();
    let dead: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let d = Arc::clone(&dead);
    let mut config = RunnerConfig::new(ClientConfig::new(&addr), "bid-stats");
    config.until_caught_up = true;
    config.checkpoint_dir = Some(dir.path().join("checkpoints"));
    let input = TopicInput {
        source: "bids".into(),
        topic: "bids".into(),
        event_time: "ts".into(),
        decoder: Decoder::new(schema, vec![]).unwrap(),
        filter: FilterExpression::all(),
        watermarks: WatermarkConfig { max_out_of_orderness: 400, idle_timeout: None },
        start: StartFrom::Earliest,
    };
    let job = Pipeline::from_topic(config, input)
        // Bids of auction 4 are test traffic; prices count double.
        .filter(col("auction").not_eq(lit(4i64)))
        .select(vec![col("auction"), col("ts"), (col("price") * lit(2i64)).alias("price")])
        .key_by(&["auction"])
        .window(Tumbling::of(Duration::from_millis(500)))
        .aggregate(vec![agg::count("price").alias("bids"), agg::sum("price").alias("total")])
        .sink(results.clone());
    job.dead_letters(move |x| d.lock().unwrap().push(x));
    let report = job.run(stopped).await.unwrap();
    assert_eq!(report.messages, 401);
    assert_eq!(report.dead, 1);
    assert_eq!(report.checkpoints, 1, "one checkpoint on the way out");
    let dead = dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert!(matches!(&dead[0].origin, rill_streams::Origin::Message { topic, .. } if topic == "bids"), "{dead:?}");
    assert!(!dead[0].body.is_empty(), "the message travels with its reason");
    // The offsets reached the broker with the checkpoint.
    let committed: u64 = broker.meta().group_offsets("bid-stats").get("bids").map_or(0, |q| q.values().sum());
    assert_eq!(committed, 401);

    let mut got: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for b in results.batches().iter() {
        let auction = b.column(0).as_primitive::<Int64Type>();
        let start = b.column(1).as_primitive::<TimestampMillisecondType>();
        let n = b.column(4).as_primitive::<Int64Type>();
        let total = b.column(5).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(
                got.insert((auction.value(i), start.value(i)), (n.value(i), total.value(i))).is_none(),
                "fired twice"
            );
        }
    }
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (auction, ts, price) in bids.iter().filter(|b| b.0 != 4) {
        let e = want.entry((*auction, ts - ts.rem_euclid(500))).or_default();
        e.0 += 1;
        e.1 += price * 2;
    }
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_windows_count_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, _stop) = broker(dir.path()).await;
    let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
    for i in 0..120 {
        // Event times in the bodies are nonsense; processing time ignores them.
        let body = format!(r#"{{"auction": {}, "ts": {}}}"#, i % 3, (i * 7_919) % 1_000);
        producer.send(Message::new("clicks", body)).await.unwrap();
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    let mut config = RunnerConfig::new(ClientConfig::new(&addr), "clicks-per-second");
    config.until_caught_up = true;
    config.processing_time = true;
    let input = TopicInput {
        source: "clicks".into(),
        topic: "clicks".into(),
        event_time: "proc_time".into(),
        decoder: Decoder::new(schema, vec![rill_streams::Metadata::ProcessingTime]).unwrap(),
        filter: FilterExpression::all(),
        watermarks: WatermarkConfig { max_out_of_orderness: 0, idle_timeout: None },
        start: StartFrom::Earliest,
    };
    let results = CollectSink::new();
    let (_s, stopped) = tokio::sync::watch::channel(false);
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    Pipeline::from_topic(config, input)
        .key_by(&["auction"])
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(vec![agg::count("auction").alias("clicks")])
        .sink(results.clone())
        .run(stopped)
        .await
        .unwrap();
    let mut total = 0;
    for b in results.batches() {
        total += b.column(4).as_primitive::<Int64Type>().values().iter().sum::<i64>();
        let start = b.column(1).as_primitive::<TimestampMillisecondType>();
        assert!(start.values().iter().all(|s| *s >= before - 1_000), "windows are in wall-clock time");
    }
    assert_eq!(total, 120, "every message counted once");
}

/// `GET /metrics` over plain HTTP/1.0.
async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_the_queues_and_a_job_serves_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, _stop) = broker(dir.path()).await;
    let producer = Producer::connect(ClientConfig::new(&addr)).await.unwrap();
    for i in 0..400i64 {
        let body = format!(r#"{{"id": {i}, "ts": {}}}"#, 1_700_000_000_000i64 + i);
        producer.send(Message::new("events", body)).await.unwrap();
    }
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("ts", DataType::Int64, false)]));
    let input = || TopicInput {
        source: "events".into(),
        topic: "events".into(),
        event_time: "ts".into(),
        decoder: Decoder::new(Arc::clone(&schema), vec![]).unwrap(),
        filter: FilterExpression::all(),
        watermarks: WatermarkConfig { max_out_of_orderness: 0, idle_timeout: None },
        start: StartFrom::Earliest,
    };
    let ids = |sink: &CollectSink| -> Vec<i64> {
        let mut v: Vec<i64> =
            sink.batches().iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        v.sort_unstable();
        v
    };
    // Two members of one group, each reading its half of the queues.
    let mut halves = Vec::new();
    for index in 0..2 {
        let mut config = RunnerConfig::new(ClientConfig::new(&addr), "split");
        config.until_caught_up = true;
        config.member = rill_streams::Member::new(index, 2).unwrap();
        let sink = CollectSink::new();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let report = Pipeline::from_topic(config, input()).sink(sink.clone()).run(stopped).await.unwrap();
        assert!(report.messages > 0 && report.messages < 400, "member {index} read {}", report.messages);
        halves.push(ids(&sink));
    }
    let mut all: Vec<i64> = halves.concat();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>(), "each message read by exactly one member");
    assert!(rill_streams::Member::new(2, 2).is_err());

    // Two instances inside one process split the queues the same way.
    let sinks = [CollectSink::new(), CollectSink::new()];
    let checkpoints = dir.path().join("parallel");
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let reports = Pipeline::run_parallel(
        2,
        |i| {
            let mut config = RunnerConfig::new(ClientConfig::new(&addr), "parallel");
            config.until_caught_up = true;
            config.checkpoint_dir = Some(checkpoints.clone());
            Pipeline::from_topic(config, input()).sink(sinks[i as usize].clone())
        },
        stopped,
    )
    .await
    .unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.messages > 0 && r.checkpoints == 1), "{reports:?}");
    let mut all: Vec<i64> = [ids(&sinks[0]), ids(&sinks[1])].concat();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>(), "each message read by exactly one instance");
    assert!(checkpoints.join("instance-0").is_dir() && checkpoints.join("instance-1").is_dir());

    // A job left running serves its figures at /metrics.
    let metrics = free_port();
    let mut config = RunnerConfig::new(ClientConfig::new(&addr), "watched");
    config.metrics_addr = Some(metrics);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let job = tokio::spawn(
        Pipeline::from_topic(config, input()).filter(col("id").lt(lit(100i64))).sink(CollectSink::new()).run(stopped),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(metrics).await.unwrap_or_default();
        if text.contains("rill_job_messages_total{job=\"watched\"} 400") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("rill_job_messages_total{job=\"watched\"} 400"), "{text}");
    assert!(text.contains("rill_job_operator_rows_in_total{job=\"watched\",operator=\"filter"), "{text}");
    assert!(text.contains("rill_job_operator_rows_out_total{job=\"watched\",operator=\"filter"), "{text}");
    stop.send(true).unwrap();
    job.await.unwrap().unwrap();
    assert!(scrape(metrics).await.is_none(), "the endpoint closes with the job");
}

/// A [`rill_streams::VecSource`] that remembers what checkpoints told it.
struct Recording {
    inner: rill_streams::VecSource,
    committed: Arc<Mutex<Vec<String>>>,
}

impl rill_streams::Source for Recording {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
    fn start(&mut self, position: Option<&str>) -> rill_streams::Result<()> {
        self.inner.start(position)
    }
    fn poll(&mut self) -> rill_streams::Polled<'_> {
        self.inner.poll()
    }
    fn position(&self) -> String {
        self.inner.position()
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
    fn committed(&mut self, position: &str) -> rill_streams::Result<()> {
        self.committed.lock().unwrap().push(position.to_owned());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_source_resumes_from_its_checkpointed_position() {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr, _stop) = broker(dir.path()).await;
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("ts", DataType::Int64, false)]));
    let batches: Vec<RecordBatch> = (0..8i64)
        .map(|b| {
            let ids: Vec<i64> = (b * 10..b * 10 + 10).collect();
            let ts: Vec<i64> = ids.iter().map(|i| 1_700_000_000_000 + i).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(ids)), Arc::new(Int64Array::from(ts))],
            )
            .unwrap()
        })
        .collect();
    let out = dir.path().join("out");
    let committed: Arc<Mutex<Vec<String>>> = Arc::default();
    // Three runs of the same job: 5 batches, then the same 5 again (nothing
    // new), then all 8 — each picks up where the last checkpoint ended.
    for (run, available) in [(0, 5usize), (1, 5), (2, 8)] {
        let mut config = RunnerConfig::new(ClientConfig::new(&addr), "connector");
        config.until_caught_up = true;
        config.checkpoint_dir = Some(dir.path().join("checkpoints"));
        let job = rill_streams::Job::new();
        job.run_with(config);
        let source = Recording {
            inner: rill_streams::VecSource::new(Arc::clone(&schema), batches[..available].to_vec()),
            committed: Arc::clone(&committed),
        };
        job.connector(rill_streams::SourceInput {
            source: "events".into(),
            event_time: "ts".into(),
            watermarks: WatermarkConfig { max_out_of_orderness: 0, idle_timeout: None },
            inner: Box::new(source),
        })
        .sink(rill_streams::JsonFileSink::new(&out).unwrap());
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let report = job.run(stopped).await.unwrap();
        let expected_new = [50, 0, 30][run];
        assert_eq!(report.messages, expected_new, "run {run}: {report:?}");
    }
    let mut ids: Vec<i64> = Vec::new();
    for file in rill_streams::JsonFileSink::committed(&out).unwrap() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v["id"].as_i64().unwrap());
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..80).collect::<Vec<_>>(), "every row once across the three runs");
    assert_eq!(
        committed.lock().unwrap().last().map(String::as_str),
        Some("8"),
        "the source heard of the last checkpoint"
    );
}
