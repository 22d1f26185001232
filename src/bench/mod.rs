//! `sluice bench`: producer and consumer load against any Kafka-compatible
//! bootstrap address, with throughput and latency percentiles.
//!
//! Producers send batches of `--message-size` messages to the topic's
//! partitions in turn, with up to `--in-flight` requests outstanding per
//! connection; a message's produce latency is its request's round trip.
//! Each message carries its send time (microseconds since the epoch) in its
//! first 8 bytes, so consumers, reading from where the run started, measure
//! end-to-end latency. Latencies go into HDR histograms.
//!
//! Producers are plain (no producer id), idempotent (`--idempotent`: a
//! producer id from InitProducerId, sequences per partition) or
//! transactional (`--transactional-id`, see `txn`: every
//! `--records-per-txn` records are one committed transaction, whose commit
//! latency goes into a histogram of its own; consumers then read with
//! isolation level read_committed).

pub mod chart;
pub use crate::client;
mod txn;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{Mutex, Semaphore, mpsc};

use client::Result;

/// Flags of `sluice bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Connect over TLS (an SSL listener), trusting the CA certificates in
    /// this PEM file.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: the client certificate chain (PEM) to present, for a
    /// listener with ssl.client.auth; its key in --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[arg(long)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Bootstrap address (host:port) of any Kafka-compatible broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Topic to use; created with --partitions if it does not exist.
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Partitions of the topic when this run creates it.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor of the topic when this run creates it (-1: the
    /// broker's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Bytes per message value.
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// Messages to produce, over all producers (unless --duration is given).
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Produce for this many seconds instead of --count messages.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Acknowledgement: 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub acks: i16,
    /// Bytes of messages per produce request.
    #[arg(long, default_value_t = 256 * 1024)]
    pub batch_size: usize,
    /// With --rate: how long a partial batch waits for more messages.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Producer connections.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer connections reading what this run produces (0: none).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Target messages per second over all producers (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Produce requests in flight per producer connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Produce nothing: consumers read the topic from its earliest offsets to
    /// the latest ones at start (reading throughput, e.g. cold vs hot cache).
    #[arg(long)]
    pub consume_only: bool,
    /// Write an SVG chart of throughput over time and of the produce latency
    /// distribution to this file.
    #[arg(long)]
    pub chart: Option<std::path::PathBuf>,
    /// Idempotent producers, as Kafka's enable.idempotence: each producer
    /// connection takes a producer id (InitProducerId) and numbers its
    /// batches per partition. Needs --acks -1.
    #[arg(long)]
    pub idempotent: bool,
    /// Transactional producers (idempotent too; needs --acks -1): producer
    /// n (0, 1, …) is transactional id ID-n and commits every
    /// --records-per-txn records as one transaction, spread evenly over its
    /// partitions (a transaction of fewer records than partitions writes one
    /// record to each of the next partitions in turn); each produce request
    /// carries a batch (up to --batch-size) for each of the transaction's
    /// partitions, as a Kafka producer's does. Reports commit
    /// latency (EndTxn round trip) and transaction latency
    /// (AddPartitionsToTxn sent to EndTxn answered); records count once
    /// committed. Consumers read committed records only.
    #[arg(long, value_name = "ID")]
    pub transactional_id: Option<String>,
    /// Records per transaction, with --transactional-id.
    #[arg(long, default_value_t = 100)]
    pub records_per_txn: u64,
}

/// Throughput during one second of the run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    pub second: f64,
    pub produced_per_sec: f64,
    pub consumed_per_sec: f64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub messages: u64,
    pub message_size: usize,
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub mb_per_sec: f64,
    pub produce_latency_ms: Percentiles,
    pub consumed: u64,
    pub consume_mb_per_sec: f64,
    pub end_to_end_latency_ms: Percentiles,
    pub timeline: Vec<Sample>,
    /// (percentile, produce latency in ms), for the latency chart.
    pub produce_latency_distribution: Vec<(f64, f64)>,
    /// Committed transactions (--transactional-id), and their rate.
    pub transactions: u64,
    pub transactions_per_sec: f64,
    /// EndTxn's round trip.
    pub commit_latency_ms: Percentiles,
    /// From sending AddPartitionsToTxn to EndTxn's answer.
    pub transaction_latency_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, serde::Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

