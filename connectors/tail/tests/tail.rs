//! The tailer on real files: rotation of each kind while lines are being
//! written, restarts mid-file and across a rotation, deleted files, a
//! partial last line, binary garbage, new files, and a gigabyte of lines.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rill_tail::{Event, Parse, TailConfig, Tailer};

fn config(dir: &Path, pattern: &str) -> TailConfig {
    let mut c = TailConfig::new(&dir.join(pattern).to_string_lossy());
    c.close_idle = Duration::from_millis(100);
    c
}

fn appender(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).expect("open for append")
}

fn write_lines(f: &mut File, range: std::ops::Range<u32>) {
    let text: String = range.map(|i| format!("line {i:06}\n")).collect();
    f.write_all(text.as_bytes()).expect("write");
}

/// Polls until `want` events came (or fails after 20 s), then once more to see no extra.
fn drain(t: &mut Tailer, want: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} events arrived: {:?}", got.len(), got.last());
        let events = t.poll(1 << 20).expect("poll");
        if events.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        got.extend(events);
    }
    got.extend(t.poll(1 << 20).expect("poll"));
    got
}

fn numbers(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .map(|e| {
            let s = std::str::from_utf8(&e.body).expect("utf-8");
            s.strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a test line: {s:?}"))
        })
        .collect()
}

#[test]
fn rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = appender(&log);
    write_lines(&mut w, 0..100);
    let mut t = Tailer::open(config(dir.path(), "*.log"), None).unwrap();
    let first = drain(&mut t, 100);
    // Rotate: the writer still holds the old file and writes a little more before reopening.
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    write_lines(&mut w, 100..150);
    let mut w2 = appender(&log);
    write_lines(&mut w2, 150..300);
    let rest = drain(&mut t, 200);
    let mut all = numbers(&first);
    all.extend(numbers(&rest));
    assert_eq!(all, (0..300).collect::<Vec<_>>(), "every line once, the old file's before the new one's");
    // The old file is let go once idle at its end; only the new one is followed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.files().len() > 1 {
        assert!(Instant::now() < deadline, "the rotated file was never closed: {:?}", t.files());
        assert!(t.poll(1 << 20).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.files()[0].0, log);
}

#[test]
fn copy_truncate_is_detected_and_the_file_read_again_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = appender(&log);
    write_lines(&mut w, 0..200);
    let mut t = Tailer::open(config(dir.path(), "app.log"), None).unwrap();
    let before = drain(&mut t, 200);
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    write_lines(&mut w, 200..230);
    let after = drain(&mut t, 30);
    assert_eq!(numbers(&before), (0..200).collect::<Vec<_>>());
    assert_eq!(numbers(&after), (200..230).collect::<Vec<_>>());
    assert_eq!(after[0].offset, 0, "read again from the start");
}

#[test]
fn a_restart_mid_file_neither_repeats_nor_skips_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = appender(&log);
    write_lines(&mut w, 0..1000);
    // A partial line at the end when the position is taken.
    w.write_all(b"line 0010").unwrap();
    let mut t = Tailer::open(config(dir.path(), "*.log"), None).unwrap();
    let mut got = Vec::new();
    // Small reads: stop somewhere in the middle.
    while got.len() < 400 {
        got.extend(t.poll(1000).unwrap());
    }
    let position = t.position();
    drop(t);
    w.write_all(b"00\n").unwrap();
    write_lines(&mut w, 1001..1100);
    let mut t = Tailer::open(config(dir.path(), "*.log"), Some(&position)).unwrap();
    got.extend(drain(&mut t, 1100 - got.len()));
    assert_eq!(numbers(&got), (0..1100).collect::<Vec<_>>());
    // And again from the end: nothing more.
    let end = t.position();
    let mut t = Tailer::open(config(dir.path(), "*.log"), Some(&end)).unwrap();
    assert!(t.poll(1 << 20).unwrap().is_empty());
}

