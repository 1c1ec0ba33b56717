//! A SQL job: the statements of one file, read and checked, then planned
//! into a dataflow and run. Nothing runs unless every statement plans.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use datafusion::sql::sqlparser::tokenizer::{Location, Token};
use rill_streams::{Job, Pipeline, RunReport};

use crate::connector::Connectors;
use crate::ddl::{Reader, TableDef, create_table};
use crate::query::{Query, query};
use crate::script::{Position, Source, split};
use crate::{Error, Result};

/// Settings a job file can `SET`.
const SETTINGS: &[&str] = &[
    "pipeline.name",
    "parallelism.default",
    "execution.checkpointing.interval",
    "state.checkpoints.dir",
    "table.exec.source.idle-timeout",
    "table.exec.state.ttl",
    "rill.metrics.address",
    "rill.dead-letters",
    "rill.state.memory-budget",
    "rill.state.spill-dir",
];

/// A view: its name and query.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub name: String,
    pub query: Query,
}

/// An `INSERT INTO target …`.
#[derive(Debug, Clone)]
pub(crate) struct Insert {
    pub target: String,
    pub target_at: Position,
    pub query: Query,
}

/// A SQL job file, read and checked (see the crate docs).
pub struct SqlJob {
    pub(crate) src: Source,
    pub(crate) tables: Vec<TableDef>,
    pub(crate) views: Vec<View>,
    pub(crate) inserts: Vec<Insert>,
    pub(crate) settings: BTreeMap<String, (String, Position)>,
    pub(crate) connectors: Connectors,
    pub(crate) vars: HashMap<String, String>,
    /// Whether the file asks for its plan (`EXPLAIN INSERT …`) rather than a run.
    pub(crate) explain_only: bool,
}

impl std::fmt::Debug for SqlJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlJob")
            .field("tables", &self.tables.iter().map(|t| &t.name).collect::<Vec<_>>())
            .field("inserts", &self.inserts.len())
            .finish_non_exhaustive()
    }
}

