//! `sluice consume`: Fetch from the partitions' leaders and print each
//! message through a format template (kcat's `-f` tokens) or as JSON.
//!
//! With `--group`, the CLI is a member of the group, as
//! kafka-console-consumer or `kcat -G` are: it joins as a KIP-848 consumer
//! (ConsumerGroupHeartbeat, see [`super::member`]), reads only the
//! partitions the coordinator assigns it, from the group's committed
//! offsets (or the start flags for partitions without one), and commits
//! as it goes, before giving up a partition, and at the end, then leaves
//! the group (on Ctrl-C and SIGTERM too). Several `sluice consume -g G`
//! share the partitions. Against a broker without ConsumerGroupHeartbeat
//! it reads every partition from the committed offsets and commits at the
//! end as a client outside the group, which the coordinator takes only
//! while the group has no active members.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde_json::json;

use super::admin::{Node, topic_name};
use super::member::{Member, Positions};
use super::offsets::{self, EARLIEST, LATEST, Tp};
use super::output::{CliError, Progress, check};
use super::{Admin, ClientArgs};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("start").multiple(false)))]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The topic to read.
    pub topic: String,
    /// Only these partitions (repeatable; default: all). Not with --group,
    /// whose coordinator assigns the partitions.
    #[arg(long, short = 'p')]
    pub partition: Vec<i32>,
    /// Start at each partition's earliest offset (with --group: where the
    /// group has no committed offset).
    #[arg(long, group = "start")]
    pub from_beginning: bool,
    /// Start at this offset (with --partition, or in every partition).
    #[arg(long, short = 'o', group = "start")]
    pub offset: Option<i64>,
    /// Start at the first message at or after this time (ms since the epoch).
    #[arg(long, group = "start")]
    pub timestamp: Option<i64>,
    /// Start at the first message at or after this time, ISO-8601:
    /// 2026-12-01T10:00:00, optionally .SSS and a zone (Z, +01:00);
    /// without a zone, UTC.
    #[arg(long, group = "start")]
    pub datetime: Option<String>,
    /// Consume as a member of this group: read the partitions its
    /// coordinator assigns, from the group's committed offsets (where none:
    /// the start flags, else the end), commit what was read as it goes and
    /// at the end, and leave the group on exit.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Stop after this many messages.
    #[arg(long, short = 'c')]
    pub count: Option<u64>,
    /// Stop at the end of every partition (with --group: of every partition
    /// assigned) instead of waiting for more.
    #[arg(long, short = 'e')]
    pub exit: bool,
    /// Read only committed transactional messages.
    #[arg(long)]
    pub read_committed: bool,
    /// Output template, kcat's tokens: %t topic, %p partition, %o offset,
    /// %k key, %s value, %K key length, %S value length, %T timestamp (ms),
    /// %h headers (k=v,…), %% a percent sign; \n \t \\ escapes.
    #[arg(long, short = 'f', default_value = "%s\\n")]
    pub format: String,
}

impl ConsumeArgs {
    /// --timestamp, or --datetime in ms since the epoch.
    fn start_time(&self) -> Result<Option<i64>, CliError> {
        match &self.datetime {
            Some(d) => offsets::parse_datetime(d)
                .map(Some)
                .map_err(|e| CliError::Usage(format!("--datetime {e}"))),
            None => Ok(self.timestamp),
        }
    }
}