struct Stats {
    produced: AtomicU64,
    consumed: AtomicU64,
    consumed_bytes: AtomicU64,
    /// Produced total once producers are done (u64::MAX before).
    target: AtomicU64,
    produce_latency: Mutex<Histogram<u64>>,
    e2e_latency: Mutex<Histogram<u64>>,
    /// Committed transactions and their latencies (see `txn`).
    transactions: AtomicU64,
    commit_latency: Mutex<Histogram<u64>>,
    transaction_latency: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn codec(name: &str) -> Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => return Err(format!("unknown compression '{other}'").into()),
    })
}

/// Runs the benchmark, printing a progress line to stderr every second.
pub async fn run(args: &BenchArgs) -> Result<Report> {
    if !matches!(args.acks, -1..=1) {
        return Err("--acks must be 0, 1 or -1".into());
    }
    if let Some(id) = &args.transactional_id {
        if id.is_empty() {
            return Err("--transactional-id needs a name".into());
        }
        if args.records_per_txn == 0 {
            return Err("--records-per-txn must be at least 1".into());
        }
    }
    if (args.idempotent || args.transactional_id.is_some()) && args.acks != -1 {
        return Err(
            "--idempotent and --transactional-id need --acks -1, as Kafka's idempotent producer does"
                .into(),
        );
    }
    let compression = codec(&args.compression)?;
    let (partitions, leader) = prepare_topic(args).await?;
    // Produce and fetch go to the partitions' leader (in a cluster it may
    // not be the bootstrap broker).
    let args = &BenchArgs {
        bootstrap: leader,
        ..args.clone()
    };
    let latest = list_offsets(args, partitions, -1).await?;
    let starts = if args.consume_only {
        list_offsets(args, partitions, -2).await?
    } else {
        latest.clone()
    };
    let stats = Arc::new(Stats {
        produced: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        consumed_bytes: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        produce_latency: Mutex::new(histogram()),
        e2e_latency: Mutex::new(histogram()),
        transactions: AtomicU64::new(0),
        commit_latency: Mutex::new(histogram()),
        transaction_latency: Mutex::new(histogram()),
    });
    let mut consumers = Vec::new();
    for c in 0..args.consumers {
        let mine: Vec<(i32, i64)> = starts
            .iter()
            .copied()
            .filter(|(p, _)| *p as usize % args.consumers == c)
            .collect();
        // Reading from the start stops at the latest offsets (markers of
        // transactions take offsets too, so counting records would not do).
        let ends = args.consume_only.then(|| latest.clone());
        if !mine.is_empty() {
            consumers.push(tokio::spawn(consume(
                args.clone(),
                mine,
                ends,
                stats.clone(),
            )));
        }
    }
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let producers_n = if args.consume_only {
        0
    } else {
        args.producers.max(1)
    };
    let mut producers = tokio::task::JoinSet::new();
    for i in 0..producers_n {
        let quota = args.count / producers_n as u64
            + u64::from((i as u64) < args.count % producers_n as u64);
        let mine: Vec<i32> = if producers_n >= partitions as usize {
            vec![(i % partitions as usize) as i32]
        } else {
            (0..partitions)
                .filter(|p| *p as usize % producers_n == i)
                .collect()
        };
        let rate = args.rate / producers_n as u64;
        match &args.transactional_id {
            Some(id) => producers.spawn(txn::produce(
                args.clone(),
                format!("{id}-{i}"),
                mine,
                quota,
                deadline,
                rate,
                compression,
                stats.clone(),
            )),
            None => producers.spawn(produce(
                args.clone(),
                mine,
                quota,
                deadline,
                rate,
                compression,
                stats.clone(),
            )),
        };
    }
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let progress = tokio::spawn(progress(
        stats.clone(),
        started,
        args.message_size,
        args.json,
        timeline.clone(),
    ));
    // The first producer to fail ends the run (dropping the set stops the
    // others).
    while let Some(p) = producers.join_next().await {
        p??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let produced = stats.produced.load(Ordering::Relaxed);
    stats.target.store(produced, Ordering::Relaxed);
    for c in consumers {
        match tokio::time::timeout(Duration::from_secs(60), c).await {
            Err(_) => return Err("consumers did not read everything within 60 s".into()),
            Ok(joined) => joined??,
        }
    }
    let consume_seconds = started.elapsed().as_secs_f64();
    progress.abort();
    let produce_latency = stats.produce_latency.lock().await;
    let produce_latency_distribution = if produce_latency.is_empty() {
        Vec::new()
    } else {
        [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0]
            .iter()
            .map(|&q| {
                (
                    q,
                    produce_latency.value_at_quantile(q / 100.0) as f64 / 1000.0,
                )
            })
            .collect()
    };
    drop(produce_latency);
    let timeline = timeline.lock().await.clone();
    let mb = |bytes: f64, s: f64| bytes / 1e6 / s.max(1e-9);
    let transactions = stats.transactions.load(Ordering::Relaxed);
    Ok(Report {
        messages: produced,
        message_size: args.message_size,
        seconds,
        messages_per_sec: produced as f64 / seconds.max(1e-9),
        mb_per_sec: mb((produced * args.message_size as u64) as f64, seconds),
        produce_latency_ms: Percentiles::of(&*stats.produce_latency.lock().await),
        consumed: stats.consumed.load(Ordering::Relaxed),
        consume_mb_per_sec: mb(
            stats.consumed_bytes.load(Ordering::Relaxed) as f64,
            consume_seconds,
        ),
        end_to_end_latency_ms: Percentiles::of(&*stats.e2e_latency.lock().await),
        timeline,
        produce_latency_distribution,
        transactions,
        transactions_per_sec: transactions as f64 / seconds.max(1e-9),
        commit_latency_ms: Percentiles::of(&*stats.commit_latency.lock().await),
        transaction_latency_ms: Percentiles::of(&*stats.transaction_latency.lock().await),
    })
}

async fn progress(
    stats: Arc<Stats>,
    started: Instant,
    size: usize,
    quiet: bool,
    timeline: Arc<Mutex<Vec<Sample>>>,
) {
    let (mut last_p, mut last_c, mut last_t) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = stats.transactions.load(Ordering::Relaxed);
        let p = stats.produced.load(Ordering::Relaxed);
        let c = stats.consumed.load(Ordering::Relaxed);
        let p99 = Percentiles::of(&*stats.produce_latency.lock().await).p99;
        let second = started.elapsed().as_secs_f64();
        timeline.lock().await.push(Sample {
            second,
            produced_per_sec: (p - last_p) as f64,
            consumed_per_sec: (c - last_c) as f64,
        });
        if !quiet {
            let txns = if t > 0 {
                let commit = Percentiles::of(&*stats.commit_latency.lock().await);
                format!(
                    "  {:>7} txn/s  commit p50 {:.2} ms p99 {:.2} ms",
                    t - last_t,
                    commit.p50,
                    commit.p99
                )
            } else {
                String::new()
            };
            eprintln!(
                "{second:>6.1} s  {p:>12} msgs  {:>10.0} msgs/s  {:>8.1} MB/s  produce p99 {p99:.2} ms{txns}  consumed {c}",
                (p - last_p) as f64,
                ((p - last_p) * size as u64) as f64 / 1e6,
            );
        }
        (last_p, last_c, last_t) = (p, c, t);
    }
}

