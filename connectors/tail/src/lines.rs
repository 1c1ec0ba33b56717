//! One file's bytes → events: lines split at `\n` (a `\r` before it
//! dropped), joined into multi-line events when a start pattern is set
//! (a line matching it begins an event; others belong to the event
//! before), over-long lines cut and flagged. It tracks the file offset
//! every event starts at and the offset up to which every byte is part of
//! an event already handed out ([`Assembler::committed`]), which is what
//! a stored position may say. It owns no file and reads no clock: the
//! tailer feeds it bytes and the time.

use std::time::{Duration, Instant};

use regex::bytes::Regex;

/// How lines become multi-line events.
#[derive(Debug, Clone)]
pub struct Multiline {
    /// A line matching this starts an event.
    pub start: Regex,
    /// An event with no new line for this long is complete.
    pub timeout: Duration,
    /// An event of this many lines is complete.
    pub max_lines: usize,
}

/// The rules of one file group.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub multiline: Option<Multiline>,
    pub max_line_bytes: usize,
}

/// One event cut from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// File offset of its first byte.
    pub offset: u64,
    /// Its text, without the final line break.
    pub body: Vec<u8>,
    /// Why it cannot be used as it is.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Pending {
    start: u64,
    body: Vec<u8>,
    lines: usize,
    last: Instant,
}

/// The line and event state of one file (see the module docs).
#[derive(Debug)]
pub(crate) struct Assembler {
    /// File offset of `carry[0]`.
    line_start: u64,
    /// Bytes after the last line break.
    carry: Vec<u8>,
    /// Inside an over-long line whose first bytes went out: the rest is cut.
    skipping: bool,
    pending: Option<Pending>,
}

impl Assembler {
    /// State for a file read from `offset` (a line's start).
    pub fn new(offset: u64) -> Self {
        Self { line_start: offset, carry: Vec::new(), skipping: false, pending: None }
    }

    /// Every byte before this offset belongs to an event already handed out.
    pub fn committed(&self) -> u64 {
        self.pending.as_ref().map_or(self.line_start, |p| p.start)
    }

    /// Takes `bytes` (the file's next ones) and hands out the events they complete.
    pub fn push(&mut self, rules: &Rules, bytes: &[u8], now: Instant, out: &mut Vec<Piece>) {
        let mut from = 0;
        // A line begun in an earlier read ends here first.
        if !self.carry.is_empty() || self.skipping {
            let Some(i) = memchr::memchr(b'\n', bytes) else {
                self.extend_carry(rules, bytes, out);
                return;
            };
            if self.skipping {
                // The rest of an over-long line whose head went out already.
                self.skipping = false;
                self.line_start += (i + 1) as u64;
            } else {
                self.carry.extend_from_slice(&bytes[..i]);
                let line = std::mem::take(&mut self.carry);
                let offset = self.line_start;
                self.line_start += line.len() as u64 + 1;
                self.whole_line(rules, offset, &line, now, out);
            }
            from = i + 1;
        }
        let rest = &bytes[from..];
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            let offset = self.line_start;
            self.line_start += (end - start + 1) as u64;
            self.whole_line(rules, offset, &rest[start..end], now, out);
            start = end + 1;
        }
        self.extend_carry(rules, &rest[start..], out);
    }

    /// A line with its break seen, cut first when it is too long.
    fn whole_line(&mut self, rules: &Rules, offset: u64, line: &[u8], now: Instant, out: &mut Vec<Piece>) {
        if line.len() > rules.max_line_bytes {
            self.flush(out);
            out.push(cut(offset, line, rules.max_line_bytes));
        } else {
            self.line(rules, offset, line, now, out);
        }
    }

    /// Keeps `bytes` as the start of a line; a line grown too long hands
    /// out its head now and drops the rest up to its break.
    fn extend_carry(&mut self, rules: &Rules, bytes: &[u8], out: &mut Vec<Piece>) {
        if self.skipping {
            self.line_start += bytes.len() as u64;
            return;
        }
        self.carry.extend_from_slice(bytes);
        if self.carry.len() > rules.max_line_bytes {
            self.flush(out);
            let line = std::mem::take(&mut self.carry);
            let offset = self.line_start;
            self.line_start += line.len() as u64;
            out.push(cut(offset, &line, rules.max_line_bytes));
            self.skipping = true;
        }
    }

    /// A whole line at `offset`.
    fn line(&mut self, rules: &Rules, offset: u64, line: &[u8], now: Instant, out: &mut Vec<Piece>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(multi) = &rules.multiline else {
            out.push(Piece { offset, body: line.to_vec(), error: None });
            return;
        };
        let starts = multi.start.is_match(line);
        match &mut self.pending {
            Some(p) if !starts && p.lines < multi.max_lines && p.body.len() + line.len() < rules.max_line_bytes => {
                p.body.push(b'\n');
                p.body.extend_from_slice(line);
                p.lines += 1;
                p.last = now;
            }
            _ => {
                self.flush(out);
                self.pending = Some(Pending { start: offset, body: line.to_vec(), lines: 1, last: now });
            }
        }
    }

    /// Hands out the multi-line event in progress.
    fn flush(&mut self, out: &mut Vec<Piece>) {
        if let Some(p) = self.pending.take() {
            out.push(Piece { offset: p.start, body: p.body, error: None });
        }
    }

    /// Hands out a multi-line event that waited long enough for more lines.
    pub fn tick(&mut self, rules: &Rules, now: Instant, out: &mut Vec<Piece>) {
        let timeout = rules.multiline.as_ref().map_or(Duration::ZERO, |m| m.timeout);
        if self.pending.as_ref().is_some_and(|p| now.saturating_duration_since(p.last) >= timeout) {
            self.flush(out);
        }
    }

    /// The file will not grow again (rotated away and idle, deleted, or
    /// truncated): hands out everything held, a last line without its
    /// break included.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        self.flush(out);
        if !self.carry.is_empty() {
            let body = std::mem::take(&mut self.carry);
            let offset = self.line_start;
            self.line_start += body.len() as u64;
            let body = body.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(body);
            out.push(Piece { offset, body, error: None });
        }
        self.skipping = false;
    }
}

