//! MQTT device readings → per-device 1-minute aggregates (job.sql), in
//! one command:
//!
//! ```sh
//! examples/iot-mqtt/run.sh
//! ```
//!
//! Three devices publish a reading every 5 s of event time for three
//! minutes (`mosquitto_pub`, QoS 1, to the machine's Mosquitto on
//! 127.0.0.1:1883) while the pipeline is still down: its persistent MQTT
//! session, opened once beforehand, keeps them. Then the job starts, takes
//! them, and writes one row per device and minute. The example computes
//! the same aggregates from what it published, prints the job's rows and
//! exits non-zero unless they agree within a minute.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rill_mqtt::{MqttConfig, MqttSource};

const DEVICES: [&str; 3] = ["boiler-1", "fridge-7", "lab-3"];
const MINUTES: i64 = 3;
/// 2026-11-25T13:00:00Z
const START_MS: i64 = 1_795_611_600_000;

/// (count, sum of temp, max temp, min humidity) per (device, minute "2026-11-25T13:00").
type Aggregates = BTreeMap<(String, String), (i64, f64, f64, f64)>;

fn minute(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms - ms % 60_000)
        .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

fn publish(topic: &str, payload: &str) -> Result<()> {
    let out = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1", "-t", topic, "-m", payload])
        .output()
        .context("running mosquitto_pub (package mosquitto-clients; run.sh installs it)")?;
    if !out.status.success() {
        bail!("mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Publishes every reading in event-time order; returns the aggregates they make.
fn publish_readings(prefix: &str) -> Result<Aggregates> {
    let mut expected = Aggregates::new();
    // Two steps more than the minutes hold: readings 5 s into the next minute close the last one
    // (the watermark trails them by 2 s).
    for step in 0..MINUTES * 12 + 2 {
        let ts = START_MS + step * 5_000;
        for (d, device) in DEVICES.iter().enumerate() {
            let temp = 18.0 + 4.0 * d as f64 + (step % 7) as f64 * 0.5;
            let humidity = 40.0 + ((step * 3 + d as i64) % 11) as f64;
            let body = format!(r#"{{"device":"{device}","temp":{temp:.1},"humidity":{humidity:.1},"ts":{ts}}}"#);
            publish(&format!("{prefix}/{device}/telemetry"), &body)?;
            if step < MINUTES * 12 {
                let e = expected.entry(((*device).to_owned(), minute(ts))).or_insert((0, 0.0, f64::MIN, f64::MAX));
                e.0 += 1;
                e.1 += temp;
                e.2 = e.2.max(temp);
                e.3 = e.3.min(humidity);
            }
        }
    }
    Ok(expected)
}

/// The job's committed rows, as aggregates.
fn rows(out: &Path) -> Result<Aggregates> {
    let mut got = Aggregates::new();
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(got) };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let row: serde_json::Value = serde_json::from_str(line)?;
            let n = row["readings"].as_i64().unwrap_or_default();
            let key = (
                row["device"].as_str().unwrap_or_default().to_owned(),
                row["minute"].as_str().unwrap_or_default().chars().take(16).collect(),
            );
            let avg = row["avg_temp"].as_f64().unwrap_or_default();
            got.insert(
                key,
                (
                    n,
                    avg * n as f64,
                    row["max_temp"].as_f64().unwrap_or_default(),
                    row["min_humidity"].as_f64().unwrap_or_default(),
                ),
            );
        }
    }
    Ok(got)
}

fn same(a: &Aggregates, b: &Aggregates) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb && va.0 == vb.0 && (va.1 - vb.1).abs() < 1e-6 && va.2 == vb.2 && va.3 == vb.3
        })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        bail!("no MQTT broker on 127.0.0.1:1883: examples/iot-mqtt/run.sh starts Mosquitto");
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let prefix = format!("rill-iot-example/{nanos}");
    let client_id = format!("rill-iot-example-{nanos}");
    let filters = vec![format!("{prefix}/+/telemetry")];
    // The pipeline's persistent session, opened once: readings wait in it while the job is down.
    MqttSource::connect(MqttConfig::new("127.0.0.1", 1883, &client_id, filters.clone())).await?.close().await;
    eprintln!("[example] {} devices publish {} minutes of readings over MQTT (QoS 1)", DEVICES.len(), MINUTES);
    let p = prefix.clone();
    let expected = tokio::task::spawn_blocking(move || publish_readings(&p)).await??;

    let work = tempfile::tempdir()?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iot-mqtt/job.sql");
    let vars = HashMap::from([
        ("WORK".to_owned(), work.path().display().to_string()),
        ("PREFIX".to_owned(), prefix.clone()),
        ("CLIENT_ID".to_owned(), client_id.clone()),
    ]);
    let mut job = rill_sql::SqlJob::load(&file)?.with_vars(vars);
    *job.connectors_mut() = rill_connect::connectors();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::spawn(async move { job.run(stopped).await });
    eprintln!("[example] job.sql runs; waiting for {} rows (device × minute)", expected.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        if running.is_finished() {
            (&mut running).await?.context("the job failed")?;
            bail!("the job stopped early");
        }
        let got = rows(&work.path().join("out"))?;
        if same(&got, &expected) {
            break got;
        }
        if Instant::now() > deadline {
            bail!("after 60 s the job wrote {got:?}; the readings make {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.send_replace(true);
    (&mut running).await??;
    // The session is not needed any more.
    let mut clean = MqttConfig::new("127.0.0.1", 1883, &client_id, filters);
    clean.clean_session = true;
    MqttSource::connect(clean).await?.close().await;

    println!("per_device_minute:");
    println!("  device    minute            readings  avg_temp  max_temp  min_humidity");
    for ((device, minute), (n, sum, max, min)) in &got {
        println!("  {device:<9} {minute}  {n:>8}  {:>8.2}  {max:>8.2}  {min:>12.1}", sum / *n as f64);
    }
    eprintln!("[example] every device's minutes agree with the readings published");
    Ok(())
}
