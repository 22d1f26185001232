//! `sluice produce`: lines from stdin, one message each, to a topic's
//! partition leaders. A keyed message goes where Kafka's default
//! partitioner puts it (murmur2 of the key), so keys land where Java,
//! librdkafka (`consistent_random`, murmur2 flavour) and this CLI agree;
//! messages without a key go round the partitions.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::admin::{Node, topic_name};
use super::output::{CliError, Progress, check, print};
use super::{Admin, ClientArgs, key_values};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The topic to write to.
    pub topic: String,
    /// Every message to this partition (default: by key, else round robin).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Split each line at the first SEP into key and value (a line without
    /// it is a value with no key).
    #[arg(long, short = 'K')]
    pub key_separator: Option<String>,
    /// A header on every message, NAME=VALUE (repeatable).
    #[arg(long, short = 'H')]
    pub header: Vec<String>,
    /// Acknowledgement: 0, 1 or -1 (all in-sync replicas).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
    /// Lines per produce request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

/// Kafka's murmur2 (`Utils.murmur2`), as its default partitioner uses it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `n`, as Kafka's default partitioner.
pub fn partition_for(key: &[u8], n: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % n.max(1)
}

/// One record batch of `(key, value)` messages with `headers`.
fn batch(
    messages: &[(Option<Bytes>, Bytes)],
    headers: &[(String, String)],
) -> Result<Bytes, CliError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Without a producer id the sequences count up from -1 (one batch).
            sequence: i as i32 - 1,
            timestamp: now,
            key: k.clone(),
            value: Some(v.clone()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        StrBytes::from_string(k.clone()),
                        Some(Bytes::from(v.clone())),
                    )
                })
                .collect(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| CliError::Failed(format!("cannot encode a record batch: {e}")))?;
    Ok(out.freeze())
}

pub async fn run(args: &ProduceArgs) -> Result<(), CliError> {
    if args.batch == 0 {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    if !matches!(args.acks, -1..=1) {
        return Err(CliError::Usage(format!(
            "--acks {}: expected 0, 1 or -1",
            args.acks
        )));
    }
    let headers = key_values(&args.header, "--header")?;
    let mut admin = Admin::connect(&args.client).await?;
    let leaders: BTreeMap<i32, i32> = admin.leaders(&args.topic).await?.into_iter().collect();
    let count = leaders.len() as i32;
    if let Some(p) = args.partition
        && !leaders.contains_key(&p)
    {
        return Err(CliError::Usage(format!(
            "--partition {p}: topic {} has partitions 0-{}",
            args.topic,
            count - 1
        )));
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut pending: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>> = BTreeMap::new();
    let (mut n, mut total, mut next) = (0usize, 0u64, 0i32);
    let mut progress = Progress::new("produced", None);
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| CliError::Failed(format!("cannot read stdin: {e}")))?;
        let done = line.is_none();
        if let Some(line) = line {
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_owned())), Bytes::from(v.to_owned())),
                    None => (None, Bytes::from(line)),
                },
                None => (None, Bytes::from(line)),
            };
            let partition = match (args.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for(k, count),
                (None, None) => {
                    next = (next + 1) % count;
                    next
                }
            };
            pending.entry(partition).or_default().push((key, value));
            n += 1;
        }
        if n >= args.batch || (done && n > 0) {
            total += send(
                &mut admin,
                args,
                &leaders,
                std::mem::take(&mut pending),
                &headers,
            )
            .await?;
            progress.add(n as u64);
            n = 0;
        }
        if done {
            break;
        }
    }
    progress.finish();
    print(
        args.client.json,
        &json!({"topic": args.topic, "produced": total}),
        &format!("{total} message(s) produced to {}\n", args.topic),
    );
    Ok(())
}

/// Sends the pending messages, one request per leader; how many were sent.
async fn send(
    admin: &mut Admin,
    args: &ProduceArgs,
    leaders: &BTreeMap<i32, i32>,
    pending: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>>,
    headers: &[(String, String)],
) -> Result<u64, CliError> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes, usize)>> = BTreeMap::new();
    for (p, msgs) in pending {
        let leader = leaders[&p];
        by_leader
            .entry(leader)
            .or_default()
            .push((p, batch(&msgs, headers)?, msgs.len()));
    }
    let mut sent = 0u64;
    for (leader, parts) in by_leader {
        if leader < 0 {
            return Err(CliError::Failed(format!(
                "topic {} has a partition without a leader",
                args.topic
            )));
        }
        let build = |_| {
            ProduceRequest::default()
                .with_acks(args.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic_name(&args.topic))
                        .with_partition_data(
                            parts
                                .iter()
                                .map(|(p, records, _)| {
                                    PartitionProduceData::default()
                                        .with_index(*p)
                                        .with_records(Some(records.clone()))
                                })
                                .collect(),
                        ),
                ])
        };
        if args.acks == 0 {
            // No answer comes.
            admin
                .send_only(Node::Id(leader), ApiKey::Produce, 3..=12, build)
                .await?;
        } else {
            let (r, _): (ProduceResponse, _) = admin
                .call(Node::Id(leader), ApiKey::Produce, 3..=12, build)
                .await?;
            for t in &r.responses {
                for p in &t.partition_responses {
                    check(
                        || format!("cannot produce to {}-{}", args.topic, p.index),
                        p.error_code,
                        p.error_message.as_deref(),
                    )?;
                }
            }
        }
        sent += parts.iter().map(|(_, _, n)| *n as u64).sum::<u64>();
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
