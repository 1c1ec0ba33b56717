//! Conversions between protobuf `Duration` / `Timestamp` and Rust time,
//! rejecting values that are out of range instead of wrapping.

use std::time::Duration;

/// Why a protobuf time value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The duration is negative.
    #[error("duration {seconds}s {nanos}ns is negative")]
    Negative {
        /// Seconds as sent.
        seconds: i64,
        /// Nanoseconds as sent.
        nanos: i32,
    },
    /// The nanoseconds are outside 0..1e9.
    #[error("nanoseconds {0} are outside 0..1000000000")]
    BadNanos(i32),
}

/// A protobuf duration as a `std` duration.
pub fn to_duration(d: &prost_types::Duration) -> Result<Duration, TimeError> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(TimeError::Negative { seconds: d.seconds, nanos: d.nanos });
    }
    if d.nanos >= 1_000_000_000 {
        return Err(TimeError::BadNanos(d.nanos));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// A `std` duration as a protobuf duration (saturating at `i64::MAX` seconds).
pub fn from_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() as i32 }
}

/// Milliseconds since the epoch as a protobuf timestamp.
pub fn timestamp_from_millis(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: millis.div_euclid(1000), nanos: (millis.rem_euclid(1000) * 1_000_000) as i32 }
}

/// A protobuf timestamp as milliseconds since the epoch.
pub fn timestamp_to_millis(t: &prost_types::Timestamp) -> Result<i64, TimeError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(TimeError::BadNanos(t.nanos));
    }
    Ok(t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps_round_trip_and_reject_nonsense() {
        let d = Duration::from_millis(20_500);
        assert_eq!(to_duration(&from_duration(d)).unwrap(), d);
        assert!(matches!(
            to_duration(&prost_types::Duration { seconds: -1, nanos: 0 }),
            Err(TimeError::Negative { .. })
        ));
        assert!(to_duration(&prost_types::Duration { seconds: 1, nanos: 1_000_000_000 }).is_err());
        for ms in [0i64, 1, 999, 1_700_000_000_123, -1, -1001] {
            assert_eq!(timestamp_to_millis(&timestamp_from_millis(ms)).unwrap(), ms, "{ms}");
        }
        assert!(timestamp_to_millis(&prost_types::Timestamp { seconds: 1, nanos: -1 }).is_err());
    }
}