impl BenchArgs {
    /// The TLS client configuration of --tls-ca (and --tls-cert/--tls-key).
    pub fn tls(&self) -> Result<client::Tls> {
        client::tls_config(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
    }
}

/// Creates the topic if needed; returns its partition count and the
/// address of the broker that leads them all.
async fn prepare_topic(args: &BenchArgs) -> Result<(i32, String)> {
    let (mut tx, mut rx) = client::connect(&args.bootstrap, &args.tls()?).await?;
    let v = tx.version(ApiKey::CreateTopics, 2..=4)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                .with_num_partitions(args.partitions)
                .with_replication_factor(args.replication_factor),
        ])
        .with_timeout_ms(30_000);
    let corr = tx.send(ApiKey::CreateTopics, v, &req).await?;
    let r: CreateTopicsResponse = rx.recv(corr, v).await?;
    let code = r.topics.first().map(|t| t.error_code).unwrap_or(0);
    if code != 0 && code != 36 {
        return Err(format!("cannot create topic {}: error {code}", args.topic).into());
    }
    let v = tx.version(ApiKey::Metadata, 1..=9)?;
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(args.topic.clone())))),
    ]));
    // A new replicated topic has no leaders for a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let corr = tx.send(ApiKey::Metadata, v, &req).await?;
        let m: MetadataResponse = rx.recv(corr, v).await?;
        let parts = m
            .topics
            .first()
            .map(|t| t.partitions.as_slice())
            .unwrap_or_default();
        if parts.is_empty() {
            return Err(format!("topic {} has no partitions", args.topic).into());
        }
        // Until the deadline, also wait for the preferred leaders (the
        // first replica): a cluster hands leadership to them shortly after
        // creating a topic.
        let settled = parts
            .iter()
            .all(|p| p.replica_nodes.first().is_none_or(|r| *r == p.leader_id));
        if !settled && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut leaders: Vec<i32> = parts.iter().map(|p| p.leader_id.0).collect();
        leaders.sort_unstable();
        leaders.dedup();
        match leaders[..] {
            [id] if id >= 0 => {
                let b = m
                    .brokers
                    .iter()
                    .find(|b| b.node_id.0 == id)
                    .ok_or("the leader is not among the brokers Metadata lists")?;
                return Ok((parts.len() as i32, format!("{}:{}", b.host, b.port)));
            }
            _ if leaders.iter().any(|&l| l < 0) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ if leaders.iter().any(|&l| l < 0) => {
                return Err(format!("topic {} has partitions without a leader", args.topic).into());
            }
            _ => {
                return Err(format!(
                    "the partitions of {} are led by brokers {leaders:?}; the bench talks to one leader (use --partitions 1)",
                    args.topic
                )
                .into());
            }
        }
    }
}

