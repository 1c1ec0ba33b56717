//! Sending lanes: a source connector's messages travel to the broker over
//! a few lanes, each a task that sends its batches one after another, the
//! lanes side by side. Messages of one message group always take the same
//! lane, so their order holds across batches and polls; others are dealt
//! round-robin. A [`Flight`] is what one poll handed to the lanes: it
//! lands once the broker acknowledged every batch of it.
//!
//! It owns sending and retrying; which records to send, and storing
//! positions once flights land, are the source task's.

use std::time::Duration;

use rill_client::{Message, Prepared, Producer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Lanes side by side (requests in flight at once).
pub(crate) const LANES: usize = 8;

/// Messages per batch (one `SendMessage` request).
pub(crate) const BATCH: usize = 1024;

/// Body bytes at which a batch closes (whatever its count): with the
/// message that reached it, a batch stays within what one packed message
/// carries, however large its messages are.
const BATCH_BYTES: usize = 768 << 10;

/// Sends of a failed batch before the lane gives up.
const ATTEMPTS: u32 = 6;

/// A batch for a lane, in wire form, and where to say how it went.
struct Batch {
    topic: String,
    prepared: Prepared,
    done: oneshot::Sender<Result<(), String>>,
}

/// The lanes of a source; dropping them stops their tasks, sent or not
/// (a source that failed sends nothing more; one that stops lands its
/// flights first).
pub(crate) struct Lanes {
    lanes: Vec<mpsc::UnboundedSender<Batch>>,
    /// Each lane's producer, which puts its batches in wire form.
    producers: Vec<Producer>,
    /// Held so that dropping the lanes aborts their tasks.
    _tasks: JoinSet<()>,
    dealer: Dealer,
}

impl Lanes {
    /// Starts [`LANES`] lanes sending through `producers` (taken in turn:
    /// each producer is a connection of its own).
    pub(crate) fn start(producers: &[Producer]) -> Self {
        let mut tasks = JoinSet::new();
        let producers: Vec<Producer> = (0..LANES).map(|i| producers[i % producers.len()].clone()).collect();
        let lanes = producers
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::unbounded_channel();
                tasks.spawn(lane(p.clone(), rx));
                tx
            })
            .collect();
        Self { lanes, producers, _tasks: tasks, dealer: Dealer::default() }
    }

    /// Hands `messages` (all of `topic`) to the lanes; the flight lands
    /// once every one of them is acknowledged.
    pub(crate) fn submit(&mut self, topic: &str, messages: Vec<Message>, flight: &mut Flight) -> Result<(), String> {
        self.begin(messages.len());
        for m in messages {
            self.push(topic, m, flight)?;
        }
        self.end(flight)
    }

    /// A poll of about `expected` messages begins.
    pub(crate) fn begin(&mut self, expected: usize) {
        self.dealer.begin(expected);
    }

    /// Adds a message of `topic`; a batch it fills goes out at once.
    pub(crate) fn push(&mut self, topic: &str, m: Message, flight: &mut Flight) -> Result<(), String> {
        match self.dealer.add(topic, m) {
            Some((lane, topic, batch)) => self.hand(lane, topic, batch, flight),
            None => Ok(()),
        }
    }

    /// The poll ended: what its batches hold goes out.
    pub(crate) fn end(&mut self, flight: &mut Flight) -> Result<(), String> {
        for (lane, topic, batch) in self.dealer.finish() {
            self.hand(lane, topic, batch, flight)?;
        }
        Ok(())
    }

    /// Puts a batch in wire form now, while its messages are fresh in the
    /// CPU's caches (a poll's later messages would push them out before
    /// the lane's turn), and hands it to its lane.
    fn hand(&self, lane: usize, topic: String, messages: Vec<Message>, flight: &mut Flight) -> Result<(), String> {
        let prepared = self.producers[lane].prepare(messages).map_err(|e| format!("sending to topic {topic}: {e}"))?;
        let (done, landed) = oneshot::channel();
        let batch = Batch { topic, prepared, done };
        self.lanes[lane].send(batch).map_err(|e| format!("sending to topic {}: the lane stopped", e.0.topic))?;
        flight.pending.push(landed);
        Ok(())
    }
}

/// What one poll handed to the lanes, and what to record once it lands.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    /// The source's position after the poll.
    pub position: String,
    /// Messages sent (dead letters not counted).
    pub sent: u64,
    /// Dead letters sent.
    pub dead: u64,
    /// The latest origin time among its records.
    pub origin: Option<i64>,
    pending: Vec<oneshot::Receiver<Result<(), String>>>,
}

