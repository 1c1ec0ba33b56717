//! The DSL's joins of two streams: regular (optionally with a state TTL),
//! interval, window and temporal joins; and lookup joins of a stream with
//! an external table.

use std::sync::Arc;
use std::time::Duration;

use super::{Stream, WindowDef, millis};
use crate::join::{IntervalJoin, JoinSide, WindowJoin};
use crate::lookup::{Lookup, LookupConfig, LookupJoin};
use crate::operator::Operator;
use crate::temporal::TemporalJoin;
use crate::window_agg::Windows;
use crate::{Error, Result};

impl Stream {
    fn side(&self, keys: &[&str]) -> JoinSide {
        JoinSide {
            schema: Arc::clone(&self.schema),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            time: self.time.clone(),
        }
    }

    fn join_with(self, other: &Stream, step: &str, built: Result<Box<dyn Operator>>) -> Stream {
        let inputs = vec![self.node, other.node];
        let time = self.time.clone();
        self.then(step, built, inputs, time)
    }

    /// Every pair of rows with equal keys (`left_keys` here, `right_keys`
    /// in `other`) — state grows with both inputs.
    pub fn join(self, other: &Stream, left_keys: &[&str], right_keys: &[&str]) -> Stream {
        let state = self.state_config();
        let built = IntervalJoin::new(&self.side(left_keys), &other.side(right_keys), None)
            .map(|j| Box::new(j.with_state(state)) as Box<dyn Operator>);
        self.join_with(other, "join", built)
    }

    /// A regular join whose rows are forgotten `ttl` of event time after
    /// their own time (its state TTL): a row meets the other side's rows
    /// that are still remembered when it arrives, and state stays bounded.
    pub fn join_with_ttl(self, other: &Stream, left_keys: &[&str], right_keys: &[&str], ttl: Duration) -> Stream {
        let built = IntervalJoin::new(&self.side(left_keys), &other.side(right_keys), None)
            .and_then(|j| j.with_ttl(millis(ttl)))
            .map(|j| Box::new(j.with_state(self.state_config())) as Box<dyn Operator>);
        self.join_with(other, "join", built)
    }

    /// Pairs of rows with equal keys whose event times are within `bounds`
    /// ms of each other: `right + start <= left <= right + end`
    /// (`-2_000..=1_000`: the left row up to 2 s before to 1 s after).
    pub fn interval_join(
        self,
        other: &Stream,
        left_keys: &[&str],
        right_keys: &[&str],
        bounds: std::ops::RangeInclusive<i64>,
    ) -> Stream {
        let bounds = Some((*bounds.start(), *bounds.end()));
        let state = self.state_config();
        let built = IntervalJoin::new(&self.side(left_keys), &other.side(right_keys), bounds)
            .map(|j| Box::new(j.with_state(state)) as Box<dyn Operator>);
        self.join_with(other, "interval_join", built)
    }

    /// Each row with the version of `table` (rows per key, or a changelog)
    /// its key had at the row's event time (`event_time`; the row waits for
    /// the watermark), or when it arrives (processing time): a temporal join.
    pub fn temporal_join(self, table: &Stream, keys: &[&str], table_keys: &[&str], event_time: bool) -> Stream {
        let built = TemporalJoin::new(&self.side(keys), &table.side(table_keys), event_time)
            .map(|j| Box::new(j) as Box<dyn Operator>);
        self.join_with(table, "temporal_join", built)
    }

    /// Each row with the rows `lookup` finds for its `keys` when it arrives
    /// (compared with `config.table_keys`): a lookup join.
    pub fn lookup_join(self, lookup: Box<dyn Lookup>, keys: &[&str], config: LookupConfig) -> Stream {
        let built = LookupJoin::new(&self.schema, keys, lookup, config).map(|j| Box::new(j) as Box<dyn Operator>);
        self.op("lookup_join", built)
    }

    /// Pairs of rows with equal keys in the same window of `windows` (tumbling or hopping).
    pub fn window_join(self, other: &Stream, left_keys: &[&str], right_keys: &[&str], windows: WindowDef) -> Stream {
        let built = match windows.0 {
            Ok(Windows::Time(spec)) => {
                let state = self.state_config();
                WindowJoin::new(&self.side(left_keys), &other.side(right_keys), spec)
                    .map(|j| Box::new(j.with_state(state)) as Box<dyn Operator>)
            }
            Ok(_) => Err(Error::Plan("a window join takes time windows, not sessions or counts".into())),
            Err(e) => Err(Error::Plan(e)),
        };
        self.join_with(other, "window_join", built)
    }
}
