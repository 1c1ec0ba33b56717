//! Watermarks: how far event time has progressed, per input (a source
//! queue) with bounded out-of-orderness, combined as the minimum over
//! inputs that are not idle.
//!
//! An input's watermark is its largest timestamp minus the allowed
//! out-of-orderness minus one (no row at or below it is expected any more).
//! An input that has sent nothing for `idle_timeout` (processing time) no
//! longer holds the others back; when it sends again it counts again, and
//! the combined watermark never moves back.

use crate::Error;

/// Watermark settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkConfig {
    /// How far behind the largest timestamp rows may still arrive (ms).
    pub max_out_of_orderness: i64,
    /// An input silent this long (processing-time ms) is idle; none: never.
    pub idle_timeout: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    max_ts: Option<i64>,
    last_active: i64,
}

/// Watermarks of several inputs and their combination.
#[derive(Debug, Clone)]
pub struct Watermarks {
    cfg: WatermarkConfig,
    inputs: Vec<Input>,
    current: i64,
}

impl Watermarks {
    /// Tracks `inputs` inputs from processing time `now`.
    pub fn new(cfg: WatermarkConfig, inputs: usize, now: i64) -> Result<Self, Error> {
        if cfg.max_out_of_orderness < 0 {
            return Err(Error::Watermark(format!(
                "out-of-orderness must not be negative, got {} ms",
                cfg.max_out_of_orderness
            )));
        }
        if cfg.idle_timeout.is_some_and(|t| t <= 0) {
            return Err(Error::Watermark("the idle timeout must be positive".into()));
        }
        Ok(Self { cfg, inputs: vec![Input { max_ts: None, last_active: now }; inputs], current: i64::MIN })
    }

    /// Adds an input (a queue that showed up) at processing time `now`;
    /// returns its number. Until it has a row it holds the watermark back.
    pub fn add_input(&mut self, now: i64) -> usize {
        self.inputs.push(Input { max_ts: None, last_active: now });
        self.inputs.len() - 1
    }

    /// Records a row at event time `ts` from `input` at processing time `now`.
    pub fn observe(&mut self, input: usize, ts: i64, now: i64) {
        if let Some(i) = self.inputs.get_mut(input) {
            i.max_ts = Some(i.max_ts.map_or(ts, |m| m.max(ts)));
            i.last_active = i.last_active.max(now);
        }
    }

    /// Recomputes the combined watermark at processing time `now`; returns
    /// it when it moved forward.
    pub fn advance(&mut self, now: i64) -> Option<i64> {
        let mut min: Option<i64> = None;
        for i in &self.inputs {
            let idle = self.cfg.idle_timeout.is_some_and(|t| now - i.last_active >= t);
            if idle {
                continue;
            }
            // An active input without rows yet holds everything back.
            let wm = i.max_ts.map_or(i64::MIN, |m| m.saturating_sub(self.cfg.max_out_of_orderness).saturating_sub(1));
            min = Some(min.map_or(wm, |x| x.min(wm)));
        }
        // Every input idle: event time stands still.
        let next = min?;
        (next > self.current).then(|| {
            self.current = next;
            next
        })
    }

    /// The combined watermark (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Whether a row at `ts` is behind the watermark (late).
    pub fn is_late(&self, ts: i64) -> bool {
        ts <= self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(delay: i64, idle: Option<i64>) -> WatermarkConfig {
        WatermarkConfig { max_out_of_orderness: delay, idle_timeout: idle }
    }

    #[test]
    fn the_slowest_input_decides_until_it_goes_idle() {
        let mut w = Watermarks::new(cfg(5, Some(1_000)), 2, 0).unwrap();
        w.observe(0, 100, 10);
        assert_eq!(w.advance(10), None, "input 1 has sent nothing yet");
        w.observe(1, 50, 20);
        assert_eq!(w.advance(20), Some(44));
        w.observe(0, 200, 30);
        assert_eq!(w.advance(30), None, "still held by input 1 at 44");
        // Input 1 silent for a second: input 0 alone decides.
        assert_eq!(w.advance(1_020), Some(194));
        assert!(w.is_late(190) && !w.is_late(195));
        // Input 1 is back, far behind: the watermark does not move back.
        w.observe(1, 60, 1_030);
        assert_eq!(w.advance(1_030), None);
        assert_eq!(w.current(), 194);
    }

    #[test]
    fn settings_are_checked() {
        assert!(Watermarks::new(cfg(-1, None), 1, 0).is_err());
        assert!(Watermarks::new(cfg(0, Some(0)), 1, 0).is_err());
        let mut none = Watermarks::new(cfg(0, None), 0, 0).unwrap();
        assert_eq!(none.advance(5), None, "no input: no event time yet");
        let i = none.add_input(5);
        none.observe(i, 100, 6);
        assert_eq!(none.advance(6), Some(99));
    }
}
