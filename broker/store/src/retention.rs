//! Retention: which CommitLog segments to delete, and when.
//!
//! Two rules, as in RocketMQ: a segment whose newest message is older than
//! `file_reserved_hours` is deleted during the configured hour of the day;
//! and when the disk holding the store is fuller than
//! `disk_max_used_ratio`, the oldest segments go at once, expired or not.
//! The active segment is never deleted. This module decides, and
//! applies the decision to the CommitLog and carries it through to the
//! ConsumeQueues and the index.

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Inner;

/// Reports how full the disk holding a path is.
pub trait DiskUsage: Send + Sync + fmt::Debug {
    /// Fraction of the file system in use, from 0.0 to 1.0.
    fn used_ratio(&self, path: &Path) -> std::io::Result<f64>;
}

/// Reads disk usage with `statvfs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatvfsDisk;

impl DiskUsage for StatvfsDisk {
    fn used_ratio(&self, path: &Path) -> std::io::Result<f64> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: zeroed statvfs is a valid out-parameter; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the duration of the call.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let total = st.f_blocks as f64;
        if total == 0.0 {
            return Ok(0.0);
        }
        // Like `df`: blocks available to unprivileged users count as free.
        let used = (st.f_blocks - st.f_bfree) as f64;
        Ok(used / (used + st.f_bavail as f64).max(1.0))
    }
}

/// Why segments were deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// Older than the reserved time, at the delete hour.
    Expired,
    /// The disk was fuller than the configured ratio.
    DiskPressure,
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Segments deleted, with the reason for each.
    pub deleted: Vec<(u64, DeleteReason)>,
    /// The CommitLog's minimum offset afterwards.
    pub min_offset: u64,
}

/// The UTC hour of day of a millisecond timestamp.
pub(crate) fn utc_hour(millis: i64) -> u8 {
    (millis.div_euclid(3_600_000).rem_euclid(24)) as u8
}

/// Whether a full segment whose newest record was stored at `last_store`
/// may be deleted at `now` for age.
pub(crate) fn is_expired(last_store: i64, now: i64, reserved_hours: u32, delete_hour: u8) -> bool {
    utc_hour(now) == delete_hour && now.saturating_sub(last_store) > i64::from(reserved_hours) * 3_600_000
}

/// Carrying out a retention pass on the whole store.
impl Inner {
    /// Deletes expired segments, and old ones under disk pressure, then
    /// moves queue and index minimums past them.
    pub(crate) fn run_retention(&self) -> Result<RetentionReport> {
        let _one_at_a_time = self.retention_lock.lock();
        let cfg = self.config.retention;
        let mut report = RetentionReport::default();
        let dispatched = self.dispatched.load(Ordering::Acquire);
        // Disk pressure first: measure again after each deletion.
        while report.deleted.len() < 64 {
            let ratio = self
                .disk
                .used_ratio(&self.config.data_dir)
                .map_err(Error::io("measure disk usage of", &self.config.data_dir))?;
            if ratio <= cfg.disk_max_used_ratio {
                break;
            }
            let segments = self.log.segments();
            if segments.len() < 2 || segments[0].end() > dispatched {
                tracing::error!(ratio, "disk is over its limit and no CommitLog segment can be deleted");
                break;
            }
            let oldest = segments[0].base();
            tracing::warn!(
                ratio,
                limit = cfg.disk_max_used_ratio,
                segment = oldest,
                "disk over limit; deleting oldest segment"
            );
            if self.log.delete_oldest()?.is_none() {
                break;
            }
            report.deleted.push((oldest, DeleteReason::DiskPressure));
        }
        let now = self.clock.now_millis();
        for (seg, last) in self.log.full_segment_times() {
            if seg.end() > dispatched || !is_expired(last, now, cfg.file_reserved_hours, cfg.delete_hour_utc) {
                break;
            }
            if self.log.delete_oldest()?.is_none() {
                break;
            }
            report.deleted.push((seg.base(), DeleteReason::Expired));
        }
        report.min_offset = self.log.min_offset();
        if !report.deleted.is_empty() {
            for (_, q) in self.queues.all() {
                q.drop_below(report.min_offset)?;
            }
            self.index.drop_below(report.min_offset)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_needs_both_age_and_hour() {
        let h = 3_600_000i64;
        let at_four = 100 * 24 * h + 4 * h;
        assert_eq!(utc_hour(at_four), 4);
        assert!(is_expired(at_four - 73 * h, at_four, 72, 4));
        assert!(!is_expired(at_four - 71 * h, at_four, 72, 4), "not old enough");
        assert!(!is_expired(at_four - 73 * h, at_four + h, 72, 4), "wrong hour");
        assert_eq!(utc_hour(-1), 23);
    }

    #[test]
    fn statvfs_reports_a_ratio() {
        let r = StatvfsDisk.used_ratio(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&r), "{r}");
        assert!(StatvfsDisk.used_ratio(Path::new("/definitely/not/here")).is_err());
    }
}