#[test]
fn a_file_rotated_while_stopped_is_finished_before_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut w = appender(&log);
    write_lines(&mut w, 0..50);
    let mut t = Tailer::open(config(dir.path(), "app.log"), None).unwrap();
    let mut got = drain(&mut t, 50);
    let position = t.position();
    drop(t);
    write_lines(&mut w, 50..80);
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    write_lines(&mut appender(&log), 80..120);
    let mut t = Tailer::open(config(dir.path(), "app.log"), Some(&position)).unwrap();
    got.extend(drain(&mut t, 70));
    assert_eq!(numbers(&got), (0..120).collect::<Vec<_>>());
}

#[test]
fn a_deleted_file_is_read_to_its_end_and_new_files_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    write_lines(&mut appender(&a), 0..10);
    let mut t = Tailer::open(config(dir.path(), "*.log"), None).unwrap();
    // Lines appended, then the file deleted before they were read.
    write_lines(&mut appender(&a), 10..20);
    std::fs::remove_file(&a).unwrap();
    let got = drain(&mut t, 20);
    assert_eq!(numbers(&got), (0..20).collect::<Vec<_>>());
    write_lines(&mut appender(&dir.path().join("b.log")), 20..25);
    write_lines(&mut appender(&dir.path().join("b.txt")), 90..95);
    let got = drain(&mut t, 5);
    assert_eq!(numbers(&got), (20..25).collect::<Vec<_>>(), "the new file under the glob, not the other");
    assert!(got.iter().all(|e| e.path.ends_with("b.log")));
}

#[test]
fn binary_garbage_is_a_raw_record_or_a_clear_error_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    garbage.extend_from_slice(b"\n{\"ok\": true}\n");
    std::fs::write(dir.path().join("bin.log"), &garbage).unwrap();
    let lines = garbage.iter().filter(|b| **b == b'\n').count();
    let mut t = Tailer::open(config(dir.path(), "*.log"), None).unwrap();
    let raw = drain(&mut t, lines);
    let total: usize = raw.iter().map(|e| e.body.len() + 1).sum();
    assert_eq!(total, garbage.len(), "every byte is in a raw record (line breaks aside): {raw:?}");
    assert!(raw.iter().all(|e| e.error.is_none()));
    let mut c = config(dir.path(), "*.log");
    c.parse = Parse::Json;
    let mut t = Tailer::open(c, None).unwrap();
    let parsed = drain(&mut t, lines);
    let (bad, good): (Vec<_>, Vec<_>) = parsed.iter().partition(|e| e.error.is_some());
    assert_eq!(good.len(), 1, "{parsed:?}");
    assert_eq!(good[0].body, b"{\"ok\": true}");
    assert!(bad.iter().all(|e| {
        let reason = e.error.as_deref().unwrap_or_default();
        reason.contains("not UTF-8") || reason.contains("not JSON")
    }));
}

#[test]
fn a_gigabyte_of_lines_arrives_whole_and_in_order() {
    const LINE: usize = 200;
    const LINES: usize = (1 << 30) / LINE + 1;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, File::create(&log).unwrap());
        let pad = "x".repeat(LINE - 12);
        for i in 0..LINES {
            writeln!(w, "{i:010} {pad}").unwrap();
        }
        w.flush().unwrap();
    }
    let mut t = Tailer::open(config(dir.path(), "*.log"), None).unwrap();
    let mut next = 0usize;
    let mut per_file = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while next < LINES {
        assert!(Instant::now() < deadline, "stalled at line {next}");
        for e in t.poll(64 << 20).unwrap() {
            assert_eq!(e.body.len(), LINE - 1);
            let n: usize = std::str::from_utf8(&e.body[..10]).unwrap().parse().unwrap();
            assert_eq!(n, next, "line {next} expected");
            assert_eq!(e.offset, (n * LINE) as u64);
            *per_file.entry(e.path.to_path_buf()).or_insert(0usize) += 1;
            next += 1;
        }
    }
    assert_eq!(per_file.values().sum::<usize>(), LINES);
    assert!(t.poll(1 << 20).unwrap().is_empty());
}
