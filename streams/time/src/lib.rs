//! Event time for Rill's streams: which windows a row belongs to, how
//! session windows merge, how many rows make a count window, and how far
//! event time has progressed (watermarks).
//!
//! What it owns: the arithmetic of time — window bounds, assignment,
//! merging, watermark generation and lateness. What it must not touch:
//! rows, state or I/O; operators call it with timestamps and keys of their
//! own. Times are milliseconds since the epoch (`i64`); a window covers
//! `[start, end)`.
//!
//! ```
//! use rill_time::{Window, WindowSpec};
//! let five_minutes = WindowSpec::tumbling(300_000).unwrap();
//! assert_eq!(five_minutes.assign(1_000_123), vec![Window::new(900_000, 1_200_000)]);
//! ```

mod session;
mod watermark;

pub use session::{CountWindows, SessionWindows};
pub use watermark::{WatermarkConfig, Watermarks};

/// Errors of window and watermark settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A window setting is out of range.
    #[error("invalid window: {0}")]
    Window(String),
    /// A watermark setting is out of range.
    #[error("invalid watermark: {0}")]
    Watermark(String),
}

/// A time window `[start, end)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond inside.
    pub start: i64,
    /// First millisecond after.
    pub end: i64,
}

impl Window {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// Whether `ts` lies inside.
    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// The last millisecond inside (a window's results carry this time).
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// How rows are grouped in time (the time-based kinds; sessions and count
/// windows keep state per key: see [`SessionWindows`], [`CountWindows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size`, aligned to `offset`.
    Tumbling {
        /// Length in ms.
        size: i64,
        /// Shift of the window grid from the epoch, `0 <= offset < size`.
        offset: i64,
    },
    /// Windows of `size` starting every `slide` (overlapping when `slide < size`).
    Hopping {
        /// Length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
    },
    /// Windows that grow by `step` from the start of a `max`-long period
    /// (Flink's CUMULATE: `[p, p+step)`, `[p, p+2·step)` … `[p, p+max)`).
    Cumulate {
        /// Growth per window in ms.
        step: i64,
        /// Period length in ms (a multiple of `step`).
        max: i64,
    },
}

impl WindowSpec {
    /// Tumbling windows of `size` ms.
    pub fn tumbling(size: i64) -> Result<Self, Error> {
        Self::tumbling_with_offset(size, 0)
    }

    /// Tumbling windows of `size` ms whose grid is shifted by `offset` ms.
    pub fn tumbling_with_offset(size: i64, offset: i64) -> Result<Self, Error> {
        if size <= 0 {
            return Err(Error::Window(format!("tumbling size must be positive, got {size} ms")));
        }
        if !(0..size).contains(&offset) {
            return Err(Error::Window(format!("tumbling offset must be in 0..{size} ms, got {offset}")));
        }
        Ok(Self::Tumbling { size, offset })
    }

    /// Hopping windows of `size` ms starting every `slide` ms.
    pub fn hopping(size: i64, slide: i64) -> Result<Self, Error> {
        if size <= 0 || slide <= 0 {
            return Err(Error::Window(format!("hopping size and slide must be positive, got {size} and {slide} ms")));
        }
        if size / slide > 10_000 {
            return Err(Error::Window(format!(
                "hopping size {size} ms over slide {slide} ms puts each row in {} windows; at most 10000",
                size / slide
            )));
        }
        Ok(Self::Hopping { size, slide })
    }

    /// Cumulating windows growing by `step` ms up to `max` ms.
    pub fn cumulate(step: i64, max: i64) -> Result<Self, Error> {
        if step <= 0 || max <= 0 || max % step != 0 {
            return Err(Error::Window(format!(
                "cumulate needs a positive step and a max that is a multiple of it, got step {step} ms and max {max} ms"
            )));
        }
        if max / step > 10_000 {
            return Err(Error::Window(format!(
                "cumulate max {max} ms over step {step} ms makes more than 10000 windows"
            )));
        }
        Ok(Self::Cumulate { step, max })
    }

    /// The windows a row at `ts` belongs to, earliest end first.
    pub fn assign(&self, ts: i64) -> Vec<Window> {
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                let start = align(ts, size, offset);
                vec![Window::new(start, start.saturating_add(size))]
            }
            WindowSpec::Hopping { size, slide } => {
                // Window starts are multiples of `slide`; those in (ts - size, ts].
                let last = align(ts, slide, 0);
                let mut out = Vec::new();
                let mut start = last;
                while start > ts.saturating_sub(size) {
                    out.push(Window::new(start, start.saturating_add(size)));
                    start = start.saturating_sub(slide);
                }
                out.reverse();
                out
            }
            WindowSpec::Cumulate { step, max } => {
                let period = align(ts, max, 0);
                let first_end = align(ts, step, 0).saturating_add(step);
                let mut out = Vec::new();
                let mut end = first_end;
                while end <= period.saturating_add(max) {
                    out.push(Window::new(period, end));
                    end = end.saturating_add(step);
                }
                out
            }
        }
    }
}

/// The start of the `size`-long slot (grid shifted by `offset`) holding `ts`.
fn align(ts: i64, size: i64, offset: i64) -> i64 {
    ts - (ts - offset).rem_euclid(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(WindowSpec::tumbling(0).is_err());
        assert!(WindowSpec::tumbling_with_offset(10, 10).is_err());
        assert!(WindowSpec::hopping(10, 0).is_err());
        assert!(WindowSpec::hopping(1_000_000, 1).is_err());
        assert!(WindowSpec::cumulate(3, 10).is_err());
        let e = WindowSpec::cumulate(0, 10).unwrap_err();
        assert!(e.to_string().contains("positive step"), "{e}");
    }

    #[test]
    fn known_assignments() {
        let t = WindowSpec::tumbling_with_offset(10, 3).unwrap();
        assert_eq!(t.assign(12), vec![Window::new(3, 13)]);
        assert_eq!(t.assign(13), vec![Window::new(13, 23)]);
        assert_eq!(t.assign(-1), vec![Window::new(-7, 3)]);
        let h = WindowSpec::hopping(10, 5).unwrap();
        assert_eq!(h.assign(12), vec![Window::new(5, 15), Window::new(10, 20)]);
        let c = WindowSpec::cumulate(2, 6).unwrap();
        assert_eq!(c.assign(7), vec![Window::new(6, 8), Window::new(6, 10), Window::new(6, 12)]);
        assert_eq!(c.assign(11), vec![Window::new(6, 12)]);
    }
}
