//! The running connectors: each a task with a status (state, records,
//! dead letters, position, lag, last error) and a control (run, pause,
//! stop); connectors are checked before they start (the connector exists,
//! its options are valid — the same checks as SQL's), and replaced,
//! paused, resumed, restarted or deleted while the others run. It owns
//! the tasks; the REST API and the command line drive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{ConnectorConfig, locate};
use crate::offsets::Offsets;
use crate::source::Sources;
use crate::{Error, Result};

/// What a task is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Work.
    Run,
    /// Hold (a source keeps its place; a sink's job stops at a checkpoint).
    Pause,
    /// End.
    Stop,
}

/// A connector's status, as the REST API shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// Its name.
    pub name: String,
    /// `source` or `sink`.
    pub role: String,
    /// The registered connector.
    pub connector: String,
    /// `STARTING`, `RUNNING`, `PAUSED`, `FAILED` or `STOPPED`.
    pub state: String,
    /// Records sent to the broker (a source) or written (a sink, counted when its job stops).
    pub records: u64,
    /// Records set aside as dead letters.
    pub dead_letters: u64,
    /// A source's stored position.
    pub position: Option<String>,
    /// How far behind its origin a source is (ms), as of its last batch.
    pub lag_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

struct Task {
    config: ConnectorConfig,
    status: Arc<Mutex<Status>>,
    control: watch::Sender<Control>,
    handle: tokio::task::JoinHandle<()>,
}

/// The connectors of one connect runtime (see the module docs).
pub struct Runtime {
    broker: String,
    state_dir: PathBuf,
    offsets: Arc<Offsets>,
    sources: Sources,
    sinks: rill_sql::Connectors,
    tasks: Mutex<BTreeMap<String, Task>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("broker", &self.broker).field("state_dir", &self.state_dir).finish()
    }
}

