//! The record sources in SQL job files: a `file-tail` table parsed by a
//! regular expression into columns, filtered and written into a
//! partitioned Parquet lake; stopped and started again on its checkpoint
//! with more lines written meanwhile, every kept line is in the lake once
//! (read back with DataFusion's own Parquet reader). An `http` table's
//! requests are answered once a checkpoint holds their rows.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use datafusion::prelude::{ParquetReadOptions, SessionContext};

fn job(dir: &Path) -> rill_sql::SqlJob {
    let text = format!(
        "SET 'state.checkpoints.dir' = '{cp}';\n\
         SET 'execution.checkpointing.interval' = '200 ms';\n\
         CREATE TABLE logs (level STRING, msg STRING) WITH (\n\
           'connector' = 'file-tail', 'path' = '{logs}/*.log',\n\
           'parse' = 'regex', 'parse.pattern' = '^(?P<level>[A-Z]+) (?P<msg>.*)$');\n\
         CREATE TABLE lake (level STRING, msg STRING) WITH (\n\
           'connector' = 'parquet', 'path' = '{lake}', 'partition.fields' = 'level');\n\
         INSERT INTO lake SELECT level, msg FROM logs WHERE level <> 'DEBUG';\n",
        cp = dir.join("checkpoints").display(),
        logs = dir.join("logs").display(),
        lake = dir.join("lake").display(),
    );
    let path = dir.join("job.sql");
    std::fs::write(&path, text).unwrap();
    let mut job = rill_sql::SqlJob::load(&path).unwrap();
    *job.connectors_mut() = rill_connect::connectors();
    job
}

fn append(dir: &Path, range: std::ops::Range<u32>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("logs/app.log")).unwrap();
    for i in range {
        let level = ["INFO", "WARN", "DEBUG"][(i % 3) as usize];
        writeln!(f, "{level} message {i}").unwrap();
    }
}

/// (rows, distinct messages) committed in the lake.
async fn lake(dir: &Path) -> (i64, i64) {
    let lake = dir.join("lake");
    if rill_parquet::committed(&lake).map(|f| f.is_empty()).unwrap_or(true) {
        return (0, 0);
    }
    let ctx = SessionContext::new();
    let options = ParquetReadOptions::default()
        .table_partition_cols(vec![("level".to_owned(), datafusion::arrow::datatypes::DataType::Utf8)]);
    ctx.register_parquet("lake", lake.to_str().unwrap(), options).await.unwrap();
    let batches = ctx
        .sql("SELECT COUNT(*), COUNT(DISTINCT msg) FROM lake WHERE level <> 'DEBUG'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| {
        batches[0].column(i).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0)
    };
    (col(0), col(1))
}

/// Runs the job until the lake holds `want` rows, then stops it.
async fn run_until(dir: &Path, want: i64) {
    let job = job(dir);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { job.run(stopped).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake(dir).await.0 < want {
        assert!(!running.is_finished(), "the job ended: {:?}", running.await);
        assert!(Instant::now() < deadline, "the lake holds {:?} of {want} rows", lake(dir).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send_replace(true);
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailed_log_lands_in_the_lake_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append(dir.path(), 0..300);
    run_until(dir.path(), 200).await;
    append(dir.path(), 300..600);
    run_until(dir.path(), 400).await;
    // Kept: INFO and WARN, two in three lines.
    assert_eq!(lake(dir.path()).await, (400, 400));
    for level in ["level=INFO", "level=WARN"] {
        assert!(dir.path().join("lake").join(level).join(rill_parquet::SUCCESS).exists(), "{level}");
    }
    assert!(!dir.path().join("lake/level=DEBUG").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_stops_the_job_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append(dir.path(), 0..3);
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("logs/app.log"))
        .unwrap()
        .write_all(b"lower case\n")
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let e = tokio::time::timeout(Duration::from_secs(60), job(dir.path()).run(stopped))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("app.log at byte 46"), "{e}");
    assert!(e.contains("does not match parse.pattern"), "{e}");
}