impl Flight {
    /// A flight that ends at `position`.
    pub(crate) fn new(position: String) -> Self {
        Self { position, ..Self::default() }
    }

    /// Whether every batch is acknowledged (an error if one failed), without waiting.
    pub(crate) fn landed(&mut self) -> Result<bool, String> {
        let mut waiting = Vec::new();
        for mut p in std::mem::take(&mut self.pending) {
            match p.try_recv() {
                Ok(r) => r?,
                Err(oneshot::error::TryRecvError::Empty) => waiting.push(p),
                Err(oneshot::error::TryRecvError::Closed) => return Err("a sending lane stopped".into()),
            }
        }
        self.pending = waiting;
        Ok(self.pending.is_empty())
    }

    /// Waits until every batch is acknowledged, or one failed.
    pub(crate) async fn land(&mut self) -> Result<(), String> {
        for p in std::mem::take(&mut self.pending) {
            p.await.map_err(|_| "a sending lane stopped".to_owned())??;
        }
        Ok(())
    }
}

/// Sends `messages` of `topic` over fresh lanes; Ok once all are acknowledged.
pub(crate) async fn send(producer: &Producer, topic: &str, messages: Vec<Message>) -> Result<(), String> {
    let mut flight = Flight::default();
    let mut lanes = Lanes::start(std::slice::from_ref(producer));
    lanes.submit(topic, messages, &mut flight)?;
    flight.land().await
}

/// Cuts a poll's messages into batches by lane as they come: a group's
/// messages all take its lane, in their order; others go round-robin over
/// as many lanes as the poll fills.
#[derive(Debug, Default)]
struct Dealer {
    /// Lanes that messages without a group are spread over.
    spread: usize,
    /// Where the last message without a group went.
    next: usize,
    /// Batches being filled: by topic, then by lane.
    filling: Vec<(String, Vec<Filling>)>,
}

/// A lane's batch being filled, and its body bytes so far.
type Filling = (Vec<Message>, usize);

impl Dealer {
    /// A poll of about `expected` messages begins (few messages fill fewer
    /// lanes: a batch is worth a request).
    fn begin(&mut self, expected: usize) {
        self.spread = expected.div_ceil(BATCH).clamp(1, LANES);
    }

    /// Adds `m`; the batch it fills, with its lane and topic.
    fn add(&mut self, topic: &str, m: Message) -> Option<(usize, String, Vec<Message>)> {
        let lane = match m.message_group.as_deref() {
            Some(group) => lane_of(group),
            None => {
                self.next = (self.next + 1) % self.spread.max(1);
                self.next
            }
        };
        let at = match self.filling.iter().position(|(t, _)| t == topic) {
            Some(at) => at,
            None => {
                self.filling.push((topic.to_owned(), (0..LANES).map(|_| (Vec::new(), 0)).collect()));
                self.filling.len() - 1
            }
        };
        let (batch, bytes) = &mut self.filling[at].1[lane];
        if batch.capacity() == 0 {
            batch.reserve_exact(BATCH);
        }
        *bytes += m.body.len();
        batch.push(m);
        let full = batch.len() == BATCH || *bytes >= BATCH_BYTES;
        full.then(|| {
            *bytes = 0;
            (lane, topic.to_owned(), std::mem::take(batch))
        })
    }

    /// The batches begun and not full, in lane order within each topic.
    fn finish(&mut self) -> Vec<(usize, String, Vec<Message>)> {
        let mut out = Vec::new();
        for (topic, lanes) in self.filling.drain(..) {
            for (lane, (batch, _)) in lanes.into_iter().enumerate().filter(|(_, (b, _))| !b.is_empty()) {
                out.push((lane, topic.clone(), batch));
            }
        }
        out
    }
}

/// Every batch of `messages` (one topic), as [`Lanes::submit`] cuts them.
#[cfg(test)]
fn deal(dealer: &mut Dealer, messages: Vec<Message>) -> Vec<(usize, Vec<Message>)> {
    dealer.begin(messages.len());
    let mut out: Vec<(usize, Vec<Message>)> =
        messages.into_iter().filter_map(|m| dealer.add("t", m)).map(|(l, _, b)| (l, b)).collect();
    out.extend(dealer.finish().into_iter().map(|(l, _, b)| (l, b)));
    out
}

