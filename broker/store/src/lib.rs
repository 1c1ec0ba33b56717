//! Rill's storage engine: the CommitLog, ConsumeQueues, the key index,
//! flushing with group commit, crash recovery, retention and the metadata
//! store.
//!
//! What it is: the on-disk layer of one broker, modelled on RocketMQ's
//! store. Every message of every topic is appended to one segmented
//! CommitLog; a dispatcher thread follows the log and writes a 20-byte entry
//! per message into the ConsumeQueue of its (topic, queue) and the message's
//! keys into a hash index. Consumers read queues by logical offset; the
//! index answers "which messages carry key K".
//!
//! What it is not: it has no network code, no gRPC, and no notion of
//! consumer groups beyond storing their offsets ([`MetaStore`]). The broker
//! crate builds those on top.
//!
//! Layout of a data directory:
//!
//! ```text
//! <data_dir>/commitlog/<20-digit start offset>        segment files
//! <data_dir>/consumequeue/<topic>/<queue>/<offset>     queue files
//! <data_dir>/index/<20-digit first offset>             key index files
//! <data_dir>/checkpoint                                recovery progress
//! <data_dir>/abort                                     present while open
//! <data_dir>/meta/{topics,groups,offsets}.json         metadata
//! <data_dir>/timer/<level>/<first index>               timer wheel (see [`timer`])
//! ```
//!
//! Invariants: an append resolves only after its durability point (page
//! cache for async flush, `fdatasync` for sync flush); readers never see a
//! partially written record; after a crash every acknowledged record is
//! recovered and a torn tail is cut off, while damage in the middle of the
//! log is reported with its file and offset instead of being skipped. The
//! record format is documented in [`record`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rill_store::Result<()> {
//! use rill_common::TopicName;
//! use rill_store::{MessageToStore, Properties, Store, StoreConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut config = StoreConfig::new(dir.path());
//! config.segment_size = 8 << 20;
//! let store = Store::open(config)?;
//! let msg = MessageToStore::new(TopicName::new("orders").unwrap(), 0, "hello")
//!     .with_properties(Properties::new().with("KEYS", "order-1"));
//! let appended = store.append(msg).await?;
//! store.wait_dispatched(appended.end()).await?;
//! let read = store.read_queue("orders", 0, 0, 10)?;
//! assert_eq!(&read.messages[0].body[..], b"hello");
//! store.close()?;
//! # Ok(()) }
//! ```

mod checkpoint;
mod commitlog;
mod config;
mod consume_queue;
mod dispatch;
mod error;
mod index;
mod mapped;
mod meta;
pub mod record;
mod retention;
mod services;
mod store;
pub mod timer;
mod unpack;
mod window;

pub use checkpoint::Checkpoint;
pub use commitlog::{Appended, ScanReport};
pub use config::{FlushConfig, IndexConfig, RetentionConfig, StoreConfig};
pub use consume_queue::{CqEntry, ENTRY_SIZE as CQ_ENTRY_SIZE};
pub use error::{Error, Result};
pub use meta::{GroupConfig, MetaStore, TopicConfig, perm};
pub use record::{MessageToStore, Properties, StoredMessage};
pub use retention::{DeleteReason, DiskUsage, RetentionReport, StatvfsDisk};
pub use store::{QueueRead, QueueState, ReadStatus, RecoveryInfo, Store, StoreState};
