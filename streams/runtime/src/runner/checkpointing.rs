//! Taking a checkpoint during a run: the dataflow's state with every
//! queue's offset and every source's position, sinks prepared, stored
//! durably, sinks committed, then sources and the broker told.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rill_client::{QueueReader, QueueRef};

use super::{QueueState, RunReport, Runner, SourceState};
use crate::Result;
use crate::checkpoint::CheckpointStore;
use crate::dataflow::Dataflow;

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn checkpoint(
        &self,
        flow: &mut Dataflow,
        report: &mut RunReport,
        store: Option<&CheckpointStore>,
        reader: &QueueReader,
        queues: &[QueueState],
        sources: &[SourceState],
        id: u64,
    ) -> Result<u64> {
        let Some(store) = store else { return Ok(0) };
        let t = Instant::now();
        let snapshot = flow.snapshot()?;
        let positions: BTreeMap<String, u64> = queues.iter().map(|q| (q.position.clone(), q.next)).collect();
        flow.prepare_sinks(id)?;
        // Rows refused while preparing are set aside before the checkpoint
        // covers them (or, when dead letters fail the job, it stops here).
        self.set_aside(report, flow.rejected())?;
        let offsets: BTreeMap<String, String> = sources.iter().map(|s| (s.key.clone(), s.position.clone())).collect();
        store.save_with_sources(id, &snapshot, &positions, &offsets)?;
        flow.commit_sinks(id)?;
        for s in sources {
            if let Err(e) = s.inner.lock().await.committed(&s.position) {
                tracing::warn!(source = %s.key, error = %e, "a source could not let go of what the checkpoint covers");
            }
        }
        // Two inputs on one topic: the broker is told the lower position.
        let mut by_queue: HashMap<&QueueRef, u64> = HashMap::new();
        for q in queues {
            let e = by_queue.entry(&q.queue).or_insert(q.next);
            *e = (*e).min(q.next);
        }
        for (q, next) in by_queue {
            if let Err(e) = reader.commit(q, next).await {
                tracing::warn!(queue = %q.key(), error = %e, "could not report the offset to the broker");
            }
        }
        let took = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(checkpoint = id, state_batches = snapshot.states.len(), took_ms = took, "checkpoint complete");
        Ok(took)
    }
}