/// Offsets of every partition at `spec` (-1 latest, -2 earliest).
async fn list_offsets(args: &BenchArgs, partitions: i32, spec: i64) -> Result<Vec<(i32, i64)>> {
    let (mut tx, mut rx) = client::connect(&args.bootstrap, &args.tls()?).await?;
    let v = tx.version(ApiKey::ListOffsets, 1..=5)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(spec)
                        })
                        .collect(),
                ),
        ]);
    // A leader named by Metadata may take a moment to take office (a
    // replicated partition just created): retry "unknown partition" and
    // "not the leader" for a while.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let corr = tx.send(ApiKey::ListOffsets, v, &req).await?;
        let r: ListOffsetsResponse = rx.recv(corr, v).await?;
        let parts: Vec<_> = r.topics.iter().flat_map(|t| t.partitions.iter()).collect();
        match parts.iter().find(|p| p.error_code != 0) {
            None => {
                return Ok(parts
                    .iter()
                    .map(|p| (p.partition_index, p.offset))
                    .collect());
            }
            Some(p) if matches!(p.error_code, 3 | 6) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(p) => {
                return Err(format!(
                    "ListOffsets of partition {} failed: error {}",
                    p.partition_index, p.error_code
                )
                .into());
            }
        }
    }
}

/// The producer fields of an idempotent or transactional batch.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    producer_id: i64,
    epoch: i16,
    /// The batch's base sequence.
    sequence: i32,
    transactional: bool,
}

