//! Rotated application logs → file tail → parse and filter (job.sql) → a
//! search index of warnings and errors and a Parquet lake of every line,
//! in one command:
//!
//! ```sh
//! examples/logs-to-es-and-lake/run.sh
//! ```
//!
//! It starts an OpenSearch-compatible server (`osmem-server`) on a free
//! loopback port and runs the SQL job, while a writer appends log lines
//! (errors with their stack traces) to `app.log` and rotates it twice by
//! rename as logrotate does. It waits until the index holds every warning
//! and error and the lake every event — counted independently from what
//! the writer wrote — prints what a search finds and what the lake holds
//! per service and level, and exits non-zero if they do not agree within
//! a minute.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rill_elasticsearch::server::LocalSearch;

const SERVICES: [&str; 3] = ["checkout", "search", "auth"];
/// Events per log file; the file is rotated after each batch.
const PER_FILE: usize = 400;
const FILES: usize = 3;
/// 2026-11-25T13:00:00Z
const START_MS: i64 = 1_795_611_600_000;

/// What the writer wrote: events per (service, level).
type Written = BTreeMap<(String, String), usize>;

/// Appends `PER_FILE` events starting at event `first`; an error brings a three-line stack trace.
fn write_events(path: &Path, first: usize, written: &mut Written) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    for i in first..first + PER_FILE {
        let ts = chrono::DateTime::from_timestamp_millis(START_MS + i as i64 * 250).context("time")?;
        let service = SERVICES[i % SERVICES.len()];
        let level = if i % 25 == 0 {
            "ERROR"
        } else if i % 10 == 0 {
            "WARN"
        } else {
            "INFO"
        };
        write!(f, "{} {level} [{service}] request {i} ", ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"))?;
        match level {
            "ERROR" => writeln!(
                f,
                "failed: upstream timed out\n  at rill.example.Client.call(Client.java:{i})\n  at rill.example.Handler.serve(Handler.java:88)\n  at rill.example.Server.run(Server.java:12)"
            )?,
            "WARN" => writeln!(f, "slow: {} ms", 900 + i % 300)?,
            _ => writeln!(f, "ok in {} ms", 5 + i % 40)?,
        }
        *written.entry((service.to_owned(), level.to_owned())).or_default() += 1;
        if i % 50 == 0 {
            f.flush()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// The writer: three files' worth of events, rotating by rename after each (app.log → app.log.1 → app.log.2).
fn write_logs(dir: &Path) -> Result<Written> {
    let mut written = Written::new();
    let log = dir.join("app.log");
    for n in 0..FILES {
        write_events(&log, n * PER_FILE, &mut written)?;
        if n + 1 < FILES {
            if dir.join("app.log.1").exists() {
                std::fs::rename(dir.join("app.log.1"), dir.join("app.log.2"))?;
            }
            std::fs::rename(&log, dir.join("app.log.1"))?;
        }
    }
    Ok(written)
}

/// Events per (service, level) in the lake's committed files.
async fn lake(dir: &Path) -> Result<Written> {
    if rill_parquet::committed(dir).map(|f| f.is_empty()).unwrap_or(true) {
        return Ok(Written::new());
    }
    let ctx = SessionContext::new();
    let parts = vec![
        ("service".to_owned(), datafusion::arrow::datatypes::DataType::Utf8),
        ("dt".to_owned(), datafusion::arrow::datatypes::DataType::Utf8),
        ("hr".to_owned(), datafusion::arrow::datatypes::DataType::Utf8),
    ];
    ctx.register_parquet(
        "lake",
        dir.to_str().context("path")?,
        ParquetReadOptions::default().table_partition_cols(parts),
    )
    .await?;
    let batches =
        ctx.sql("SELECT service, level, COUNT(*) AS n FROM lake GROUP BY service, level").await?.collect().await?;
    let mut out = Written::new();
    for b in batches {
        // Partition values and strings may come as dictionaries or views: read them as plain text.
        let text = |i: usize| -> Result<datafusion::arrow::array::StringArray> {
            let plain = datafusion::arrow::compute::cast(b.column(i), &datafusion::arrow::datatypes::DataType::Utf8)?;
            Ok(datafusion::arrow::array::as_string_array(&plain).clone())
        };
        let (service, level) = (text(0)?, text(1)?);
        let n = datafusion::arrow::array::as_primitive_array::<datafusion::arrow::datatypes::Int64Type>(b.column(2));
        for r in 0..b.num_rows() {
            out.insert((service.value(r).to_owned(), level.value(r).to_owned()), n.value(r) as usize);
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    eprintln!("[example] starting an OpenSearch-compatible server on a loopback port");
    let search = LocalSearch::start().context("starting osmem-server")?;
    let work = tempfile::tempdir()?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs-to-es-and-lake/job.sql");
    let vars = HashMap::from([
        ("WORK".to_owned(), work.path().display().to_string()),
        ("LOG_DIR".to_owned(), logs.display().to_string()),
        ("ES_URL".to_owned(), search.url().to_owned()),
    ]);
    let mut job = rill_sql::SqlJob::load(&file)?.with_vars(vars);
    *job.connectors_mut() = rill_connect::connectors();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = tokio::spawn(async move { job.run(stopped).await });

    eprintln!(
        "[example] job.sql runs; writing {} events into app.log, rotating it {} times",
        FILES * PER_FILE,
        FILES - 1
    );
    let dir = logs.clone();
    let written = tokio::task::spawn_blocking(move || write_logs(&dir)).await??;
    let problems: usize = written.iter().filter(|((_, l), _)| l != "INFO").map(|(_, n)| n).sum();
    let index = "logs-2026.11.25";

    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        if running.is_finished() {
            (&mut running).await?.context("the job failed")?;
            bail!("the job stopped early");
        }
        let indexed = search.count(index).await.unwrap_or(0) as usize;
        let got = lake(&work.path().join("lake")).await?;
        if indexed == problems && got == written {
            break got;
        }
        if Instant::now() > deadline {
            bail!(
                "after 60 s the index holds {indexed} of {problems} problems and the lake {got:?} (written: {written:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.send_replace(true);
    (&mut running).await??;

    println!("search index '{index}': {problems} warnings and errors; one of the errors:");
    if let Some((_, doc)) = search.documents(index).await?.into_iter().find(|(_, d)| d["level"] == "ERROR") {
        let text = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
        println!("  {} {} [{}]", text("ts"), text("level"), text("service"));
        for line in doc["msg"].as_str().unwrap_or_default().lines() {
            println!("    {line}");
        }
    }
    println!("Parquet lake (service=…/dt=…/hr=… partitions), events per service and level:");
    println!("  service   level  events");
    for ((service, level), n) in &got {
        println!("  {service:<9} {level:<6} {n:>6}");
    }
    let mut parts: Vec<String> = rill_parquet::committed(&work.path().join("lake"))?
        .iter()
        .filter_map(|f| f.parent()?.strip_prefix(work.path().join("lake")).ok().map(|p| p.display().to_string()))
        .collect();
    parts.sort();
    parts.dedup();
    println!("  partitions: {}", parts.join(", "));
    eprintln!("[example] the index and the lake hold exactly what was written, across two rotations");
    Ok(())
}
