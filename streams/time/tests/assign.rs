//! Property tests of window assignment, session merging and watermarks
//! against direct definitions.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rill_time::{SessionWindows, WatermarkConfig, Watermarks, Window, WindowSpec};

proptest! {
    #[test]
    fn a_row_is_in_exactly_one_tumbling_window_on_the_grid(size in 1i64..10_000, offset in 0i64..10_000, ts in -1_000_000i64..1_000_000) {
        let offset = offset % size;
        let w = WindowSpec::tumbling_with_offset(size, offset).unwrap().assign(ts);
        prop_assert_eq!(w.len(), 1);
        prop_assert!(w[0].contains(ts));
        prop_assert_eq!(w[0].end - w[0].start, size);
        prop_assert_eq!((w[0].start - offset).rem_euclid(size), 0);
    }

    #[test]
    fn hopping_windows_are_every_window_of_the_grid_that_holds_the_row(size in 1i64..2_000, slide in 1i64..2_000, ts in -100_000i64..100_000) {
        let got = WindowSpec::hopping(size, slide).unwrap().assign(ts);
        // Direct definition: grid starts k·slide with start <= ts < start + size.
        let mut want = Vec::new();
        let mut start = ts.div_euclid(slide) * slide;
        while start + size > ts {
            want.push(Window::new(start, start + size));
            start -= slide;
        }
        want.reverse();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cumulate_windows_share_the_period_start_and_grow_by_step(step in 1i64..500, n in 1i64..20, ts in -100_000i64..100_000) {
        let max = step * n;
        let got = WindowSpec::cumulate(step, max).unwrap().assign(ts);
        let period = ts.div_euclid(max) * max;
        prop_assert!(!got.is_empty());
        for (i, w) in got.iter().enumerate() {
            prop_assert_eq!(w.start, period);
            prop_assert!(w.contains(ts));
            prop_assert_eq!((w.end - period) % step, 0);
            if i > 0 {
                prop_assert_eq!(w.end - got[i - 1].end, step);
            }
        }
        prop_assert_eq!(got.last().unwrap().end, period + max);
        // The first window is the smallest that still holds the row.
        prop_assert!(got[0].end - step <= ts);
    }

    #[test]
    fn sessions_equal_gap_clustering_in_any_arrival_order(gap in 1i64..100, mut ts in proptest::collection::vec(0i64..2_000, 1..60)) {
        let mut s = SessionWindows::new(gap).unwrap();
        for t in &ts {
            let change = s.add(*t);
            prop_assert!(change.window.contains(*t));
        }
        // Direct definition: sort, and cut wherever the next row is gap or more after the previous.
        ts.sort_unstable();
        let mut want = Vec::new();
        let (mut start, mut last) = (ts[0], ts[0]);
        for t in &ts[1..] {
            if *t >= last + gap {
                want.push(Window::new(start, last + gap));
                start = *t;
            }
            last = *t;
        }
        want.push(Window::new(start, last + gap));
        prop_assert_eq!(s.windows(), want);
    }

    #[test]
    fn the_watermark_never_goes_back_and_never_passes_an_active_input(
        delay in 0i64..100,
        rows in proptest::collection::vec((0usize..3, 0i64..10_000), 1..200),
    ) {
        let mut w = Watermarks::new(WatermarkConfig { max_out_of_orderness: delay, idle_timeout: None }, 3, 0).unwrap();
        let mut max = [None::<i64>; 3];
        let mut last = i64::MIN;
        for (input, ts) in rows {
            w.observe(input, ts, 0);
            max[input] = Some(max[input].map_or(ts, |m: i64| m.max(ts)));
            w.advance(0);
            prop_assert!(w.current() >= last);
            last = w.current();
            if max.iter().all(Option::is_some) {
                let bound = max.iter().flatten().min().unwrap() - delay - 1;
                prop_assert!(w.current() <= bound);
            } else {
                prop_assert_eq!(w.current(), i64::MIN);
            }
        }
    }
}