/// The next base sequence of each partition of one producer id and epoch:
/// batches continue where the previous one to the partition ended.
#[derive(Debug, Default)]
struct Sequences(std::collections::HashMap<i32, i32>);

impl Sequences {
    /// The base sequence of the next `n` records to `partition`.
    fn take(&mut self, partition: i32, n: u64) -> i32 {
        let next = self.0.entry(partition).or_insert(0);
        let base = *next;
        // Kafka wraps a sequence past i32::MAX to 0.
        *next = ((base as i64 + n as i64) % (i32::MAX as i64 + 1)) as i32;
        base
    }
}

/// One batch of `n` messages whose values start with the send time.
fn batch(n: usize, size: usize, compression: Compression, stamp: Option<Stamp>) -> Result<Bytes> {
    let sent = now_us().to_be_bytes();
    let now_ms = (now_us() / 1000) as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut value = vec![0u8; size.max(8)];
            value[..8].copy_from_slice(&sent);
            Record {
                transactional: stamp.is_some_and(|s| s.transactional),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: stamp.map_or(-1, |s| s.producer_id),
                producer_epoch: stamp.map_or(-1, |s| s.epoch),
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset minus
                // sequence stays the same: without a producer id the
                // sequences count up from -1 (base sequence -1).
                sequence: match stamp {
                    Some(s) => s.sequence.wrapping_add(i as i32),
                    None => i as i32 - 1,
                },
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(out.freeze())
}

async fn produce(
    args: BenchArgs,
    partitions: Vec<i32>,
    quota: u64,
    deadline: Option<Instant>,
    rate: u64,
    compression: Compression,
    stats: Arc<Stats>,
) -> Result<()> {
    let (mut tx, mut rx) = client::connect(&args.bootstrap, &args.tls()?).await?;
    let v = tx.version(ApiKey::Produce, 3..=9)?;
    let producer = if args.idempotent {
        Some(client::init_producer_id(&mut tx, &mut rx, None).await?)
    } else {
        None
    };
    let mut sequences = Sequences::default();
    let per_batch = (args.batch_size / args.message_size.max(1)).max(1) as u64;
    let permits = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let (ack_tx, mut ack_rx) =
        mpsc::channel::<(i32, Instant, u64, tokio::sync::OwnedSemaphorePermit)>(
            args.in_flight.max(1),
        );
    let acks = args.acks;
    let reader_stats = stats.clone();
    let reader = tokio::spawn(async move {
        while let Some((corr, sent, n, permit)) = ack_rx.recv().await {
            let resp: ProduceResponse = rx.recv(corr, v).await?;
            for t in &resp.responses {
                for p in &t.partition_responses {
                    if p.error_code != 0 {
                        return Err::<(), client::Error>(client::failure(
                            &format!("produce to partition {}", p.index),
                            p.error_code,
                            false,
                        ));
                    }
                }
            }
            let us = sent.elapsed().as_micros() as u64;
            reader_stats
                .produce_latency
                .lock()
                .await
                .saturating_record_n(us.max(1), n);
            reader_stats.produced.fetch_add(n, Ordering::Relaxed);
            drop(permit);
        }
        Ok(())
    });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    loop {
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => sent >= quota,
        };
        if done || partitions.is_empty() {
            break;
        }
        let mut n = match deadline {
            Some(_) => per_batch,
            None => per_batch.min(quota - sent),
        };
        if rate > 0 {
            // Paced as a client's accumulator sends: a batch goes once it is
            // full, or once its first message has waited linger.ms; not
            // linger.ms worth of messages in one burst.
            let elapsed = started.elapsed().as_secs_f64();
            let due = (elapsed * rate as f64) as u64;
            let full_at = (sent + n) as f64 / rate as f64;
            let linger_at = (sent + 1) as f64 / rate as f64 + args.linger_ms as f64 / 1000.0;
            if due < sent + n && elapsed < linger_at || due <= sent {
                let wake = full_at.min(linger_at.max((sent + 1) as f64 / rate as f64));
                tokio::time::sleep(Duration::from_secs_f64((wake - elapsed).max(0.000_05))).await;
                continue;
            }
            n = n.min(due - sent);
        }
        let partition = partitions[next % partitions.len()];
        next += 1;
        let stamp = producer.map(|(producer_id, epoch)| Stamp {
            producer_id,
            epoch,
            sequence: sequences.take(partition, n),
            transactional: false,
        });
        let records = batch(n as usize, args.message_size, compression, stamp)?;
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]);
        let permit = permits.clone().acquire_owned().await?;
        let start = Instant::now();
        let corr = tx.send(ApiKey::Produce, v, &req).await?;
        if acks == 0 {
            stats.produced.fetch_add(n, Ordering::Relaxed);
            drop(permit);
        } else if ack_tx.send((corr, start, n, permit)).await.is_err() {
            break; // the reader failed; its error is returned below
        }
        sent += n;
    }
    drop(ack_tx);
    reader.await??;
    Ok(())
}