impl SqlJob {
    /// Reads the job file at `path`; `${VAR}`s in options come from the environment.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Reads a job from `text`, named `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let src = Source::new(path, text);
        let mut job = SqlJob {
            tables: Vec::new(),
            views: Vec::new(),
            inserts: Vec::new(),
            settings: BTreeMap::new(),
            connectors: Connectors::default(),
            vars: std::env::vars().collect(),
            explain_only: false,
            src,
        };
        let statements = split(&job.src)?;
        let mut windows = 0;
        for stmt in &statements {
            let word = |i| stmt.word(i).unwrap_or_default();
            let temporary = usize::from(word(1) == "TEMPORARY");
            match (word(0).as_str(), word(1 + temporary).as_str()) {
                ("CREATE", "TABLE") => {
                    let def = create_table(&job.src, stmt)?;
                    job.check_new_name(&def.name, &def.at)?;
                    job.tables.push(def);
                }
                ("CREATE", "VIEW") => {
                    let mut r = Reader::new(&job.src, stmt);
                    r.expect(&["CREATE"])?;
                    r.eat(&["TEMPORARY"]);
                    r.expect(&["VIEW"])?;
                    let at = r.position();
                    let name = r.ident("a view name")?;
                    r.expect(&["AS"])?;
                    job.check_new_name(&name, &at)?;
                    let q = query(&job.src, stmt, r.parser_index(), &mut windows)?;
                    job.views.push(View { name, query: q });
                }
                ("SET", _) => job.set(stmt)?,
                ("INSERT", _) | ("EXPLAIN", _) => {
                    let mut r = Reader::new(&job.src, stmt);
                    if r.eat(&["EXPLAIN"]) {
                        r.eat(&["PLAN", "FOR"]);
                        job.explain_only = true;
                    }
                    r.expect(&["INSERT", "INTO"])?;
                    let target_at = r.position();
                    let target = r.ident("the table to insert into")?;
                    let q = query(&job.src, stmt, r.parser_index(), &mut windows)?;
                    job.inserts.push(Insert { target, target_at, query: q });
                }
                _ => {
                    return Err(job.src.error(
                        stmt.start(),
                        "expected CREATE TABLE, CREATE VIEW, SET, INSERT INTO or EXPLAIN INSERT INTO",
                    ));
                }
            }
        }
        if job.inserts.is_empty() {
            return Err(Error::At {
                at: job.src.at(statements.last().map_or(Location { line: 1, column: 1 }, |s| s.end)),
                message: "the job has no INSERT INTO: nothing would run".into(),
            });
        }
        Ok(job)
    }

    fn check_new_name(&self, name: &str, at: &Position) -> Result<()> {
        if self.tables.iter().any(|t| t.name == name) || self.views.iter().any(|v| v.name == name) {
            return Err(Error::At { at: at.clone(), message: format!("'{name}' is declared twice") });
        }
        Ok(())
    }

    /// `SET 'key' = 'value'`.
    fn set(&mut self, stmt: &crate::script::Statement) -> Result<()> {
        let mut r = Reader::new(&self.src, stmt);
        r.expect(&["SET"])?;
        let at = r.position();
        let key = r.string("a setting name")?;
        r.expect_token(&Token::Eq)?;
        let value = r.string("a setting value")?;
        if !SETTINGS.contains(&key.as_str()) {
            let hint =
                crate::connector::closest(&key, SETTINGS).map(|c| format!("did you mean '{c}'? ")).unwrap_or_default();
            return Err(Error::At {
                at,
                message: format!("unknown setting '{key}'; {hint}known: {}", SETTINGS.join(", ")),
            });
        }
        self.settings.insert(key, (value, at));
        Ok(())
    }

    /// Sets `key` (one of the settings `SET` takes) to `value`, over what the
    /// file says — `rill run --set key=value`.
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        let at = Position { file: std::sync::Arc::from(Path::new("--set")), line: 1, column: 1 };
        if !SETTINGS.contains(&key) {
            let hint =
                crate::connector::closest(key, SETTINGS).map(|c| format!("did you mean '{c}'? ")).unwrap_or_default();
            return Err(Error::At {
                at,
                message: format!("unknown setting '{key}'; {hint}known: {}", SETTINGS.join(", ")),
            });
        }
        self.settings.insert(key.to_owned(), (value.to_owned(), at));
        Ok(())
    }

    /// Replaces the variables `${NAME}` in options are filled from (the environment by default).
    pub fn with_vars(mut self, vars: HashMap<String, String>) -> Self {
        self.vars = vars;
        self
    }

    /// The declared tables.
    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    /// The connectors tables may name (add sinks before planning).
    pub fn connectors_mut(&mut self) -> &mut Connectors {
        &mut self.connectors
    }

    /// Whether the file asks only for its plan (`EXPLAIN INSERT …`).
    pub fn explain_only(&self) -> bool {
        self.explain_only
    }

    /// A setting's value (`${VAR}`s filled in) and where it is set.
    pub(crate) fn setting(&self, key: &str) -> Option<(String, &Position)> {
        let (v, at) = self.settings.get(key)?;
        // `check_settings` has made sure every variable is set.
        Some((crate::connector::substitute(v, &|k| self.vars.get(k).cloned()).unwrap_or_else(|_| v.clone()), at))
    }

    /// Fails at the first setting naming a variable that is not set.
    pub(crate) fn check_settings(&self) -> Result<()> {
        for (v, at) in self.settings.values() {
            crate::connector::substitute(v, &|k| self.vars.get(k).cloned())
                .map_err(|message| Error::At { at: at.clone(), message })?;
        }
        Ok(())
    }

    /// A duration setting (`'10 s'`, `'500ms'`, `'1 min'`).
    pub(crate) fn duration(&self, key: &str) -> Result<Option<Duration>> {
        let Some((v, at)) = self.setting(key) else { return Ok(None) };
        parse_duration(&v).map(Some).ok_or_else(|| Error::At {
            at: at.clone(),
            message: format!("'{key}' = '{v}' is not a duration (e.g. '10 s')"),
        })
    }

    /// Memory budget and spill directory of each stateful step, from
    /// `rill.state.memory-budget` (`'64mb'`) and `rill.state.spill-dir`, if set.
    pub(crate) fn state_config(&self) -> Result<Option<rill_streams::StateConfig>> {
        let budget = self.setting("rill.state.memory-budget");
        let dir = self.setting("rill.state.spill-dir");
        if budget.is_none() && dir.is_none() {
            return Ok(None);
        }
        let defaults = rill_streams::StateConfig::default();
        let bytes = match budget {
            None => defaults.memory_budget,
            Some((v, at)) => crate::connector::parse_size(&v).ok_or_else(|| Error::At {
                at: at.clone(),
                message: format!("'rill.state.memory-budget' = '{v}' is not a size (e.g. '64mb')"),
            })?,
        };
        let dir = dir.map_or(defaults.spill_dir, |(d, _)| PathBuf::from(d));
        rill_streams::StateConfig::new(bytes, dir).map(Some).map_err(|e| {
            match self.settings.get("rill.state.memory-budget") {
                Some((_, at)) => Error::At { at: at.clone(), message: format!("'rill.state.memory-budget': {e}") },
                None => Error::Run(rill_streams::Error::State(e)),
            }
        })
    }

    /// The job's name: `pipeline.name`, or the file's name.
    pub(crate) fn name(&self) -> String {
        self.setting("pipeline.name").map(|(v, _)| v).unwrap_or_else(|| {
            let at = self.src.at(Location { line: 1, column: 1 });
            at.file.file_stem().map_or_else(|| "job".to_owned(), |s| s.to_string_lossy().into_owned())
        })
    }

    /// Where checkpoints go: `state.checkpoints.dir`, or the user's data directory.
    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        match self.setting("state.checkpoints.dir") {
            Some((dir, _)) => PathBuf::from(dir),
            None => dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("rill/jobs")
                .join(self.name())
                .join("checkpoints"),
        }
    }

    /// The streaming plan as text: each step, and what was pushed into the broker.
    pub async fn explain(&self) -> Result<String> {
        Ok(crate::plan::plan(self, false).await?.explain)
    }

    /// Plans the job into a dataflow on its topics (every statement checked).
    pub async fn build(&self) -> Result<Job> {
        Ok(crate::plan::plan(self, false).await?.job)
    }

    /// Plans the job with every source table fed by the caller instead of
    /// its connector: build the job into a dataflow, then push each table's
    /// rows (its physical columns) with `Dataflow::push(table, batch)` and
    /// move its event time with `Dataflow::watermark` — for running a job's
    /// SQL over data the caller has (tests, benchmarks, embedding).
    pub async fn build_fed(&self) -> Result<Job> {
        Ok(crate::plan::plan(self, true).await?.job)
    }

    /// Plans and runs the job until `stop` turns true (or its bounded sources
    /// are read), in `parallelism.default` instances.
    pub async fn run(&self, stop: tokio::sync::watch::Receiver<bool>) -> Result<Vec<RunReport>> {
        let parallelism = match self.setting("parallelism.default") {
            None => 1,
            Some((v, at)) => v.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| Error::At {
                at: at.clone(),
                message: format!("'parallelism.default' = '{v}' is not a positive whole number"),
            })?,
        };
        let mut jobs = Vec::new();
        for _ in 0..parallelism {
            jobs.push(Some(self.build().await?));
        }
        if let [Some(job)] = jobs.as_mut_slice() {
            let job = std::mem::take(job);
            return Ok(vec![job.run(stop).await?]);
        }
        let jobs = std::sync::Mutex::new(jobs);
        let take = |i: u32| {
            let mut jobs = match jobs.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            jobs.get_mut(i as usize).and_then(Option::take).unwrap_or_default()
        };
        Ok(Pipeline::run_parallel(parallelism, take, stop).await?)
    }
}

/// `10 s`, `10s`, `500 ms`, `2 min`, `1 h`, or plain milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim().to_lowercase().as_str() {
        "" | "ms" | "milliseconds" => n,
        "s" | "sec" | "second" | "seconds" => n.checked_mul(1_000)?,
        "min" | "minute" | "minutes" => n.checked_mul(60_000)?,
        "h" | "hour" | "hours" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}
