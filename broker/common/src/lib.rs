//! Identifiers, names and clocks shared by every broker crate.
//!
//! This crate owns the small value types that cross crate boundaries inside
//! the broker (topic and group names, queue ids, the Java-compatible tag
//! hash), the [`Clock`] abstraction that lets time-dependent logic run under
//! a test's control, and the [`packed`] layout in which a producer and the
//! store carry many messages as one. It performs no I/O and must stay free
//! of async runtimes, networking and storage concerns.
//!
//! ```
//! use rill_common::{TopicName, java_string_hash};
//!
//! let topic = TopicName::new("orders").unwrap();
//! assert_eq!(topic.as_str(), "orders");
//! // Same value as Java's "TagA".hashCode().
//! assert_eq!(java_string_hash("TagA"), 2_598_919);
//! ```

pub mod packed;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest topic or group name accepted, in bytes (RocketMQ 5 uses 127).
pub const MAX_NAME_LEN: usize = 127;

/// Errors raised when a value does not satisfy the broker's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name was empty.
    #[error("{kind} name is empty")]
    EmptyName {
        /// Which kind of name ("topic", "group").
        kind: &'static str,
    },
    /// The name was longer than [`MAX_NAME_LEN`].
    #[error("{kind} name '{name}' is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    NameTooLong {
        /// Which kind of name.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name held a character outside `[A-Za-z0-9_%|-]`.
    #[error(
        "{kind} name '{name}' has the character {bad:?} at byte {at}; only letters, digits, '_', '-', '%' and '|' are allowed"
    )]
    BadCharacter {
        /// Which kind of name.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// The offending character.
        bad: char,
        /// Its byte position.
        at: usize,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::EmptyName { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong { kind, name: name.to_owned(), len: name.len() });
    }
    if let Some((at, bad)) =
        name.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%' | '|')))
    {
        return Err(Error::BadCharacter { kind, name: name.to_owned(), bad, at });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// Validates `name` and wraps it.
            pub fn new(name: &str) -> Result<Self> {
                validate_name($kind, name)?;
                Ok(Self(Arc::from(name)))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A validated topic name (`[A-Za-z0-9_%|-]{1,127}`).
    TopicName,
    "topic"
);
name_type!(
    /// A validated consumer or producer group name.
    GroupName,
    "group"
);

/// The hash RocketMQ stores for a tag in a ConsumeQueue entry: Java's
/// `String.hashCode` over the UTF-16 code units of the tag.
///
/// Using the same function keeps queue files comparable with RocketMQ's and
/// lets a filter computed by a Java client match ours.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// A source of wall-clock time in milliseconds since the Unix epoch.
///
/// Storage retention, timers and expiry read time only through this trait so
/// that tests can move time forward without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The operating system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock that reads `millis`.
    pub fn new(millis: i64) -> Self {
        Self(Arc::new(AtomicI64::new(millis)))
    }

    /// Sets the time to `millis`.
    pub fn set(&self, millis: i64) {
        self.0.store(millis, Ordering::SeqCst);
    }

    /// Moves the time forward by `millis`.
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values computed with OpenJDK's String.hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
        // Overflow wraps like Java's int arithmetic.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Characters outside the BMP hash as two UTF-16 surrogates.
        assert_eq!(java_string_hash("😀"), 1_772_899);
    }

    #[test]
    fn names_are_validated() {
        assert!(TopicName::new("%RETRY%group-1").is_ok());
        assert!(matches!(TopicName::new(""), Err(Error::EmptyName { .. })));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(TopicName::new(&long), Err(Error::NameTooLong { len: 128, .. })));
        let err = GroupName::new("a b").unwrap_err();
        assert_eq!(err, Error::BadCharacter { kind: "group", name: "a b".into(), bad: ' ', at: 1 });
        assert!(err.to_string().contains("byte 1"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        clock.advance(500);
        assert_eq!(shared.now_millis(), 1_500);
        shared.set(7);
        assert_eq!(clock.now_millis(), 7);
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(name in "[A-Za-z0-9_%|-]{1,127}") {
            let topic = TopicName::new(&name).unwrap();
            prop_assert_eq!(topic.as_str(), name.as_str());
        }

        #[test]
        fn ascii_hash_matches_direct_formula(s in "[ -~]{0,40}") {
            let mut h: i64 = 0;
            for b in s.bytes() {
                h = (h * 31 + i64::from(b)) & 0xFFFF_FFFF;
            }
            prop_assert_eq!(java_string_hash(&s), h as u32 as i32);
        }
    }
}