/// Reads `partitions` from their offsets until the producers' total
/// (`stats.target`) has been read, or with `ends`, until every partition
/// reaches its end. Control batches (transaction markers) count as no
/// records; with --transactional-id only committed records are read.
async fn consume(
    args: BenchArgs,
    mut partitions: Vec<(i32, i64)>,
    ends: Option<Vec<(i32, i64)>>,
    stats: Arc<Stats>,
) -> Result<()> {
    let (mut tx, mut rx) = client::connect(&args.bootstrap, &args.tls()?).await?;
    let v = tx.version(ApiKey::Fetch, 4..=11)?;
    let isolation_level = i8::from(args.transactional_id.is_some() && !args.consume_only);
    let done = |partitions: &[(i32, i64)]| match &ends {
        Some(ends) => partitions.iter().all(|(p, at)| {
            ends.iter()
                .find(|(q, _)| q == p)
                .is_none_or(|(_, end)| at >= end)
        }),
        None => stats.consumed.load(Ordering::Relaxed) >= stats.target.load(Ordering::Relaxed),
    };
    while !done(&partitions) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_isolation_level(isolation_level)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&(p, o)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(o)
                                    .with_partition_max_bytes(16 << 20)
                            })
                            .collect(),
                    ),
            ]);
        let corr = tx.send(ApiKey::Fetch, v, &req).await?;
        let resp: FetchResponse = rx.recv(corr, v).await?;
        let now = now_us();
        let mut h = stats.e2e_latency.lock().await;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(format!(
                        "fetch from partition {} failed: error {}",
                        p.partition_index, p.error_code
                    )
                    .into());
                }
                let Some(mut records) = p.records else {
                    continue;
                };
                let bytes = records.len() as u64;
                let mut count = 0u64;
                let mut last = None;
                if args.consume_only {
                    // Old data has no meaningful end-to-end latency: count
                    // records from the batch headers, without decoding them.
                    let mut pos = 0usize;
                    while pos + 61 <= records.len() {
                        let base =
                            i64::from_be_bytes(records[pos..pos + 8].try_into().expect("8 bytes"));
                        let len = i32::from_be_bytes(
                            records[pos + 8..pos + 12].try_into().expect("4 bytes"),
                        );
                        let delta = i32::from_be_bytes(
                            records[pos + 23..pos + 27].try_into().expect("4 bytes"),
                        );
                        let attributes = i16::from_be_bytes(
                            records[pos + 21..pos + 23].try_into().expect("2 bytes"),
                        );
                        let n = i32::from_be_bytes(
                            records[pos + 57..pos + 61].try_into().expect("4 bytes"),
                        );
                        if len <= 0 || pos + 12 + len as usize > records.len() {
                            break;
                        }
                        if attributes & 0x20 == 0 {
                            count += n.max(0) as u64;
                        }
                        last = Some(base + delta as i64);
                        pos += 12 + len as usize;
                    }
                } else {
                    // read_committed: the broker sends what lies below the
                    // last stable offset, aborted records too, and names the
                    // aborted transactions (producer id, first offset); a
                    // consumer skips a producer's records from that offset
                    // to its marker.
                    let mut aborted: Vec<(i64, i64)> = p
                        .aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| (a.first_offset, a.producer_id.0))
                        .collect();
                    aborted.sort_unstable();
                    let mut aborted = aborted.into_iter().peekable();
                    let mut skipping = std::collections::HashSet::new();
                    for set in RecordBatchDecoder::decode_all(&mut records)? {
                        for r in set.records {
                            last = Some(r.offset);
                            while let Some((_, producer)) =
                                aborted.next_if(|(first, _)| *first <= r.offset)
                            {
                                skipping.insert(producer);
                            }
                            if r.control {
                                skipping.remove(&r.producer_id);
                                continue;
                            }
                            if r.transactional && skipping.contains(&r.producer_id) {
                                continue;
                            }
                            if let Some(v) = r.value.as_ref().filter(|v| v.len() >= 8) {
                                let sent = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                                h.saturating_record(now.saturating_sub(sent).max(1));
                            }
                            count += 1;
                        }
                    }
                }
                if let (Some(last), Some(entry)) = (
                    last,
                    partitions.iter_mut().find(|(q, _)| *q == p.partition_index),
                ) {
                    entry.1 = last + 1;
                }
                stats.consumed.fetch_add(count, Ordering::Relaxed);
                stats.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// The final table.