/// Every SQL connector Rill has: the built-in ones, MySQL (sink and CDC
/// source), Elasticsearch / OpenSearch and the Parquet lake (`parquet`,
/// `filesystem`) — what sink jobs and `rill run` name.
pub fn connectors() -> rill_sql::Connectors {
    let mut c = rill_sql::Connectors::default();
    rill_mysql::register(&mut c);
    rill_mysql_cdc::register(&mut c);
    rill_elasticsearch::register(&mut c);
    rill_parquet::register(&mut c);
    crate::table::register(&mut c, &crate::source::Sources::default());
    c
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Runtime {
    /// A runtime sending to / reading from `broker`, keeping offsets under `state_dir`.
    pub fn new(broker: &str, state_dir: &Path) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            broker: broker.to_owned(),
            state_dir: state_dir.to_owned(),
            offsets: Arc::new(Offsets::open(state_dir)?),
            sources: Sources::default(),
            sinks: connectors(),
            tasks: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Checks `config`: its connector exists and its options are valid.
    /// With the file's `text`, a mistake names the line of the option.
    pub fn check(&self, config: &ConnectorConfig, file: Option<(&Path, &str)>) -> Result<Vec<(String, String)>> {
        let at = |key: &str| match file {
            Some((path, text)) => {
                let (line, column) = locate(text, Some(&config.name), key);
                format!("{}:{line}:{column}: connector '{}'", path.display(), config.name)
            }
            None => format!("connector '{}'", config.name),
        };
        let name = config.connector();
        let specs = if config.source.is_some() {
            self.sources.get(name).map(|c| c.options()).ok_or_else(|| {
                Error::Config(format!(
                    "{}: no source connector '{name}'; sources: {}",
                    at("source"),
                    self.sources.names().join(", ")
                ))
            })?
        } else {
            self.sinks.sink_options(name).ok_or_else(|| {
                Error::Config(format!(
                    "{}: no sink connector '{name}'; sinks: {}",
                    at("sink"),
                    self.sinks.sink_names().join(", ")
                ))
            })?
        };
        let pairs = config.options(&env).map_err(|e| Error::Config(format!("{}: {e}", at("config"))))?;
        rill_sql::validate(specs, name, &pairs).map_err(|e| {
            let key = e.key.clone().unwrap_or_else(|| "config".to_owned());
            Error::Config(format!("{}: config.{key}: {}", at(&key), e.message))
        })?;
        if config.sink.is_some() && config.columns.is_empty() {
            return Err(Error::Config(format!(
                "{}: a sink needs `columns:` (the rows' columns, as in SQL)",
                at("sink")
            )));
        }
        crate::transform::Transforms::new(&config.transforms)
            .map_err(|e| Error::Config(format!("{}: {e}", at("transforms"))))?;
        Ok(pairs)
    }

    /// Starts `config` (already checked), replacing a connector of that name.
    pub async fn start(self: &Arc<Self>, config: ConnectorConfig) -> Result<()> {
        let pairs = self.check(&config, None)?;
        self.stop(&config.name).await;
        let status = Arc::new(Mutex::new(Status {
            name: config.name.clone(),
            role: config.role().to_owned(),
            connector: config.connector().to_owned(),
            state: "STARTING".into(),
            position: self.offsets.get(&config.name),
            ..Status::default()
        }));
        let (control, watch) = watch::channel(Control::Run);
        let handle = if config.source.is_some() {
            let specs = self.sources.get(config.connector()).map(|c| c.options()).unwrap_or_default();
            let options =
                rill_sql::validate(specs, config.connector(), &pairs).map_err(|e| Error::Config(e.message))?;
            let source = self
                .sources
                .get(config.connector())
                .ok_or_else(|| Error::Config(format!("no source connector '{}'", config.connector())))?
                .build(&options)
                .map_err(|e| Error::Config(format!("connector '{}': {e}", config.name)))?;
            let task = crate::source::run(
                config.clone(),
                source,
                self.broker.clone(),
                Arc::clone(&self.offsets),
                Arc::clone(&status),
                watch,
            );
            spawn(task, Arc::clone(&status))
        } else {
            let dir = crate::sink::dir(&self.state_dir, &config.name);
            let text = crate::sink::job_text(&config, &pairs, &self.broker, &dir);
            let task = crate::sink::run(config.clone(), dir, text, self.broker.clone(), Arc::clone(&status), watch);
            spawn(task, Arc::clone(&status))
        };
        tracing::info!(connector = config.name, "started");
        self.tasks.lock().insert(config.name.clone(), Task { config, status, control, handle });
        Ok(())
    }

    /// Stops connector `name` (waiting for it), if it runs.
    async fn stop(&self, name: &str) {
        let task = self.tasks.lock().remove(name);
        if let Some(t) = task {
            t.control.send_replace(Control::Stop);
            let _ = t.handle.await;
        }
    }

    /// Every connector's status.
    pub fn list(&self) -> Vec<Status> {
        self.tasks.lock().values().map(|t| t.status.lock().clone()).collect()
    }

    /// Connector `name`'s status.
    pub fn status(&self, name: &str) -> Option<Status> {
        self.tasks.lock().get(name).map(|t| t.status.lock().clone())
    }

    /// Connector `name`'s configuration.
    pub fn config(&self, name: &str) -> Option<ConnectorConfig> {
        self.tasks.lock().get(name).map(|t| t.config.clone())
    }

    /// Tells connector `name` to pause or resume; false if there is none.
    pub fn control(&self, name: &str, control: Control) -> bool {
        match self.tasks.lock().get(name) {
            Some(t) => {
                t.control.send_replace(control);
                true
            }
            None => false,
        }
    }

    /// Restarts connector `name` from its stored position; false if there is none.
    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<bool> {
        let Some(config) = self.config(name) else { return Ok(false) };
        self.start(config).await?;
        Ok(true)
    }

    /// Stops and removes connector `name` (its stored position stays); false if there is none.
    pub async fn delete(&self, name: &str) -> bool {
        let had = self.tasks.lock().contains_key(name);
        self.stop(name).await;
        had
    }

    /// Stops every connector.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.tasks.lock().keys().cloned().collect();
        for n in names {
            self.stop(&n).await;
        }
    }
}

/// Runs a task, recording how it ended in its status.
fn spawn(
    task: impl std::future::Future<Output = std::result::Result<(), String>> + Send + 'static,
    status: Arc<Mutex<Status>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ended = task.await;
        let mut s = status.lock();
        match ended {
            Ok(()) => s.state = "STOPPED".into(),
            Err(e) => {
                tracing::error!(connector = s.name, error = e, "connector failed");
                s.state = "FAILED".into();
                s.error = Some(e);
            }
        }
    })
}

/// Waits while paused; whether to go on working (false once told to stop).
pub(crate) async fn runnable(control: &mut watch::Receiver<Control>, status: &Mutex<Status>) -> bool {
    loop {
        let now = *control.borrow_and_update();
        match now {
            Control::Stop => return false,
            Control::Run => {
                status.lock().state = "RUNNING".into();
                return true;
            }
            Control::Pause => {
                status.lock().state = "PAUSED".into();
                if control.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}
