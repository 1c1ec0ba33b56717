//! `rill bench parquet`: MB/s of JSON events turned into committed Parquet
//! by the lake sink — the streams runtime's JSON decoder into Arrow, the
//! sink's hourly Hive partitions (`dt=…/hr=…`), zstd, files closed and
//! renamed at checkpoints — beside two anchors measured in the same run on
//! the same events: decoding alone, and decoding plus one plain Parquet
//! writer (zstd, no partitions, no commit) on the decoding thread — the
//! lake sink encodes on a thread of its own, so it can pass that anchor
//! on two cores. The committed rows are counted back from the files'
//! footers, so a run that lost rows fails instead of reporting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use rill_parquet::{ParquetConfig, ParquetSink, Partitioning};
use rill_streams::Sink;
use rill_streams::decode::{Decoder, SourceRecord};
use serde::Serialize;

use crate::report::{table, thousands};
use crate::{Error, Result};

/// The MB/s the issue sets for JSON → committed Parquet.
pub const TARGET_MB_PER_SEC: f64 = 200.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct ParquetBenchOptions {
    /// Scratch directory (the lake); removed afterwards.
    pub dir: PathBuf,
    /// MB (10^6 bytes) of JSON events.
    pub mb: u64,
    /// Events per batch.
    pub batch: usize,
    /// Events between checkpoints.
    pub checkpoint_every: usize,
}

/// One case's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ParquetCase {
    /// What was measured.
    pub case: &'static str,
    /// Events.
    pub events: u64,
    /// MB/s of JSON input.
    pub mb_per_sec: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Bytes of Parquet written.
    pub parquet_bytes: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ParquetBenchReport {
    /// Benchmark name.
    pub bench: &'static str,
    /// MB of JSON input.
    pub input_mb: f64,
    /// The cases.
    pub cases: Vec<ParquetCase>,
    /// Lake sink MB/s / plain writer MB/s.
    pub ratio_vs_plain_writer: f64,
    /// Lake sink MB/s / decoding alone MB/s.
    pub ratio_vs_decode: f64,
    /// Lake sink MB/s / the 200 MB/s target.
    pub ratio_vs_target: f64,
}

impl ParquetBenchReport {
    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.case.to_owned(),
                    thousands(c.events as f64),
                    format!("{:.1}", c.mb_per_sec),
                    thousands(c.events_per_sec),
                    format!("{:.1}", c.parquet_bytes as f64 / 1e6),
                ]
            })
            .collect();
        let mut out = table(&["case", "events", "JSON MB/s", "events/s", "Parquet MB"], &rows);
        out.push_str(&format!(
            "\nlake sink vs plain writer: {:.2}   vs decoding alone: {:.2}   vs 200 MB/s target: {:.2}\n",
            self.ratio_vs_plain_writer, self.ratio_vs_decode, self.ratio_vs_target
        ));
        out
    }
}

fn work(e: impl std::fmt::Display) -> Error {
    Error::Workload(e.to_string())
}

/// The events' schema: page views.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("page", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("load_ms", DataType::Int64, false),
        Field::new("agent", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]))
}