pub fn table(args: &BenchArgs, r: &Report) -> String {
    let row = |name: &str, p: &Percentiles| {
        format!(
            "{name:<22}{:>10.2}{:>10.2}{:>10.2}{:>10.2}\n",
            p.p50, p.p99, p.p999, p.max
        )
    };
    let mut s = String::new();
    s += &format!(
        "topic {} ({} partitions requested), {} B messages, acks={}, compression={}, {} producer(s), {} consumer(s)\n\n",
        args.topic,
        args.partitions,
        args.message_size,
        args.acks,
        args.compression,
        args.producers,
        args.consumers
    );
    match &args.transactional_id {
        Some(id) => {
            let ids = match args.producers.max(1) {
                1 => format!("id {id}-0"),
                n => format!("ids {id}-0 to {id}-{}", n - 1),
            };
            s += &format!(
                "transactional ({ids}), {} records per transaction; consumers read committed\n\n",
                args.records_per_txn
            )
        }
        None if args.idempotent => s += "idempotent producers\n\n",
        None => {}
    }
    s += &format!(
        "produced   {:>12} msgs in {:.2} s   {:>12.0} msgs/s   {:>9.1} MB/s\n",
        r.messages, r.seconds, r.messages_per_sec, r.mb_per_sec
    );
    if args.transactional_id.is_some() {
        s += &format!(
            "committed  {:>12} txns                {:>12.0} txns/s\n",
            r.transactions, r.transactions_per_sec
        );
    }
    s += &format!(
        "consumed   {:>12} msgs                {:>9.1} MB/s\n\n",
        r.consumed, r.consume_mb_per_sec
    );
    s += &format!(
        "{:<22}{:>10}{:>10}{:>10}{:>10}\n",
        "latency (ms)", "p50", "p99", "p99.9", "max"
    );
    s += &row("produce", &r.produce_latency_ms);
    if r.transactions > 0 {
        s += &row("commit (EndTxn)", &r.commit_latency_ms);
        s += &row("transaction", &r.transaction_latency_ms);
    }
    if r.consumed > 0 {
        s += &row("end to end", &r.end_to_end_latency_ms);
    }
    s
}