pub async fn run(args: &ConsumeArgs) -> Result<(), CliError> {
    if args.group.is_some() && !args.partition.is_empty() {
        return Err(CliError::Usage(
            "--partition cannot go with --group: the group's coordinator assigns the partitions"
                .into(),
        ));
    }
    args.start_time()?;
    let mut admin = Admin::connect(&args.client).await?;
    let leaders: BTreeMap<i32, i32> = admin.leaders(&args.topic).await?.into_iter().collect();
    let parts: Vec<i32> = if args.partition.is_empty() {
        leaders.keys().copied().collect()
    } else {
        for p in &args.partition {
            if !leaders.contains_key(p) {
                return Err(CliError::Usage(format!(
                    "--partition {p}: topic {} has no such partition",
                    args.topic
                )));
            }
        }
        args.partition.clone()
    };
    let coordinator = match &args.group {
        Some(g) => Some(admin.coordinator(g).await?),
        None => None,
    };
    let mut member = None;
    if let (Some(g), Some(c)) = (&args.group, coordinator) {
        if admin
            .version(c, ApiKey::ConsumerGroupHeartbeat, 0..=1)
            .await
            .is_ok()
        {
            member = Some(Member::new(g, &args.topic, c));
        } else {
            eprintln!(
                "note: the broker does not serve ConsumerGroupHeartbeat (KIP-848): reading every partition from group {g}'s committed offsets, committing at the end as a client outside the group (refused while the group has active members)"
            );
        }
    }
    // A member reads what it is assigned, from the first heartbeat on.
    let mut positions = match member {
        Some(_) => Positions::new(),
        None => {
            let tps: Vec<Tp> = parts.iter().map(|p| (args.topic.clone(), *p)).collect();
            start(&mut admin, args, &tps, None).await?
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut progress = if std::io::stdout().is_terminal() {
        None
    } else {
        Some(Progress::new("consumed", args.count))
    };
    let mut seen = 0u64;
    // Ctrl-C or SIGTERM ends the read; a group still gets its commit.
    let mut stop = Stop::new();
    let mut at_end: BTreeMap<i32, bool> = BTreeMap::new();
    let result: Result<(), CliError> = async {
        'read: loop {
            if args.count.is_some_and(|c| seen >= c) {
                break;
            }
            if let Some(m) = &mut member {
                let added = m.tick(&mut admin, &mut positions).await?;
                if !added.is_empty() {
                    let committed = m.committed(&mut admin, &added).await?;
                    let tps: Vec<Tp> = added.iter().map(|p| (args.topic.clone(), *p)).collect();
                    positions.extend(start(&mut admin, args, &tps, Some(committed)).await?);
                    for p in &added {
                        at_end.remove(p);
                    }
                }
            }
            if args.exit
                && member.as_ref().is_none_or(Member::has_assignment)
                && !positions.is_empty()
                && positions
                    .keys()
                    .all(|p| at_end.get(p).copied().unwrap_or(false))
            {
                break;
            }
            if positions.is_empty() {
                // A member with no partitions: until its next heartbeat.
                let Some(m) = &member else { break };
                tokio::select! {
                    _ = tokio::time::sleep_until(m.next_beat()) => continue,
                    _ = stop.wait() => break 'read,
                }
            }
            // One fetch per leader in turn.
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for p in positions.keys() {
                let leader = *leaders.get(p).ok_or_else(|| {
                    CliError::Failed(format!("no leader known for {}-{p}", args.topic))
                })?;
                by_leader.entry(leader).or_default().push(*p);
            }
            for (leader, ps) in by_leader {
                let r = tokio::select! {
                    r = fetch(&mut admin, args, leader, &ps, &positions) => Some(r?),
                    _ = stop.wait() => None,
                };
                let Some(r) = r else {
                    // The fetch's answer may still come on that connection.
                    admin.forget(Node::Id(leader));
                    break 'read;
                };
                for topic in r.responses {
                    for pd in topic.partitions {
                        let p = pd.partition_index;
                        check(
                            || format!("cannot fetch {}-{p}", args.topic),
                            pd.error_code,
                            None,
                        )?;
                        let pos = positions
                            .get_mut(&p)
                            .expect("fetched partitions have positions");
                        let mut records = pd.records.unwrap_or_default();
                        for rec in decode(&mut records)? {
                            if rec.control || rec.offset < *pos {
                                *pos = (*pos).max(rec.offset + 1);
                                continue;
                            }
                            if args.count.is_some_and(|c| seen >= c) {
                                continue;
                            }
                            *pos = rec.offset + 1;
                            write(&mut out, args, p, &rec).map_err(|e| {
                                CliError::Failed(format!("cannot write to stdout: {e}"))
                            })?;
                            seen += 1;
                            if let Some(pr) = &mut progress {
                                pr.add(1);
                            }
                        }
                        let end = if args.read_committed {
                            pd.last_stable_offset
                        } else {
                            pd.high_watermark
                        };
                        at_end.insert(p, *pos >= end);
                    }
                }
                out.flush()
                    .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))?;
            }
        }
        Ok(())
    }
    .await;
    out.flush()
        .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))?;
    if let Some(pr) = &mut progress {
        pr.finish();
    }
    if let Some(m) = &mut member {
        // Even after an error: what was printed is committed, and the
        // group need not wait out a session timeout.
        m.close(&mut admin, &positions).await;
        return result;
    }
    result?;
    if let (Some(g), Some(c)) = (&args.group, coordinator) {
        let done: BTreeMap<Tp, i64> = positions
            .iter()
            .map(|(p, o)| ((args.topic.clone(), *p), *o))
            .collect();
        offsets::commit(&mut admin, c, g, &done).await?;
    }
    Ok(())
}

/// Ctrl-C and SIGTERM, caught from the start so that one arriving
/// between two fetches is not missed.
struct Stop {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Stop {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn wait(&mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => {}
            _ = one(&mut self.term) => {}
        }
    }
}