fn lane_of(group: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    group.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// One lane: its batches in order, each acknowledged before the next;
/// after a batch failed for good, the later ones fail too (unsent), so a
/// group's messages never overtake one that was lost.
async fn lane(producer: Producer, mut inbox: mpsc::UnboundedReceiver<Batch>) {
    let mut failed: Option<String> = None;
    while let Some(batch) = inbox.recv().await {
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => send_batch(&producer, &batch.topic, batch.prepared).await,
        };
        if let Err(e) = &result {
            failed.get_or_insert_with(|| e.clone());
        }
        let _ = batch.done.send(result);
    }
}

/// One batch in its wire form, retried with backoff under the same
/// message ids (the client retries quick failures itself; this rides out
/// a broker that restarts).
async fn send_batch(producer: &Producer, topic: &str, mut batch: Prepared) -> Result<(), String> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match producer.send_prepared(&mut batch).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(topic, error = %e, "send failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(format!("sending to topic {topic}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(poll: usize, n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| {
                let mut m = Message::new("t", format!("{poll}:{i}").into_bytes());
                m.message_group = Some(format!("row-{}", i % 37));
                m
            })
            .collect()
    }

    #[test]
    fn a_groups_messages_keep_their_order_in_one_lane_across_polls() {
        let mut next = Dealer::default();
        let mut lanes: Vec<Vec<String>> = vec![Vec::new(); LANES];
        let mut group_lane = std::collections::HashMap::new();
        for poll in 0..3 {
            for (lane, batch) in deal(&mut next, grouped(poll, 2_000)) {
                assert!(!batch.is_empty() && batch.len() <= BATCH, "batch of {}", batch.len());
                for m in batch {
                    let group = m.message_group.clone().unwrap();
                    assert_eq!(*group_lane.entry(group).or_insert(lane), lane, "a group stays on one lane");
                    lanes[lane].push(String::from_utf8(m.body.to_vec()).unwrap());
                }
            }
        }
        let sent: usize = lanes.iter().map(Vec::len).sum();
        assert_eq!(sent, 6_000, "nothing lost or doubled");
        for lane in &lanes {
            // Within a lane, each group's messages come in (poll, index) order.
            let mut last: std::collections::HashMap<usize, (usize, usize)> = std::collections::HashMap::new();
            for body in lane {
                let (p, i) = body.split_once(':').unwrap();
                let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
                if let Some(prev) = last.insert(i % 37, (p, i)) {
                    assert!(prev < (p, i), "{prev:?} before {:?}", (p, i));
                }
            }
        }
    }

    #[test]
    fn messages_without_a_group_fill_as_few_lanes_as_their_batches_need() {
        let mut next = Dealer::default();
        let few: Vec<Message> = (0..100).map(|i| Message::new("t", vec![i])).collect();
        let dealt = deal(&mut next, few);
        assert_eq!(dealt.len(), 1, "a hundred messages are one request");
        let many: Vec<Message> = (0..10_000u32).map(|i| Message::new("t", i.to_le_bytes().to_vec())).collect();
        let dealt = deal(&mut next, many);
        let used: std::collections::BTreeSet<usize> = dealt.iter().map(|(l, _)| *l).collect();
        assert_eq!(used.len(), LANES, "every lane works: {used:?}");
        assert_eq!(dealt.iter().map(|(_, b)| b.len()).sum::<usize>(), 10_000);
    }

    #[test]
    fn big_messages_fill_a_batch_by_bytes_before_its_count() {
        let mut next = Dealer::default();
        let big: Vec<Message> = (0..1_000).map(|_| Message::new("t", vec![b'x'; 5_000])).collect();
        let dealt = deal(&mut next, big);
        assert_eq!(dealt.iter().map(|(_, b)| b.len()).sum::<usize>(), 1_000);
        for (_, batch) in &dealt {
            let bytes: usize = batch.iter().map(|m| m.body.len()).sum();
            assert!(bytes < BATCH_BYTES + 5_000, "a batch of {bytes} body bytes");
            assert!(batch.len() < BATCH, "closed by bytes, not by count");
        }
    }

    #[test]
    fn a_group_always_takes_the_same_lane() {
        let lanes: Vec<usize> = (0..100).map(|i| lane_of(&format!("shop.orders:{i}"))).collect();
        assert!(lanes.iter().all(|l| *l < LANES));
        assert_eq!(lanes, (0..100).map(|i| lane_of(&format!("shop.orders:{i}"))).collect::<Vec<_>>());
        assert!((0..LANES).all(|l| lanes.contains(&l)), "groups spread over every lane: {lanes:?}");
    }
}
