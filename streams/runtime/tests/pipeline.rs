//! A pipeline against an in-process broker: JSON bids in, per-auction
//! window counts and sums out, equal to a direct computation; a message
//! that does not fit the schema goes to the dead-letter output with its
//! coordinates.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMillisecondType};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::{col, lit};
use rill_broker::{Broker, BrokerConfig};
use rill_client::{ClientConfig, Message, Producer};
use rill_store::{MetaStore, Store, StoreConfig};
use rill_streams::{Aggregate, DeadLetter, JsonDecoder, Pipeline, WindowAggregateConfig};
use rill_time::{WatermarkConfig, WindowSpec};

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
    let results: Arc<Mutex<Vec<RecordBatch>>> = Arc::default();
    let dead: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (r, d) = (Arc::clone(&results), Arc::clone(&dead));
    let run = tokio::spawn(
        Pipeline::from_topic(ClientConfig::new(&addr), "bids", "bid-stats")
            .decode(JsonDecoder::new(schema, vec![]).unwrap())
            // Bids of auction 4 are test traffic; prices count double.
            .filter_rows(col("auction").not_eq(lit(4i64)))
            .select(vec![(col("auction"), "auction"), (col("ts"), "ts"), (col("price") * lit(2i64), "price")])
            .watermarks(WatermarkConfig { max_out_of_orderness: 400, idle_timeout: None })
            .window(WindowAggregateConfig {
                time_column: "ts".into(),
                keys: vec!["auction".into()],
                windows: WindowSpec::tumbling(500).unwrap().into(),
                aggregates: vec![
                    Aggregate { function: count_udaf(), column: "price".into(), name: "bids".into() },
                    Aggregate { function: sum_udaf(), column: "price".into(), name: "total".into() },
                ],
                allowed_lateness: 0,
            })
            .sink(move |b| r.lock().unwrap().push(b))
            .dead_letters(move |x| d.lock().unwrap().push(x))
            .run(stopped),
    );
    // Everything consumed once the group's offsets reach the end of every queue.
    let started = Instant::now();
    loop {
        let committed: u64 = broker.meta().group_offsets("bid-stats").get("bids").map_or(0, |q| q.values().sum());
        if committed == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "consumed {committed} of 401");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send_replace(true);
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.messages, 401);
    assert_eq!(report.dead, 1);
    assert_eq!(report.late, 0, "within the out-of-orderness bound");
    let dead = dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].topic, "bids");

    let mut got: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for b in results.lock().unwrap().iter() {
        let auction = b.column(0).as_primitive::<Int64Type>();
        let start = b.column(1).as_primitive::<TimestampMillisecondType>();
        let n = b.column(3).as_primitive::<Int64Type>();
        let total = b.column(4).as_primitive::<Int64Type>();
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
