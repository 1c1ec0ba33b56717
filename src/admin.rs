//! `rill admin …`: topics, groups, offsets, messages and the cluster of a
//! running broker, as tables for people or JSON (`--json`) for scripts.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rill_bench::report::table;
use rill_proto::admin::rill_admin_client::RillAdminClient;
use rill_proto::admin::*;
use serde_json::{Value, json};

/// Options shared by every admin command.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The broker's gRPC address.
    #[arg(long, global = true, default_value = "127.0.0.1:8081", value_name = "HOST:PORT")]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create, change, delete, list and describe topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// List consumer groups and show members, offsets and lag.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Move a group's offsets.
    #[command(subcommand)]
    Offset(OffsetCommand),
    /// Look messages up by id or by key.
    #[command(subcommand)]
    Message(MessageCommand),
    /// Show the brokers.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List a group's dead letters or put them back on their topics.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The life of a traced message: sent, stored, delivered, acknowledged, retried, dead-lettered.
    Trace {
        /// Message id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// The messages in a group's dead-letter queue (`%DLQ%<group>`).
    List {
        /// Consumer group.
        #[arg(long)]
        group: String,
        /// First queue offset to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most messages to show.
        #[arg(long, default_value_t = 64)]
        max: u32,
    },
    /// Send dead letters again to the topics they came from.
    Resend {
        /// Consumer group.
        #[arg(long)]
        group: String,
        /// Only this message id (repeat for several); every dead letter when omitted.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create(TopicSpecArgs),
    /// Change a topic's queue count, type or permission.
    Update(TopicSpecArgs),
    /// Delete a topic (its stored messages age out with retention).
    Delete {
        /// Topic name.
        name: String,
    },
    /// List topics.
    List,
    /// Show a topic and its queues.
    Describe {
        /// Topic name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct TopicSpecArgs {
    /// Topic name.
    name: String,
    /// Number of queues (create: default 8; update: 0 keeps the current count).
    #[arg(long)]
    queues: Option<u32>,
    /// Message type: NORMAL, FIFO, DELAY or TRANSACTION.
    #[arg(long = "type", value_name = "TYPE")]
    message_type: Option<String>,
    /// Refuse writes (consumers may still read).
    #[arg(long)]
    read_only: bool,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a consumer group, or change one.
    Put {
        /// Group name.
        name: String,
        /// Every member gets every message (no retries).
        #[arg(long)]
        broadcast: bool,
        /// Deliver in order per message group, one message in flight per group.
        #[arg(long)]
        fifo: bool,
        /// Redeliveries before the dead-letter queue [default: 16].
        #[arg(long)]
        max_retries: Option<u32>,
    },
    /// List groups with their total lag.
    List,
    /// Show a group's members and per-queue offsets and lag.
    Describe {
        /// Group name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum OffsetCommand {
    /// Reset a group's offsets on a topic.
    Reset {
        /// Consumer group.
        #[arg(long)]
        group: String,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// `earliest`, `latest`, or a time (RFC 3339 or milliseconds since the epoch).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum MessageCommand {
    /// A message by its id.
    Get {
        /// Message id.
        #[arg(long)]
        id: String,
    },
    /// Messages of a topic carrying a key.
    Query {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Business key.
        #[arg(long)]
        key: String,
        /// Most messages to show.
        #[arg(long, default_value_t = 32)]
        max: u32,
        /// Only messages stored at or after this time (RFC 3339 or ms since the epoch).
        #[arg(long)]
        begin: Option<String>,
        /// Only messages stored before this time (RFC 3339 or ms since the epoch).
        #[arg(long)]
        end: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// List the brokers.
    List,
}

/// Runs an admin command.
pub fn run(args: AdminArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start runtime")?;
    runtime.block_on(async {
        let url = format!("http://{}", args.server);
        let mut client = RillAdminClient::connect(url.clone())
            .await
            .with_context(|| format!("cannot reach the broker at {} (is it running?)", args.server))?;
        let out = execute(&mut client, args.command).await?;
        if args.json {
            println!("{}", out.json);
        } else {
            print!("{}", out.text);
        }
        Ok(())
    })
}

struct Output {
    json: Value,
    text: String,
}

fn rpc_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", if e.message().is_empty() { format!("{:?}", e.code()) } else { e.message().to_owned() })
}

async fn execute(c: &mut RillAdminClient<tonic::transport::Channel>, command: AdminCommand) -> Result<Output> {
    Ok(match command {
        AdminCommand::Topic(TopicCommand::Create(a)) => {
            let spec = spec(a, 8);
            topic_output(c.create_topic(spec).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Topic(TopicCommand::Update(a)) => {
            topic_output(c.update_topic(spec(a, 0)).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Topic(TopicCommand::Delete { name }) => {
            let done = c.delete_topic(Name { name: name.clone() }).await.map_err(rpc_error)?.into_inner();
            let text = if done.existed { format!("deleted topic {name}\n") } else { format!("no topic {name}\n") };
            Output { json: json!({ "topic": name, "existed": done.existed }), text }
        }
        AdminCommand::Topic(TopicCommand::List) => {
            let topics = c.list_topics(Empty {}).await.map_err(rpc_error)?.into_inner().topics;
            let rows = topics
                .iter()
                .map(|t| {
                    let msgs: u64 = t.queues.iter().map(|q| q.max_offset - q.min_offset).sum();
                    vec![
                        t.name.clone(),
                        t.write_queues.to_string(),
                        t.message_type.clone(),
                        perm(t.perm),
                        msgs.to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            Output {
                json: Value::Array(topics.iter().map(topic_json).collect()),
                text: table(&["topic", "queues", "type", "perm", "messages"], &rows),
            }
        }
        AdminCommand::Topic(TopicCommand::Describe { name }) => {
            topic_output(c.describe_topic(Name { name }).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Group(GroupCommand::List) => {
            let groups = c.list_groups(Empty {}).await.map_err(rpc_error)?.into_inner().groups;
            let rows = groups
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        if g.broadcast { "broadcast" } else { "clustering" }.into(),
                        g.members.len().to_string(),
                        g.total_lag.to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            Output {
                json: Value::Array(groups.iter().map(group_json).collect()),
                text: table(&["group", "model", "members", "lag"], &rows),
            }
        }
        AdminCommand::Group(GroupCommand::Put { name, broadcast, fifo, max_retries }) => {
            let spec = GroupSpec { name, broadcast, fifo, max_retries };
            group_output(c.put_group(spec).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Group(GroupCommand::Describe { name }) => {
            group_output(c.describe_group(Name { name }).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Offset(OffsetCommand::Reset { group, topic, to }) => {
            let to = match to.as_str() {
                "earliest" => reset_offset_request::To::Earliest(true),
                "latest" => reset_offset_request::To::Latest(true),
                t => reset_offset_request::To::TimestampMs(parse_time(t)?),
            };
            let req = ResetOffsetRequest { group, topic, to: Some(to) };
            group_output(c.reset_offset(req).await.map_err(rpc_error)?.into_inner())
        }
        AdminCommand::Message(MessageCommand::Get { id }) => {
            messages_output(c.get_message(MessageId { id }).await.map_err(rpc_error)?.into_inner().messages)
        }
        AdminCommand::Message(MessageCommand::Query { topic, key, max, begin, end }) => {
            let begin_ms = begin.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let end_ms = end.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let q = MessageQuery { topic, key, begin_ms, end_ms, max };
            messages_output(c.query_messages(q).await.map_err(rpc_error)?.into_inner().messages)
        }
        AdminCommand::Trace { id } => {
            let entries = c.trace_message(MessageId { id }).await.map_err(rpc_error)?.into_inner().entries;
            let rows = entries
                .iter()
                .map(|e| {
                    let when = chrono::DateTime::from_timestamp_millis(e.time_ms)
                        .map_or_else(|| e.time_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
                    let who = [e.group.as_str(), e.client.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" / ");
                    let attempt = if e.attempt > 0 { e.attempt.to_string() } else { String::new() };
                    vec![when, e.event.clone(), e.broker.clone(), e.topic.clone(), who, attempt, e.detail.clone()]
                })
                .collect::<Vec<_>>();
            let json = entries
                .iter()
                .map(|e| {
                    json!({"event": e.event, "time_ms": e.time_ms, "topic": e.topic, "broker": e.broker,
                        "group": e.group, "client": e.client, "attempt": e.attempt, "detail": e.detail})
                })
                .collect();
            Output {
                json: Value::Array(json),
                text: table(&["time (UTC)", "event", "broker", "topic", "group / client", "attempt", "detail"], &rows),
            }
        }
        AdminCommand::Dlq(DlqCommand::List { group, from, max }) => {
            let q = DeadLetterQuery { group, from_offset: from, max };
            messages_output(c.list_dead_letters(q).await.map_err(rpc_error)?.into_inner().messages)
        }
        AdminCommand::Dlq(DlqCommand::Resend { group, ids }) => {
            let r = DeadLetterResend { group: group.clone(), message_ids: ids };
            let count = c.resend_dead_letters(r).await.map_err(rpc_error)?.into_inner().count;
            Output {
                json: json!({ "group": group, "resent": count }),
                text: format!("resent {count} dead letter(s) of {group}\n"),
            }
        }
        AdminCommand::Cluster(ClusterCommand::List) => {
            let brokers = c.list_cluster(Empty {}).await.map_err(rpc_error)?.into_inner().brokers;
            let rows = brokers
                .iter()
                .map(|b| {
                    let log = if b.data_dir.is_empty() {
                        format!("(seen {} s ago)", b.last_seen_ms_ago / 1000)
                    } else {
                        format!("{}..{}", b.commitlog_min, b.commitlog_max)
                    };
                    let (timers, txns) = if b.data_dir.is_empty() {
                        ("-".to_owned(), "-".to_owned())
                    } else {
                        (b.timers_pending.to_string(), b.open_transactions.to_string())
                    };
                    vec![b.cluster.clone(), b.name.clone(), b.address.clone(), b.topics.to_string(), log, timers, txns]
                })
                .collect::<Vec<_>>();
            let json = brokers
                .iter()
                .map(|b| {
                    json!({"cluster": b.cluster, "name": b.name, "address": b.address, "data_dir": b.data_dir,
                    "topics": b.topics, "commitlog_min": b.commitlog_min, "commitlog_max": b.commitlog_max,
                    "last_seen_ms_ago": b.last_seen_ms_ago, "timers_pending": b.timers_pending,
                    "open_transactions": b.open_transactions})
                })
                .collect();
            Output {
                json: Value::Array(json),
                text: table(&["cluster", "broker", "address", "topics", "commit log", "timers", "open txns"], &rows),
            }
        }
    })
}

fn spec(a: TopicSpecArgs, default_queues: u32) -> TopicSpec {
    TopicSpec {
        name: a.name,
        queues: a.queues.unwrap_or(default_queues),
        message_type: a.message_type.unwrap_or_default(),
        read_only: a.read_only,
    }
}

fn perm(p: u32) -> String {
    match (p & rill_store::perm::READ != 0, p & rill_store::perm::WRITE != 0) {
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        (false, false) => "-",
    }
    .into()
}

/// A time given as milliseconds since the epoch or RFC 3339.
fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.timestamp_millis()),
        Err(e) => bail!(
            "{s:?} is not a time: give milliseconds since the epoch or RFC 3339 (`offset reset --to` also takes earliest or latest): {e}"
        ),
    }
}

fn topic_json(t: &TopicInfo) -> Value {
    json!({
        "name": t.name, "read_queues": t.read_queues, "write_queues": t.write_queues, "perm": perm(t.perm),
        "message_type": t.message_type,
        "queues": t.queues.iter().map(|q| json!({"queue_id": q.queue_id, "min_offset": q.min_offset, "max_offset": q.max_offset})).collect::<Vec<_>>(),
    })
}

fn topic_output(t: TopicInfo) -> Output {
    let mut text = format!(
        "topic {}  type {}  perm {}  queues {}/{} (read/write)\n",
        t.name,
        t.message_type,
        perm(t.perm),
        t.read_queues,
        t.write_queues
    );
    let rows = t
        .queues
        .iter()
        .map(|q| vec![q.queue_id.to_string(), q.min_offset.to_string(), q.max_offset.to_string()])
        .collect::<Vec<_>>();
    text.push_str(&table(&["queue", "min offset", "max offset"], &rows));
    Output { json: topic_json(&t), text }
}

fn group_json(g: &GroupInfo) -> Value {
    json!({
        "name": g.name, "broadcast": g.broadcast, "fifo": g.fifo, "max_retries": g.max_retries, "total_lag": g.total_lag,
        "members": g.members.iter().map(|m| json!({"client_id": m.client_id, "client_type": m.client_type, "last_seen_ms": m.last_seen_ms, "subscriptions": m.subscriptions})).collect::<Vec<_>>(),
        "inconsistent_topics": g.inconsistent_topics,
        "queues": g.queues.iter().map(|q| json!({"topic": q.topic, "queue_id": q.queue_id, "offset": q.offset, "max_offset": q.max_offset, "lag": q.lag})).collect::<Vec<_>>(),
    })
}

fn group_output(g: GroupInfo) -> Output {
    let mut text = format!(
        "group {}  {}  members {}  lag {}\n",
        g.name,
        if g.broadcast { "broadcast" } else { "clustering" },
        g.members.len(),
        g.total_lag
    );
    if !g.members.is_empty() {
        let rows = g
            .members
            .iter()
            .map(|m| {
                let mut subs: Vec<String> = m.subscriptions.iter().map(|(t, f)| format!("{t}: {f}")).collect();
                subs.sort();
                vec![m.client_id.clone(), m.client_type.clone(), subs.join("; ")]
            })
            .collect::<Vec<_>>();
        text.push_str(&table(&["member", "type", "subscriptions"], &rows));
    }
    for t in &g.inconsistent_topics {
        text.push_str(&format!(
            "warning: members subscribe to {t} with different filters; each gets only part of its messages\n"
        ));
    }
    let rows = g
        .queues
        .iter()
        .map(|q| {
            vec![
                q.topic.clone(),
                q.queue_id.to_string(),
                q.offset.to_string(),
                q.max_offset.to_string(),
                q.lag.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    text.push_str(&table(&["topic", "queue", "offset", "max offset", "lag"], &rows));
    Output { json: group_json(&g), text }
}

fn messages_output(messages: Vec<MessageInfo>) -> Output {
    let json = messages
        .iter()
        .map(|m| {
            json!({
                "topic": m.topic, "queue_id": m.queue_id, "queue_offset": m.queue_offset, "physical_offset": m.physical_offset,
                "message_id": m.message_id, "tag": m.tag, "keys": m.keys, "properties": m.properties,
                "born_timestamp_ms": m.born_timestamp_ms, "store_timestamp_ms": m.store_timestamp_ms,
                "reconsume_times": m.reconsume_times, "body": String::from_utf8_lossy(&m.body), "body_size": m.body.len(),
            })
        })
        .collect();
    let rows = messages
        .iter()
        .map(|m| {
            vec![
                m.message_id.clone(),
                m.topic.clone(),
                format!("{}@{}", m.queue_id, m.queue_offset),
                m.tag.clone(),
                m.keys.join(" "),
                m.body.len().to_string(),
            ]
        })
        .collect::<Vec<_>>();
    Output {
        json: Value::Array(json),
        text: table(&["message id", "topic", "queue@offset", "tag", "keys", "bytes"], &rows),
    }
}