/// The first `max` bytes of an over-long line at `offset`, flagged.
fn cut(offset: u64, line: &[u8], max: usize) -> Piece {
    Piece {
        offset,
        body: line[..max.min(line.len())].to_vec(),
        error: Some(format!(
            "line at byte {offset} is longer than max-line-bytes ({max}); its first {max} bytes are kept"
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rules(max: usize) -> Rules {
        Rules { multiline: None, max_line_bytes: max }
    }

    fn feed(a: &mut Assembler, r: &Rules, chunks: &[&[u8]]) -> Vec<Piece> {
        let mut out = Vec::new();
        for c in chunks {
            a.push(r, c, Instant::now(), &mut out);
        }
        out
    }

    fn bodies(pieces: &[Piece]) -> Vec<String> {
        pieces.iter().map(|p| String::from_utf8_lossy(&p.body).into_owned()).collect()
    }

    #[test]
    fn a_partial_last_line_waits_for_its_break() {
        let r = rules(100);
        let mut a = Assembler::new(0);
        let out = feed(&mut a, &r, &[b"one\r\ntw", b"o\nthr"]);
        assert_eq!(bodies(&out), ["one", "two"]);
        assert_eq!((out[0].offset, out[1].offset), (0, 5));
        assert_eq!(a.committed(), 9, "the partial line is not committed");
        let out = feed(&mut a, &r, &[b"ee\n"]);
        assert_eq!(bodies(&out), ["three"]);
        assert_eq!((out[0].offset, a.committed()), (9, 15));
        let mut out = feed(&mut a, &r, &[b"four"]);
        a.finish(&mut out);
        assert_eq!(bodies(&out), ["four"]);
        assert_eq!(a.committed(), 19);
    }

    #[test]
    fn an_over_long_line_is_cut_flagged_and_the_next_line_is_whole() {
        let r = rules(4);
        let mut a = Assembler::new(0);
        let out = feed(&mut a, &r, &[b"ok\nabc", b"defg", b"hi\nnext\n", b"0123456789\nend\n"]);
        assert_eq!(bodies(&out), ["ok", "abcd", "next", "0123", "end"]);
        assert!(out[1].error.as_deref().is_some_and(|e| e.contains("longer than max-line-bytes (4)")), "{out:?}");
        assert_eq!((out[1].offset, out[2].offset, out[3].offset, out[4].offset), (3, 13, 18, 29));
        assert!(out[2].error.is_none() && out[4].error.is_none());
        assert_eq!(a.committed(), 33);
    }

    #[test]
    fn stack_traces_join_the_line_that_starts_them() {
        let r = Rules {
            multiline: Some(Multiline {
                start: Regex::new(r"^\d{4}-").unwrap(),
                timeout: Duration::from_millis(50),
                max_lines: 3,
            }),
            max_line_bytes: 1000,
        };
        let mut a = Assembler::new(0);
        let text = "2026-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n2026-01-01 INFO ok\n";
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.push(&r, text.as_bytes(), t0, &mut out);
        assert_eq!(bodies(&out), ["2026-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)"]);
        let held = text.find("2026-01-01 INFO").unwrap() as u64;
        assert_eq!(a.committed(), held, "the event in progress is not committed");
        a.tick(&r, t0 + Duration::from_millis(10), &mut out);
        assert_eq!(out.len(), 1, "not yet idle long enough");
        a.tick(&r, t0 + Duration::from_millis(60), &mut out);
        assert_eq!(bodies(&out[1..]), ["2026-01-01 INFO ok"]);
        assert_eq!(out[1].offset, held);
        assert_eq!(a.committed(), text.len() as u64);
        // At most max_lines lines per event.
        let mut out = Vec::new();
        a.push(&r, b"x\ny\nz\nw\n", t0, &mut out);
        a.finish(&mut out);
        assert_eq!(bodies(&out), ["x\ny\nz", "w"]);
    }

    proptest! {
        /// However the bytes are cut into reads, the same lines come out at the same offsets.
        #[test]
        fn reads_of_any_size_give_the_same_lines(
            lines in proptest::collection::vec("[a-z0-9 \r]{0,12}", 0..40),
            cuts in proptest::collection::vec(1usize..20, 0..60),
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = text.as_bytes();
            let r = rules(1000);
            let mut a = Assembler::new(0);
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.iter().chain(std::iter::repeat(&7)) {
                if at >= bytes.len() { break; }
                let end = (at + c).min(bytes.len());
                a.push(&r, &bytes[at..end], Instant::now(), &mut out);
                at = end;
            }
            let mut offset = 0u64;
            prop_assert_eq!(out.len(), lines.len());
            for (p, l) in out.iter().zip(&lines) {
                prop_assert_eq!(p.offset, offset);
                prop_assert_eq!(&p.body[..], l.strip_suffix('\r').unwrap_or(l).as_bytes());
                offset += l.len() as u64 + 1;
            }
            prop_assert_eq!(a.committed(), bytes.len() as u64);
        }
    }
}
