//! Which clients belong to which group, learned from heartbeats, telemetry
//! settings and consumer calls; a client silent for longer than the
//! timeout is no longer a member.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::Serialize;

/// One client as the broker last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The client's id (`x-mq-client-id`).
    pub client_id: String,
    /// Its group.
    pub group: String,
    /// Producer, push consumer, simple consumer … as the protocol names it.
    pub client_type: String,
    /// Last time it was heard from (ms since the epoch).
    pub last_seen: i64,
    /// What it subscribed to, as `topic` → `TAG expr` / `SQL92 expr`
    /// (from its Telemetry settings).
    pub subscriptions: std::collections::BTreeMap<String, String>,
}

/// The client registry.
#[derive(Debug, Default)]
pub struct Members {
    clients: Mutex<HashMap<(String, String), Member>>,
}

impl Members {
    /// Records that `client_id` of `group` was heard from at `now`.
    pub fn seen(&self, group: &str, client_id: &str, client_type: &str, now: i64) {
        if group.is_empty() || client_id.is_empty() {
            return;
        }
        let mut clients = self.clients.lock();
        let m = clients.entry((group.to_owned(), client_id.to_owned())).or_insert_with(|| Member {
            client_id: client_id.to_owned(),
            group: group.to_owned(),
            client_type: client_type.to_owned(),
            last_seen: now,
            subscriptions: Default::default(),
        });
        m.last_seen = m.last_seen.max(now);
        if !client_type.is_empty() {
            m.client_type = client_type.to_owned();
        }
    }

    /// Records a member's subscriptions (topic → filter, as shown).
    pub fn subscribed(&self, group: &str, client_id: &str, subscriptions: std::collections::BTreeMap<String, String>) {
        if let Some(m) = self.clients.lock().get_mut(&(group.to_owned(), client_id.to_owned())) {
            m.subscriptions = subscriptions;
        }
    }

    /// Topics the members of `group` subscribe to with different filters
    /// (RocketMQ requires one subscription per group).
    pub fn inconsistent(members: &[Member]) -> Vec<String> {
        let mut by_topic: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
        for m in members {
            for (t, f) in &m.subscriptions {
                by_topic.entry(t).or_default().insert(f);
            }
        }
        by_topic.into_iter().filter(|(_, f)| f.len() > 1).map(|(t, _)| t.to_owned()).collect()
    }

    /// Drops clients silent for longer than `timeout_ms`; returns them as (group, client id).
    pub fn expire(&self, now: i64, timeout_ms: i64) -> Vec<(String, String)> {
        let mut clients = self.clients.lock();
        let gone: Vec<(String, String)> =
            clients.iter().filter(|(_, m)| now - m.last_seen > timeout_ms).map(|(k, _)| k.clone()).collect();
        for k in &gone {
            clients.remove(k);
        }
        gone
    }

    /// Forgets a client that said goodbye.
    pub fn left(&self, group: &str, client_id: &str) {
        self.clients.lock().remove(&(group.to_owned(), client_id.to_owned()));
    }

    /// Members of `group` heard from within `timeout_ms` of `now`, by id.
    pub fn of_group(&self, group: &str, now: i64, timeout_ms: i64) -> Vec<Member> {
        let clients = self.clients.lock();
        let mut out: Vec<Member> =
            clients.values().filter(|m| m.group == group && now - m.last_seen <= timeout_ms).cloned().collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_members_expire_and_goodbyes_count() {
        let m = Members::default();
        m.seen("g", "c1", "PUSH_CONSUMER", 1_000);
        m.seen("g", "c2", "SIMPLE_CONSUMER", 5_000);
        m.seen("other", "c3", "PRODUCER", 5_000);
        m.seen("", "c4", "PRODUCER", 5_000);
        let ids = |v: Vec<Member>| v.into_iter().map(|m| m.client_id).collect::<Vec<_>>();
        assert_eq!(ids(m.of_group("g", 6_000, 120_000)), ["c1", "c2"]);
        assert_eq!(ids(m.of_group("g", 122_000, 120_000)), ["c2"], "c1 was silent for 121 s");
        m.left("g", "c2");
        assert!(m.of_group("g", 122_000, 120_000).is_empty());
        m.seen("g", "c5", "SIMPLE_CONSUMER", 5_000);
        m.seen("g", "c6", "SIMPLE_CONSUMER", 5_000);
        m.subscribed("g", "c5", [("t".to_owned(), "TAG a".to_owned())].into());
        m.subscribed("g", "c6", [("t".to_owned(), "TAG b".to_owned())].into());
        assert_eq!(Members::inconsistent(&m.of_group("g", 6_000, 120_000)), ["t"]);
    }
}
