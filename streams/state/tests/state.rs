//! The state store against a plain map: whatever spills, reads, removals and
//! expiry do, every read sees what the map says.

use std::collections::HashMap;

use proptest::prelude::*;
use rill_state::{KeyedState, MIN_BUDGET, StateConfig};

#[derive(Debug, Clone)]
enum Op {
    Put(u16, Vec<u8>, i64),
    Get(u16),
    Remove(u16),
    Tick(i64),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..300, proptest::collection::vec(any::<u8>(), 0..48), 1i64..200).prop_map(|(k, v, t)| Op::Put(k, v, t)),
        3 => (0u16..300).prop_map(Op::Get),
        1 => (0u16..300).prop_map(Op::Remove),
        1 => (0i64..30).prop_map(Op::Tick),
        1 => Just(Op::Purge),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn reads_agree_with_a_map_through_spills(ops in proptest::collection::vec(op(), 1..1500)) {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::new(StateConfig::new(MIN_BUDGET, dir.path()).unwrap());
        let mut model: HashMap<Vec<u8>, (Vec<u8>, i64)> = HashMap::new();
        let mut now = 0i64;
        for op in ops {
            match op {
                Op::Put(k, v, ttl) => {
                    state.put(&key(k), &v, now + ttl).unwrap();
                    model.insert(key(k), (v, now + ttl));
                }
                Op::Get(k) => {
                    let want = model.get(&key(k)).filter(|(_, e)| *e > now).map(|(v, _)| v.clone());
                    prop_assert_eq!(state.get(&key(k), now).unwrap().map(<[u8]>::to_vec), want);
                }
                Op::Remove(k) => {
                    state.remove(&key(k)).unwrap();
                    model.remove(&key(k));
                }
                Op::Tick(t) => now += t,
                Op::Purge => {
                    state.purge(now).unwrap();
                }
            }
            prop_assert!(state.memory_bytes() <= MIN_BUDGET, "{} bytes in memory", state.memory_bytes());
        }
        let mut seen = HashMap::new();
        state.for_each(now, |k, v, e| { assert!(seen.insert(k.to_vec(), (v.to_vec(), e)).is_none(), "key twice"); }).unwrap();
        model.retain(|_, (_, e)| *e > now);
        prop_assert_eq!(seen, model);
    }
}

#[test]
fn many_keys_stay_within_the_budget_and_come_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 1 << 20;
    let mut state = KeyedState::new(StateConfig::new(budget, dir.path()).unwrap());
    let n = 100_000u64;
    for i in 0..n {
        state.put(&i.to_be_bytes(), &(i * 3).to_le_bytes(), i64::MAX).unwrap();
        assert!(state.memory_bytes() <= budget);
    }
    assert!(state.spills() > 0 && state.in_memory() < n as usize / 4, "{state:?}");
    assert!(state.on_disk() > n / 2);
    // A spill directory of its own under the one configured.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    for i in (0..n).step_by(7) {
        assert_eq!(state.get(&i.to_be_bytes(), 0).unwrap(), Some(&(i * 3).to_le_bytes()[..]), "key {i}");
    }
    let mut count = 0u64;
    state.for_each(0, |_, _, _| count += 1).unwrap();
    assert_eq!(count, n);
    drop(state);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spill file goes with the store");
}

#[test]
fn purge_reclaims_expired_entries_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = KeyedState::new(StateConfig::new(64 << 10, dir.path()).unwrap());
    for i in 0..20_000i64 {
        state.put(&i.to_be_bytes(), b"v", i).unwrap();
    }
    assert!(state.spills() > 0);
    assert_eq!(state.purge(9_999).unwrap(), 10_000);
    assert_eq!(state.purge(9_999).unwrap(), 0);
    let mut live = 0;
    state.for_each(9_999, |_, _, _| live += 1).unwrap();
    assert_eq!(live, 10_000);
    assert_eq!(state.on_disk() + state.in_memory() as u64, 10_000);
}

#[test]
fn a_budget_too_small_is_refused() {
    let e = StateConfig::new(100, "/tmp").unwrap_err().to_string();
    assert!(e.contains("100 bytes"), "{e}");
}
