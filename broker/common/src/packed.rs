//! Packed batches: many messages of one topic carried as the body of one
//! (RocketMQ's "inner batch"). A producer packs the messages of a request;
//! the broker checks them, stores them as one CommitLog record whose
//! property [`INNER_NUM`] says how many it holds, gives each its own queue
//! offset and index entries, and hands them to consumers one by one, so a
//! consumer never sees the packing.
//!
//! This module owns the byte layout of a packed body and nothing else (no
//! I/O, no policy on what the properties may say). Integers are big-endian.
//! A packed body is its entries back to back, each:
//!
//! | pos | size | field |
//! |----:|-----:|-------|
//! | 0   | 4 | entry size in bytes, this field included |
//! | 4   | 4 | flags (RocketMQ message flags) |
//! | 8   | 4 | body length `B` |
//! | 12  | B | body |
//! | …   | 2 | properties length `P` |
//! | …   | P | properties: `key U+0001 value U+0002` repeated |
//!
//! The entry size always equals `14 + B + P`; anything else is an error,
//! as is a body that ends inside an entry.

use std::ops::Range;

/// Property of the carrying message: how many messages its body packs.
pub const INNER_NUM: &str = "INNER_NUM";
/// Most messages one packed body may hold.
pub const MAX_ENTRIES: u32 = 65_536;
/// Bytes of an entry besides its body and properties.
pub const ENTRY_OVERHEAD: usize = 14;

const NAME_SEP: u8 = 1;
const PROP_SEP: u8 = 2;

/// Why a packed body cannot be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// An entry is malformed.
    #[error("packed message {entry} (at byte {at} of the body): {reason}")]
    Entry {
        /// Index of the entry, from 0.
        entry: usize,
        /// Where it starts in the packed body.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The body holds a different number of entries than announced.
    #[error("the packed body holds {found} messages; {INNER_NUM} says {announced}")]
    Count {
        /// What the carrying message says.
        announced: u32,
        /// What the body holds.
        found: u32,
    },
    /// A property name or value holds a separator character.
    #[error("property {key:?} contains a reserved separator character (U+0001 or U+0002)")]
    Separator {
        /// The property's name.
        key: String,
    },
    /// An entry's properties do not fit their length field.
    #[error("properties of one message take {size} bytes; at most {} fit", u16::MAX)]
    PropertiesTooLarge {
        /// Their encoded size.
        size: usize,
    },
    /// The announced count is not a number.
    #[error("{INNER_NUM} {value:?} is not a count of messages")]
    NotACount {
        /// What the carrier says.
        value: String,
    },
    /// Too many entries.
    #[error("a packed body holds at most {MAX_ENTRIES} messages")]
    TooMany,
}

/// Builds a packed body entry by entry.
#[derive(Debug, Default, Clone)]
pub struct Packer {
    buf: Vec<u8>,
    count: u32,
}

impl Packer {
    /// An empty packer with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Self { buf: Vec::with_capacity(bytes), count: 0 }
    }

    /// Appends one message; on error nothing is appended.
    pub fn push<'a>(
        &mut self,
        flags: u32,
        body: &[u8],
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), PackError> {
        if self.count >= MAX_ENTRIES {
            return Err(PackError::TooMany);
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&flags.to_be_bytes());
        self.buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(body);
        let props_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 2]);
        for (k, v) in properties {
            // Checked without an early exit, so it runs as wide as the CPU allows.
            let has_separator = |s: &str| s.bytes().fold(false, |seen, b| seen | (b.wrapping_sub(NAME_SEP) < 2));
            if has_separator(k) | has_separator(v) {
                self.buf.truncate(start);
                return Err(PackError::Separator { key: k.to_owned() });
            }
            self.buf.extend_from_slice(k.as_bytes());
            self.buf.push(NAME_SEP);
            self.buf.extend_from_slice(v.as_bytes());
            self.buf.push(PROP_SEP);
        }
        let props_len = self.buf.len() - props_at - 2;
        let Ok(props_len16) = u16::try_from(props_len) else {
            self.buf.truncate(start);
            return Err(PackError::PropertiesTooLarge { size: props_len });
        };
        self.buf[props_at..props_at + 2].copy_from_slice(&props_len16.to_be_bytes());
        let size = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        self.count += 1;
        Ok(())
    }

    /// Messages packed so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether nothing was packed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes packed so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The packed body and how many messages it holds.
    pub fn finish(self) -> (Vec<u8>, u32) {
        (self.buf, self.count)
    }
}

/// One message of a packed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// RocketMQ message flags.
    pub flags: u32,
    /// Where its body lies in the packed body (to slice shared buffers).
    pub body: Range<usize>,
    /// Its properties (`key U+0001 value U+0002` repeated; checked to be
    /// UTF-8 with a separator in every pair).
    pub properties: &'a str,
}