/// About `bytes` of JSON events, a few hours of page views.
fn events(bytes: u64) -> Vec<SourceRecord> {
    const REGIONS: [&str; 4] = ["eu", "us", "apac", "latam"];
    let start = 1_764_072_000_000i64; // 2025-11-25T12:00:00Z
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut i = 0u64;
    while total < bytes {
        let ts = chrono::DateTime::from_timestamp_millis(start + (i as i64) * 7).unwrap_or_default();
        let body = format!(
            r#"{{"user_id":{},"page":"/shop/item/{}","region":"{}","load_ms":{},"agent":"Mozilla/5.0 (X11; Linux x86_64) rill-bench/{}","ts":"{}"}}"#,
            i % 100_003,
            i % 5_000,
            REGIONS[(i % 4) as usize],
            100 + i % 3_000,
            i % 10,
            ts.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        total += body.len() as u64;
        out.push(SourceRecord {
            topic: "views".into(),
            queue: 0,
            offset: i,
            tag: None,
            store_time: 0,
            properties: Default::default(),
            body: body.into(),
        });
        i += 1;
    }
    out
}

/// Parquet bytes and rows under `dir` (committed files only).
fn committed(dir: &std::path::Path) -> Result<(u64, u64)> {
    let (mut bytes, mut rows) = (0, 0);
    for path in rill_parquet::committed(dir).map_err(work)? {
        let file = std::fs::File::open(&path).map_err(|e| Error::Io { op: "open", path: path.clone(), source: e })?;
        bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        rows += SerializedFileReader::new(file).map_err(work)?.metadata().file_metadata().num_rows() as u64;
    }
    Ok((bytes, rows))
}

/// Runs the benchmark, reporting steps through `progress`.
pub fn run(opts: &ParquetBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<ParquetBenchReport> {
    if opts.mb == 0 || opts.mb > 10_000 {
        return Err(Error::Options { option: "--mb", reason: "between 1 and 10,000".into() });
    }
    if opts.batch == 0 || opts.checkpoint_every == 0 {
        return Err(Error::Options {
            option: "--batch",
            reason: "batches and checkpoints of at least one event".into(),
        });
    }
    progress(&format!("generating {} MB of JSON events", opts.mb));
    let input = events(opts.mb * 1_000_000);
    let input_bytes: u64 = input.iter().map(|r| r.body.len() as u64).sum();
    let n = input.len() as u64;
    let decoder = Decoder::new(schema(), Vec::new()).map_err(work)?;
    let mb = |secs: f64| input_bytes as f64 / 1e6 / secs.max(1e-9);
    let mut cases = Vec::new();

    progress("decoding alone");
    let started = Instant::now();
    let mut rows = 0;
    for chunk in input.chunks(opts.batch) {
        rows += decoder.decode(chunk).map_err(work)?.batch.num_rows();
    }
    let secs = started.elapsed().as_secs_f64();
    if rows as u64 != n {
        return Err(work(format!("decoded {rows} of {n} events")));
    }
    cases.push(ParquetCase {
        case: "JSON decode alone",
        events: n,
        mb_per_sec: mb(secs),
        events_per_sec: n as f64 / secs,
        parquet_bytes: 0,
    });

    progress("decode + one plain Parquet writer");
    std::fs::create_dir_all(&opts.dir).map_err(|e| Error::Io { op: "create", path: opts.dir.clone(), source: e })?;
    let plain = opts.dir.join("plain.parquet");
    let started = Instant::now();
    let file = std::fs::File::create(&plain).map_err(|e| Error::Io { op: "create", path: plain.clone(), source: e })?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(props)).map_err(work)?;
    for chunk in input.chunks(opts.batch) {
        writer.write(&decoder.decode(chunk).map_err(work)?.batch).map_err(work)?;
    }
    writer.close().map_err(work)?;
    let secs = started.elapsed().as_secs_f64();
    let plain_bytes = std::fs::metadata(&plain).map(|m| m.len()).unwrap_or(0);
    let plain_rate = mb(secs);
    cases.push(ParquetCase {
        case: "decode + plain Parquet writer",
        events: n,
        mb_per_sec: plain_rate,
        events_per_sec: n as f64 / secs,
        parquet_bytes: plain_bytes,
    });

    progress("decode + lake sink (hourly partitions, committed at checkpoints)");
    let lake = opts.dir.join("lake");
    let mut config = ParquetConfig::new(&lake);
    config.partitioning =
        Partitioning { fields: vec!["region".into()], time: Some(("ts".into(), "dt=%Y-%m-%d/hr=%H".into())) };
    let mut sink = ParquetSink::new(config).map_err(work)?;
    let started = Instant::now();
    let (mut since, mut checkpoint) = (0usize, 0u64);
    for chunk in input.chunks(opts.batch) {
        sink.write(decoder.decode(chunk).map_err(work)?.batch).map_err(work)?;
        since += chunk.len();
        if since >= opts.checkpoint_every {
            checkpoint += 1;
            sink.prepare(checkpoint).map_err(work)?;
            sink.commit(checkpoint).map_err(work)?;
            since = 0;
        }
    }
    checkpoint += 1;
    sink.prepare(checkpoint).map_err(work)?;
    sink.commit(checkpoint).map_err(work)?;
    let secs = started.elapsed().as_secs_f64();
    let (lake_bytes, lake_rows) = committed(&lake)?;
    if lake_rows != n {
        return Err(work(format!("the lake holds {lake_rows} rows of {n}")));
    }
    let lake_rate = mb(secs);
    cases.push(ParquetCase {
        case: "decode + lake sink, committed",
        events: n,
        mb_per_sec: lake_rate,
        events_per_sec: n as f64 / secs,
        parquet_bytes: lake_bytes,
    });
    let _ = std::fs::remove_dir_all(&opts.dir);
    let decode_rate = cases[0].mb_per_sec;
    Ok(ParquetBenchReport {
        bench: "parquet",
        input_mb: input_bytes as f64 / 1e6,
        cases,
        ratio_vs_plain_writer: lake_rate / plain_rate.max(1e-9),
        ratio_vs_decode: lake_rate / decode_rate.max(1e-9),
        ratio_vs_target: lake_rate / TARGET_MB_PER_SEC,
    })
}
