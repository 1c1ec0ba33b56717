//! A built job: operators wired into a graph, driven by batches and
//! watermarks pushed into its named sources.
//!
//! Nodes are kept in creation order, which is a topological order (a node
//! is created after its inputs), so a watermark can be carried through the
//! graph in one pass: each operator's watermark is the minimum over its
//! inputs, and the results it fires reach downstream operators before their
//! own watermark moves. Everything is synchronous and single-threaded; a
//! driver (the broker runner, a generator, a test) decides when to push.
//!
//! It owns wiring, watermark propagation and per-operator counters; it does
//! not read sources nor decide when event time moves.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::operator::{Operator, Output};
use crate::sink::Sink;
use crate::{Error, Result};

pub(crate) enum Kind {
    Source,
    Operator(Box<dyn Operator>),
    Sink(Box<dyn Sink>),
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) schema: Option<SchemaRef>,
    /// A source's event-time column.
    pub(crate) time: Option<String>,
    /// Upstream nodes, one per input port.
    pub(crate) inputs: Vec<usize>,
    /// Downstream (node, port) pairs.
    pub(crate) outputs: Vec<(usize, usize)>,
}

/// Counters of one operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// The operator's name (`filter`, `window`, …) and position.
    pub name: String,
    /// Rows received.
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Rows set aside as late.
    pub late: u64,
    /// Keys or windows held as state.
    pub state: usize,
    /// Its event time (ms; `i64::MIN` before the first watermark).
    pub watermark: i64,
}

/// A consistent picture of a dataflow's state between two pushes: every
/// node's event time and every stateful operator's state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Operator names in graph order (to refuse restoring into another job).
    pub nodes: Vec<String>,
    /// Each node's watermark.
    pub watermarks: Vec<i64>,
    /// State batches by node index.
    pub states: Vec<(usize, RecordBatch)>,
}

/// A job ready to run (see the module docs).
pub struct Dataflow {
    nodes: Vec<Node>,
    marks: Vec<i64>,
    metrics: Vec<NodeMetrics>,
    sources: HashMap<String, usize>,
    late: Option<Box<dyn Sink>>,
}

impl std::fmt::Debug for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataflow").field("nodes", &self.nodes.len()).field("sources", &self.sources).finish()
    }
}