impl<'a> Entry<'a> {
    /// The value of property `key`, if present.
    pub fn property(&self, key: &str) -> Option<&'a str> {
        self.pairs().find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Every `(key, value)` of its properties, in order.
    pub fn pairs(&self) -> Pairs<'a> {
        Pairs { rest: self.properties }
    }
}

/// Iterator returned by [`Entry::pairs`]: a byte scan (the pairs are
/// short; a searcher per pair would cost more than the scan).
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.rest.as_bytes();
        let name_end = bytes.iter().position(|&b| b == NAME_SEP)?;
        let value_end = bytes[name_end..].iter().position(|&b| b == PROP_SEP).map_or(bytes.len(), |i| name_end + i);
        // Both separators are ASCII, so every cut falls between characters.
        let (name, value) = (self.rest.get(..name_end)?, self.rest.get(name_end + 1..value_end)?);
        self.rest = self.rest.get(value_end + 1..).unwrap_or_default();
        Some((name, value))
    }
}

/// The entries of a packed body, in order; stops after the first error.
pub fn entries(packed: &[u8]) -> Entries<'_> {
    Entries { packed, at: 0, index: 0, failed: false }
}

/// Iterator returned by [`entries`].
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    packed: &'a [u8],
    at: usize,
    index: usize,
    failed: bool,
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, PackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.packed.len() {
            return None;
        }
        let (at, index) = (self.at, self.index);
        let bad = |reason| PackError::Entry { entry: index, at, reason };
        let rest = &self.packed[at..];
        let parsed = (|| {
            if rest.len() < ENTRY_OVERHEAD {
                return Err(bad("the body ends inside the entry's header"));
            }
            let size = be_u32(rest) as usize;
            if size < ENTRY_OVERHEAD || size > rest.len() {
                return Err(bad("the entry's size runs past the body or is too small"));
            }
            let body_len = be_u32(&rest[8..]) as usize;
            if body_len > size - ENTRY_OVERHEAD {
                return Err(bad("the body length runs past the entry"));
            }
            let props_at = 12 + body_len;
            let props_len = usize::from(u16::from_be_bytes([rest[props_at], rest[props_at + 1]]));
            if props_at + 2 + props_len != size {
                return Err(bad("body and properties do not add up to the entry's size"));
            }
            let Ok(properties) = std::str::from_utf8(&rest[props_at + 2..size]) else {
                return Err(bad("the properties are not UTF-8"));
            };
            if !well_formed(properties.as_bytes()) {
                return Err(bad("a property lacks its name/value or pair separator"));
            }
            let entry = Entry { flags: be_u32(&rest[4..]), body: at + 12..at + props_at, properties };
            Ok((entry, size))
        })();
        match parsed {
            Ok((entry, size)) => {
                self.at += size;
                self.index += 1;
                Some(Ok(entry))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Whether raw properties are pairs each ending in its separator, with
/// exactly one name/value separator in each (one pass over the bytes).
fn well_formed(raw: &[u8]) -> bool {
    let mut named = false;
    for &b in raw {
        if b == NAME_SEP {
            if named {
                return false;
            }
            named = true;
        } else if b == PROP_SEP {
            if !named {
                return false;
            }
            named = false;
        }
    }
    !named && raw.last().is_none_or(|&b| b == PROP_SEP)
}

/// Checks a whole packed body against the count its carrier announced.
pub fn check(packed: &[u8], announced: u32) -> Result<(), PackError> {
    if announced == 0 || announced > MAX_ENTRIES {
        return Err(PackError::Count { announced, found: 0 });
    }
    let mut found = 0u32;
    for e in entries(packed) {
        e?;
        found += 1;
        if found > announced {
            break;
        }
    }
    if found == announced { Ok(()) } else { Err(PackError::Count { announced, found }) }
}

/// Entry `n` (from 0) of a packed body. The entries before it are only
/// stepped over by their sizes (a body is checked whole when it is stored;
/// reading message n of a record must not cost n full checks); entry `n`
/// itself is checked.
pub fn nth(packed: &[u8], n: usize) -> Result<Entry<'_>, PackError> {
    let mut at = 0;
    for i in 0..n {
        let size = packed.get(at..at + 4).map_or(0, |b| be_u32(b) as usize);
        if size < ENTRY_OVERHEAD || packed.len() - at < size {
            return Err(PackError::Count { announced: n as u32 + 1, found: i as u32 });
        }
        at += size;
    }
    let mut rest = Entries { packed, at, index: n, failed: false };
    match rest.next() {
        Some(entry) => entry,
        None => Err(PackError::Count { announced: n as u32 + 1, found: n as u32 }),
    }
}

/// Finds `key`'s value in raw `key U+0001 value U+0002` properties without allocating.
pub fn property<'a>(raw: &'a [u8], key: &str) -> Option<&'a str> {
    raw.split(|&b| b == PROP_SEP).find_map(|pair| {
        let sep = pair.iter().position(|&b| b == NAME_SEP)?;
        (&pair[..sep] == key.as_bytes()).then(|| std::str::from_utf8(&pair[sep + 1..]).ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Msg = (u32, Vec<u8>, Vec<(String, String)>);

    fn arb_msg() -> impl Strategy<Value = Msg> {
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec(("[A-Z_]{1,8}", "[ -~]{0,12}"), 0..4),
        )
    }

    proptest! {
        #[test]
        fn packed_messages_read_back_as_they_went_in(msgs in proptest::collection::vec(arb_msg(), 1..20)) {
            let mut p = Packer::default();
            for (flags, body, props) in &msgs {
                p.push(*flags, body, props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
            }
            let (packed, n) = p.finish();
            prop_assert_eq!(n as usize, msgs.len());
            check(&packed, n).unwrap();
            let back: Vec<Entry<'_>> = entries(&packed).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back.len(), msgs.len());
            for (i, (e, (flags, body, props))) in back.iter().zip(&msgs).enumerate() {
                prop_assert_eq!(e.flags, *flags);
                prop_assert_eq!(&packed[e.body.clone()], &body[..]);
                let got: Vec<(&str, &str)> = e.pairs().collect();
                let want: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(nth(&packed, i).unwrap(), e.clone());
            }
        }

        #[test]
        fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), n in 0u32..8) {
            let _ = check(&bytes, n);
            for e in entries(&bytes).flatten() {
                prop_assert!(e.body.end <= bytes.len());
            }
            let _ = nth(&bytes, n as usize);
        }

        #[test]
        fn a_cut_packed_body_is_an_error(msgs in proptest::collection::vec(arb_msg(), 1..6), cut in 1usize..64) {
            let mut p = Packer::default();
            for (flags, body, props) in &msgs {
                p.push(*flags, body, props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
            }
            let (packed, n) = p.finish();
            let keep = packed.len().saturating_sub(cut);
            prop_assert!(check(&packed[..keep], n).is_err());
        }
    }

    #[test]
    fn separators_and_counts_are_refused_with_what_was_wrong() {
        let mut p = Packer::default();
        assert_eq!(p.push(0, b"x", [("a\u{1}b", "v")]), Err(PackError::Separator { key: "a\u{1}b".into() }));
        assert!(p.is_empty() && p.bytes() == 0, "a refused message leaves nothing behind");
        p.push(0, b"line one", [("TAGS", "app")]).unwrap();
        p.push(0, b"line two", []).unwrap();
        let (packed, n) = p.finish();
        assert_eq!(n, 2);
        assert_eq!(check(&packed, 3), Err(PackError::Count { announced: 3, found: 2 }));
        assert_eq!(check(&packed, 0), Err(PackError::Count { announced: 0, found: 0 }));
        let mut garbled = packed.clone();
        garbled[8] = 0xFF; // the first body's length now runs past its entry
        let err = check(&garbled, 2).unwrap_err().to_string();
        assert!(err.contains("packed message 0") && err.contains("body length"), "{err}");
        assert_eq!(nth(&packed, 1).unwrap().property("TAGS"), None);
        let mut unpaired = packed.clone();
        let tags_sep = unpaired.iter().position(|&b| b == 1).unwrap();
        unpaired[tags_sep] = b'x'; // "TAGSxapp\u{2}": a name without a value
        let err = check(&unpaired, 2).unwrap_err().to_string();
        assert!(err.contains("packed message 0") && err.contains("separator"), "{err}");
        let mut doubled = packed.clone();
        let tags_end = doubled.iter().position(|&b| b == 2).unwrap();
        doubled[tags_end - 1] = 1; // "TAGS\u{1}ap\u{1}\u{2}": two name separators in one pair
        assert!(check(&doubled, 2).is_err());
        assert_eq!(nth(&packed, 0).unwrap().property("TAGS"), Some("app"));
    }

    #[test]
    fn property_lookup_matches_whole_names() {
        let props = b"TAGSX\x01no\x02TAGS\x01TagA\x02KEYS\x01a b\x02";
        assert_eq!(property(props, "TAGS"), Some("TagA"));
        assert_eq!(property(props, "KEYS"), Some("a b"));
        assert_eq!(property(props, "UNIQ_KEY"), None);
        assert_eq!(property(b"", "TAGS"), None);
    }
}