/// Where each partition starts: with a group, its committed offset
/// (`committed`, or fetched when None); otherwise, or where the group has
/// none, where the start flags say (the end by default).
async fn start(
    admin: &mut Admin,
    args: &ConsumeArgs,
    tps: &[Tp],
    committed: Option<Positions>,
) -> Result<Positions, CliError> {
    let time = args.start_time()?;
    let spec = if args.from_beginning {
        EARLIEST
    } else if let Some(ts) = time {
        ts
    } else {
        LATEST
    };
    let listed = offsets::list_offsets(admin, tps, spec).await?;
    let mut pos: Positions = BTreeMap::new();
    for ((_, p), o) in &listed {
        pos.insert(*p, *o);
    }
    if time.is_some() {
        // No message at or after the time: the end.
        let ends = offsets::list_offsets(admin, tps, LATEST).await?;
        for ((_, p), o) in ends {
            if pos[&p] < 0 {
                pos.insert(p, o);
            }
        }
    }
    if let Some(o) = args.offset {
        for p in pos.values_mut() {
            *p = o;
        }
    }
    let committed = match (committed, &args.group) {
        (Some(c), _) => c,
        (None, Some(g)) => {
            let c = admin.coordinator(g).await?;
            offsets::committed(admin, c, g)
                .await?
                .into_iter()
                .filter(|((t, _), _)| *t == args.topic)
                .map(|((_, p), o)| (p, o))
                .collect()
        }
        (None, None) => Positions::new(),
    };
    for (p, o) in committed {
        if let Some(slot) = pos.get_mut(&p) {
            *slot = o;
        }
    }
    Ok(pos)
}

async fn fetch(
    admin: &mut Admin,
    args: &ConsumeArgs,
    leader: i32,
    parts: &[i32],
    positions: &Positions,
) -> Result<FetchResponse, CliError> {
    let (r, _): (FetchResponse, _) = admin
        .call(Node::Id(leader), ApiKey::Fetch, 4..=12, |_| {
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(16 << 20)
                .with_isolation_level(i8::from(args.read_committed))
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(topic_name(&args.topic))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|p| {
                                    FetchPartition::default()
                                        .with_partition(*p)
                                        .with_current_leader_epoch(-1)
                                        .with_fetch_offset(positions[p])
                                        .with_last_fetched_epoch(-1)
                                        .with_log_start_offset(-1)
                                        .with_partition_max_bytes(1 << 20)
                                })
                                .collect(),
                        ),
                ])
        })
        .await?;
    check(
        || format!("cannot fetch from {}", args.topic),
        r.error_code,
        None,
    )?;
    Ok(r)
}

/// The records of the whole batches in `buf` (a fetch may end in part of one).
fn decode(buf: &mut Bytes) -> Result<Vec<Record>, CliError> {
    let mut out = Vec::new();
    while buf.len() >= 12 {
        let len = i32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
        let total = 12 + len.max(0) as usize;
        if len <= 0 || buf.len() < total {
            break;
        }
        let mut one = buf.split_to(total);
        let sets = RecordBatchDecoder::decode_all(&mut one)
            .map_err(|e| CliError::Failed(format!("cannot decode a record batch: {e}")))?;
        for set in sets {
            out.extend(set.records);
        }
    }
    buf.advance(buf.len());
    Ok(out)
}

fn write(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: i32,
    r: &Record,
) -> std::io::Result<()> {
    if args.client.json {
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        let v = json!({
            "topic": args.topic,
            "partition": partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": text(&r.key),
            "value": text(&r.value),
            "headers": r.headers.iter().map(|(k, v)| (k.to_string(), json!(text(v)))).collect::<serde_json::Map<_, _>>(),
        });
        return writeln!(out, "{v}");
    }
    let mut chars = args.format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(t)) => {
                chars.next();
                match t {
                    't' => out.write_all(args.topic.as_bytes())?,
                    'p' => write!(out, "{partition}")?,
                    'o' => write!(out, "{}", r.offset)?,
                    'k' => out.write_all(r.key.as_deref().unwrap_or_default())?,
                    's' => out.write_all(r.value.as_deref().unwrap_or_default())?,
                    'K' => write!(out, "{}", r.key.as_ref().map_or(-1, |k| k.len() as i64))?,
                    'S' => write!(out, "{}", r.value.as_ref().map_or(-1, |v| v.len() as i64))?,
                    'T' => write!(out, "{}", r.timestamp)?,
                    'h' => {
                        for (i, (k, v)) in r.headers.iter().enumerate() {
                            if i > 0 {
                                out.write_all(b",")?;
                            }
                            out.write_all(k.as_bytes())?;
                            out.write_all(b"=")?;
                            out.write_all(v.as_deref().unwrap_or_default())?;
                        }
                    }
                    '%' => out.write_all(b"%")?,
                    other => write!(out, "%{other}")?,
                }
            }
            ('\\', Some(e)) => {
                chars.next();
                match e {
                    'n' => out.write_all(b"\n")?,
                    't' => out.write_all(b"\t")?,
                    '\\' => out.write_all(b"\\")?,
                    other => write!(out, "\\{other}")?,
                }
            }
            (c, _) => write!(out, "{c}")?,
        }
    }
    Ok(())
}
