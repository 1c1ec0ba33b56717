//! `rill connect connectors.yaml`: checks every connector of the file
//! (nothing starts if one is wrong), starts them, serves the REST API, and
//! runs until Ctrl-C, when each stops at a clean point.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Options of `rill connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The connect file (YAML: broker, rest, state-dir, connectors).
    file: PathBuf,
    /// Where the REST API listens (over the file's `rest:`).
    #[arg(long)]
    rest: Option<String>,
    /// Where offsets and sink checkpoints are kept (over the file's `state-dir:`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print one JSON line with the REST address once it listens.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: ConnectArgs) -> Result<()> {
    let (file, text) = rill_connect::config::load(&args.file)?;
    let state_dir = args.state_dir.or(file.state_dir.clone()).unwrap_or_else(|| {
        let stem = args.file.file_stem().map_or_else(|| "connect".into(), |s| s.to_string_lossy().into_owned());
        dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("rill/connect").join(stem)
    });
    let rest = args.rest.unwrap_or_else(|| file.rest.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let connect = rill_connect::Runtime::new(&file.broker, &state_dir)?;
        for c in &file.connectors {
            connect.check(c, Some((&args.file, &text)))?;
        }
        let listener = tokio::net::TcpListener::bind(&rest).await.with_context(|| format!("REST address {rest}"))?;
        let addr = listener.local_addr()?;
        for c in &file.connectors {
            connect.start(c.clone()).await?;
        }
        if args.json {
            println!("{}", serde_json::json!({ "rest_addr": addr.to_string(), "connectors": file.connectors.len() }));
        } else {
            eprintln!(
                "rill connect: {} connectors from {}; REST API on http://{addr}/connectors (state in {})",
                file.connectors.len(),
                args.file.display(),
                state_dir.display()
            );
        }
        let app = rill_connect::rest::router(std::sync::Arc::clone(&connect));
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        server.await?;
        tracing::info!("stopping the connectors");
        connect.shutdown().await;
        Ok(())
    })
}
