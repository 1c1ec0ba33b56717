//! The Parquet lake read back with DataFusion's own Parquet reader (Hive
//! partitions from the paths): a SQL job file's rows land once each in
//! their partitions with `_SUCCESS` markers; files roll by size; a crash
//! between a checkpoint's prepare and its commit, and one before the
//! checkpoint was stored, both end with every row exactly once; a
//! changelog with updates is refused; a write that fails on the sink's
//! writer thread fails the next checkpoint.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rill_parquet::{ParquetConfig, ParquetSink, Partitioning};
use rill_streams::Sink;

/// `sql` over table `lake` (the committed files under `dir`, partitions from the paths), as text rows.
async fn query(dir: &Path, partitions: &[&str], sql: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    let cols: Vec<(String, DataType)> = partitions.iter().map(|p| ((*p).to_owned(), DataType::Utf8)).collect();
    let options = ParquetReadOptions::default().table_partition_cols(cols);
    ctx.register_parquet("lake", dir.to_str().unwrap(), options).await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
    text.lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Names of every file under `dir` that is not committed data or a marker.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(leftovers(&path));
        } else {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("part-") && name != rill_parquet::SUCCESS {
                out.push(name);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_job_fills_hive_partitions_with_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = format!(
        "SET 'state.checkpoints.dir' = '{cp}';\n\
         CREATE TABLE clicks (user_id BIGINT, n BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (\n\
           'connector' = 'datagen', 'number-of-rows' = '5000', 'rows-per-second' = '1000000',\n\
           'fields.user_id.kind' = 'random', 'fields.user_id.min' = '1', 'fields.user_id.max' = '3',\n\
           'fields.n.kind' = 'sequence', 'fields.n.start' = '1', 'fields.ts.start' = '1700000000000');\n\
         CREATE TABLE lake (user_id BIGINT, n BIGINT, ts TIMESTAMP(3)) WITH (\n\
           'connector' = 'filesystem', 'format' = 'parquet', 'path' = '{lake}',\n\
           'partition.fields' = 'user_id', 'partition.time-column' = 'ts', 'partition.time-pattern' = '''dt=''yyyy-MM-dd',\n\
           'sink.rolling-policy.file-size' = '4kb');\n\
         INSERT INTO lake SELECT user_id, n, ts FROM clicks;\n",
        cp = dir.path().join("checkpoints").display(),
        lake = lake.display(),
    );
    let path = dir.path().join("job.sql");
    std::fs::write(&path, &job).unwrap();
    let mut sql = rill_sql::SqlJob::load(&path).unwrap().with_vars(HashMap::new());
    rill_parquet::register(sql.connectors_mut());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    sql.run(stopped).await.unwrap();

    assert_eq!(leftovers(&lake), Vec::<String>::new(), "only committed files and markers stay");
    let files = rill_parquet::committed(&lake).unwrap();
    assert!(files.len() > 3, "files rolled at 4 KiB: {files:?}");
    for f in &files {
        let rel = f.strip_prefix(&lake).unwrap().to_string_lossy().into_owned();
        assert!(rel.starts_with("user_id=") && rel.contains("/dt=2023-11-14/"), "{rel}");
        assert!(f.parent().unwrap().join(rill_parquet::SUCCESS).exists(), "{rel} has its marker");
    }
    // Every row once: n runs 1..=5000 (sum 12,502,500), users 1–3 from the paths.
    assert_eq!(
        query(&lake, &["user_id", "dt"], "SELECT COUNT(*), COUNT(DISTINCT n), SUM(n), MIN(n), MAX(n) FROM lake").await,
        ["| 5000 | 5000 | 12502500 | 1 | 5000 |"]
    );
    let users = query(&lake, &["user_id", "dt"], "SELECT DISTINCT user_id, dt FROM lake ORDER BY user_id").await;
    assert!(!users.is_empty() && users.len() <= 3, "{users:?}");
    assert!(users.iter().all(|u| u.contains("2023-11-14")), "{users:?}");
}

fn rows(from: i64, to: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]));
    let n: Vec<i64> = (from..to).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(n.iter().map(|i| if i % 2 == 0 { "eu" } else { "us" }))),
            Arc::new(Int64Array::from(n.clone())),
            Arc::new(TimestampMillisecondArray::from_iter_values(n.iter().map(|i| 1_700_000_000_000 + i))),
        ],
    )
    .unwrap()
}

fn sink(dir: &Path) -> ParquetSink {
    let mut config = ParquetConfig::new(dir);
    config.partitioning = Partitioning { fields: vec!["region".into()], time: None };
    ParquetSink::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_around_a_checkpoint_leave_every_row_once() {
    let summary = "SELECT COUNT(*), COUNT(DISTINCT n), SUM(n) FROM lake";
    // Crash after checkpoint 2 was prepared but before it was stored: restart from 1, rows after it again.
    let dir = tempfile::tempdir().unwrap();
    let mut first = sink(dir.path());
    first.recover(None).unwrap();
    first.write(rows(0, 100)).unwrap();
    first.prepare(1).unwrap();
    first.commit(1).unwrap();
    first.write(rows(100, 200)).unwrap();
    first.prepare(2).unwrap();
    first.write(rows(200, 250)).unwrap();
    drop(first);
    let mut second = sink(dir.path());
    second.recover(Some(1)).unwrap();
    second.write(rows(100, 300)).unwrap();
    second.prepare(2).unwrap();
    second.commit(2).unwrap();
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    assert_eq!(query(dir.path(), &["region"], summary).await, ["| 300 | 300 | 44850 |"]);

    // Crash after checkpoint 2 was stored but before its files were committed: restart from 2.
    let dir = tempfile::tempdir().unwrap();
    let mut first = sink(dir.path());
    first.write(rows(0, 100)).unwrap();
    first.prepare(1).unwrap();
    first.commit(1).unwrap();
    first.write(rows(100, 200)).unwrap();
    first.prepare(2).unwrap();
    drop(first);
    let mut second = sink(dir.path());
    second.recover(Some(2)).unwrap();
    second.write(rows(200, 300)).unwrap();
    second.prepare(3).unwrap();
    second.commit(3).unwrap();
    assert_eq!(query(dir.path(), &["region"], summary).await, ["| 300 | 300 | 44850 |"]);
    let regions =
        query(dir.path(), &["region"], "SELECT region, COUNT(*) FROM lake GROUP BY region ORDER BY region").await;
    assert_eq!(regions, ["| eu | 150 |", "| us | 150 |"]);
}

#[test]
fn a_changelog_with_updates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new(rill_streams::OP_COLUMN, DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 1])), Arc::new(StringArray::from(vec!["+I", "-U"]))],
    )
    .unwrap();
    let e = sink(dir.path()).write(batch).unwrap_err().to_string();
    assert!(e.contains("appends only") && e.contains("'-U'"), "{e}");
}

#[test]
fn a_write_that_fails_on_the_writer_thread_fails_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ParquetConfig::new(dir.path());
    config.partitioning = Partitioning { fields: vec!["nope".into()], time: None };
    let mut sink = ParquetSink::new(config).unwrap();
    // Written on the sink's own thread: the failure comes back from a later call.
    let first = sink.write(rows(0, 10));
    let e = match first {
        Err(e) => e.to_string(),
        Ok(()) => sink.prepare(1).unwrap_err().to_string(),
    };
    assert!(e.contains("partition column 'nope'"), "{e}");
    assert!(sink.prepare(1).is_err(), "every later checkpoint fails too, until recovery");
    sink.recover(None).unwrap();
    assert!(rill_parquet::committed(dir.path()).unwrap().is_empty());
}
