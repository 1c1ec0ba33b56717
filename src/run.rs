//! `rill run job.sql`: plans a SQL job file and runs it until Ctrl-C (or
//! until its bounded sources are read), resuming from its last checkpoint;
//! `--explain` prints the streaming plan instead.

use std::path::PathBuf;

use anyhow::Result;

/// Options of `rill run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (Flink-style SQL: CREATE TABLE, CREATE VIEW, SET, INSERT INTO).
    file: PathBuf,
    /// Print the streaming plan (steps and what is pushed into the broker) and exit.
    #[arg(long)]
    explain: bool,
    /// A job setting over the file's SET (repeat for several), e.g. state.checkpoints.dir=/var/lib/jobs/x.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = setting)]
    settings: Vec<(String, String)>,
}

fn setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))
}

/// Runs the command.
pub fn run(args: RunArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut job = rill_sql::SqlJob::load(&args.file)?;
        *job.connectors_mut() = rill_connect::connectors();
        job.connectors_mut().register_source("nexmark", std::sync::Arc::new(rill_nexmark::sql::NexmarkConnector));
        for (key, value) in &args.settings {
            job.set_setting(key, value)?;
        }
        if args.explain || job.explain_only() {
            print!("{}", job.explain().await?);
            return Ok(());
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("stopping after a last checkpoint");
                stop.send_replace(true);
            }
        });
        let reports = job.run(stopped).await?;
        let messages: u64 = reports.iter().map(|r| r.messages).sum();
        let dead: u64 = reports.iter().map(|r| r.dead).sum();
        let checkpoints: u64 = reports.iter().map(|r| r.checkpoints).sum();
        eprintln!(
            "{}: {messages} messages read, {dead} did not fit their table, {checkpoints} checkpoints",
            args.file.display()
        );
        Ok(())
    })
}
