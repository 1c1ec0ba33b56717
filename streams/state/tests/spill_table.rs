//! The ordered spill table against a `BTreeMap`: after any writes and
//! deletes, point reads and range scans (with any bounds and limits) see
//! what the map holds, and the file goes with the table.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rill_state::{MIN_BUDGET, SpillTable, StateConfig};

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(u8, Vec<u8>)>, Vec<u8>),
    Get(u8),
    Scan(u8, Option<u8>, usize),
    Clear,
}

fn key(k: u8) -> Vec<u8> {
    // Keys of different lengths, so prefixes and ordering both matter.
    let mut out = vec![k / 16];
    out.extend(std::iter::repeat_n(k % 16, usize::from(k % 3)));
    out
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..20),
            proptest::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(|(puts, deletes)| Op::Write(puts, deletes)),
        3 => any::<u8>().prop_map(Op::Get),
        3 => (any::<u8>(), proptest::option::of(any::<u8>()), 1usize..30).prop_map(|(a, b, n)| Op::Scan(a, b, n)),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn reads_and_scans_agree_with_an_ordered_map(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut table = SpillTable::new(StateConfig::new(MIN_BUDGET, dir.path()).unwrap());
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write(puts, deletes) => {
                    let puts: Vec<(Vec<u8>, Vec<u8>)> = puts.into_iter().map(|(k, v)| (key(k), v)).collect();
                    let deletes: Vec<Vec<u8>> = deletes.into_iter().map(key).collect();
                    table.write(&puts, &deletes).unwrap();
                    // Deletes first, then puts: a key in both ends up stored.
                    for k in &deletes {
                        model.remove(k);
                    }
                    for (k, v) in puts {
                        model.insert(k, v);
                    }
                }
                Op::Get(k) => prop_assert_eq!(table.get(&key(k)).unwrap(), model.get(&key(k)).cloned()),
                Op::Scan(a, b, limit) => {
                    let (from, to) = (key(a), b.map(key));
                    let got = table.scan(&from, to.as_deref(), limit).unwrap();
                    let want: Vec<(Vec<u8>, Vec<u8>)> = model
                        .iter()
                        .filter(|(k, _)| **k >= from && to.as_ref().is_none_or(|t| *k < t))
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Clear => {
                    table.clear();
                    model.clear();
                }
            }
            prop_assert_eq!(table.len(), model.len() as u64);
            prop_assert_eq!(table.is_empty(), model.is_empty());
        }
        drop(table);
        prop_assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the file goes with the table");
    }
}

#[test]
fn nothing_is_written_until_something_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = SpillTable::new(StateConfig::new(MIN_BUDGET, dir.path().join("spill")).unwrap());
    table.write(&[], &[b"gone".to_vec()]).unwrap();
    assert_eq!(table.get(b"gone").unwrap(), None);
    assert_eq!(table.scan(b"", None, 10).unwrap(), Vec::new());
    assert!(!dir.path().join("spill").exists(), "no file for an empty table");
    table.write(&[(b"k".to_vec(), b"v".to_vec())], &[]).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("spill")).unwrap().count(), 1);
    assert_eq!(table.writes(), 1);
}

#[test]
fn an_unusable_spill_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let mut table = SpillTable::new(StateConfig::new(MIN_BUDGET, &file).unwrap());
    let err = table.write(&[(b"k".to_vec(), b"v".to_vec())], &[]).unwrap_err().to_string();
    assert!(err.contains("a-file"), "{err}");
}