impl Dataflow {
    pub(crate) fn new(nodes: Vec<Node>, late: Option<Box<dyn Sink>>) -> Self {
        let sources = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, Kind::Source))
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let metrics = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeMetrics { name: format!("{}#{i}", n.name), watermark: i64::MIN, ..Default::default() })
            .collect();
        Self { marks: vec![i64::MIN; nodes.len()], nodes, metrics, sources, late }
    }

    /// Names of the sources, to push into.
    pub fn sources(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.sources.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The schema a source expects.
    pub fn source_schema(&self, source: &str) -> Result<SchemaRef> {
        let i = self.source(source)?;
        self.nodes[i].schema.clone().ok_or_else(|| Error::Plan(format!("source '{source}' has no schema")))
    }

    /// Index of a source's event-time column in its schema.
    pub fn source_time(&self, source: &str) -> Result<usize> {
        let i = self.source(source)?;
        let node = &self.nodes[i];
        node.time
            .as_ref()
            .zip(node.schema.as_ref())
            .and_then(|(t, s)| s.index_of(t).ok())
            .ok_or_else(|| Error::Plan(format!("source '{source}' has no event-time column")))
    }

    fn source(&self, name: &str) -> Result<usize> {
        self.sources
            .get(name)
            .copied()
            .ok_or_else(|| Error::Plan(format!("the job has no source '{name}'; its sources are {:?}", self.sources())))
    }

    /// Feeds a batch into source `source`.
    pub fn push(&mut self, source: &str, batch: RecordBatch) -> Result<()> {
        let i = self.source(source)?;
        if let Some(s) = &self.nodes[i].schema
            && s.fields() != batch.schema().fields()
        {
            return Err(Error::Plan(format!("a batch pushed into '{source}' does not have the source's schema")));
        }
        self.metrics[i].rows_in += batch.num_rows() as u64;
        self.forward(i, vec![batch])
    }

    /// Sends `batches` from node `from` to everything downstream of it,
    /// depth first.
    fn forward(&mut self, from: usize, batches: Vec<RecordBatch>) -> Result<()> {
        let mut work: Vec<(usize, RecordBatch)> = batches.into_iter().rev().map(|b| (from, b)).collect();
        while let Some((node, batch)) = work.pop() {
            self.metrics[node].rows_out += batch.num_rows() as u64;
            let outputs = self.nodes[node].outputs.clone();
            for (next, port) in outputs.into_iter().rev() {
                self.metrics[next].rows_in += batch.num_rows() as u64;
                let mut out = Output::default();
                match &mut self.nodes[next].kind {
                    Kind::Operator(op) => op.process(port, batch.clone(), &mut out)?,
                    Kind::Sink(sink) => sink.write(batch.clone())?,
                    Kind::Source => {}
                }
                self.take_late(next, &mut out)?;
                work.extend(out.rows.into_iter().rev().map(|b| (next, b)));
            }
        }
        Ok(())
    }

    fn take_late(&mut self, node: usize, out: &mut Output) -> Result<()> {
        for late in out.late.drain(..) {
            self.metrics[node].late += late.num_rows() as u64;
            match self.late.as_mut() {
                Some(sink) => sink.write(late)?,
                None => {
                    tracing::warn!(operator = %self.metrics[node].name, rows = late.num_rows(), "rows behind the watermark")
                }
            }
        }
        Ok(())
    }

    /// Event time of source `source` has reached `watermark`; operators
    /// whose every input got there fire what it completes.
    pub fn watermark(&mut self, source: &str, watermark: i64) -> Result<()> {
        let i = self.source(source)?;
        if watermark <= self.marks[i] {
            return Ok(());
        }
        self.marks[i] = watermark;
        self.metrics[i].watermark = watermark;
        for node in i + 1..self.nodes.len() {
            let inputs = &self.nodes[node].inputs;
            let Some(mark) = inputs.iter().map(|u| self.marks[*u]).min() else { continue };
            if mark <= self.marks[node] {
                continue;
            }
            self.marks[node] = mark;
            self.metrics[node].watermark = mark;
            let mut out = Output::default();
            if let Kind::Operator(op) = &mut self.nodes[node].kind {
                op.advance(mark, &mut out)?;
            }
            self.take_late(node, &mut out)?;
            self.forward(node, out.rows)?;
        }
        Ok(())
    }

    /// The inputs are complete: every source's event time goes to the end,
    /// firing every window still open.
    pub fn finish(&mut self) -> Result<()> {
        for s in self.sources().into_iter().map(str::to_owned).collect::<Vec<_>>() {
            self.watermark(&s, i64::MAX)?;
        }
        Ok(())
    }

    /// Counters per operator, in graph order.
    pub fn metrics(&self) -> Vec<NodeMetrics> {
        let mut m = self.metrics.clone();
        for (n, node) in m.iter_mut().zip(&self.nodes) {
            if let Kind::Operator(op) = &node.kind {
                n.state = op.state_size();
            }
        }
        m
    }

    /// The state of every operator and every node's event time; take it
    /// between pushes, when nothing is in flight.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let mut states = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if let Kind::Operator(op) = &mut n.kind
                && let Some(state) = op.snapshot()?
            {
                states.push((i, state));
            }
        }
        Ok(Snapshot {
            nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            watermarks: self.marks.clone(),
            states,
        })
    }

    /// Puts a fresh dataflow of the same job back where `snapshot` was taken.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        if names != snapshot.nodes || snapshot.watermarks.len() != self.nodes.len() {
            return Err(Error::Plan(format!(
                "the checkpoint is of another job: its steps are {:?}, this job's {names:?}",
                snapshot.nodes
            )));
        }
        for (i, state) in &snapshot.states {
            match self.nodes.get_mut(*i).map(|n| &mut n.kind) {
                Some(Kind::Operator(op)) => op.restore(state)?,
                _ => return Err(Error::Plan(format!("the checkpoint holds state for step {i}, which keeps none"))),
            }
        }
        // Event time as it was, firing nothing: what was due had fired
        // before the snapshot, and what was not fires at the next advance.
        for (node, mark) in snapshot.watermarks.iter().enumerate() {
            self.marks[node] = *mark;
            self.metrics[node].watermark = *mark;
            if let Kind::Operator(op) = &mut self.nodes[node].kind {
                op.set_watermark(*mark);
            }
        }
        Ok(())
    }

    /// Every sink, the late-row output included.
    fn sinks(&mut self) -> impl Iterator<Item = &mut Box<dyn Sink>> {
        self.nodes
            .iter_mut()
            .filter_map(|n| match &mut n.kind {
                Kind::Sink(s) => Some(s),
                _ => None,
            })
            .chain(self.late.as_mut())
    }

    /// Asks every sink to prepare checkpoint `id`.
    pub fn prepare_sinks(&mut self, id: u64) -> Result<()> {
        self.sinks().try_for_each(|s| s.prepare(id))
    }

    /// Tells every sink the job restarts from checkpoint `last`.
    pub fn recover_sinks(&mut self, last: Option<u64>) -> Result<()> {
        self.sinks().try_for_each(|s| s.recover(last))
    }

    /// The rows sinks refused since last asked.
    pub fn rejected(&mut self) -> Vec<crate::decode::DeadLetter> {
        self.sinks().flat_map(|s| s.rejected()).collect()
    }

    /// Tells every sink checkpoint `id` is complete.
    pub fn commit_sinks(&mut self, id: u64) -> Result<()> {
        self.sinks().try_for_each(|s| s.commit(id))
    }
}
