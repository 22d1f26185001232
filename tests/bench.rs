//! `sluice bench` against the real server: what it reports matches what the
//! broker holds, for each acks setting, codec and rate limit.

mod common;

use clap::Parser;
use common::TestBroker;
use sluice::bench::{self, BenchArgs};

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(broker: &TestBroker, extra: &[&str]) -> BenchArgs {
    let addr = broker.addr.to_string();
    let mut argv = vec!["bench", "--bootstrap", &addr];
    argv.extend_from_slice(extra);
    Wrap::parse_from(argv).args
}

#[tokio::test]
async fn reports_what_was_produced_and_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    for (topic, extra) in [
        (
            "b1",
            vec!["--acks", "1", "--count", "20000", "--message-size", "100"],
        ),
        (
            "b2",
            vec![
                "--acks",
                "-1",
                "--count",
                "5000",
                "--partitions",
                "3",
                "--producers",
                "2",
            ],
        ),
        (
            "b3",
            vec!["--acks", "0", "--count", "5000", "--compression", "lz4"],
        ),
        (
            "b4",
            vec![
                "--count",
                "3000",
                "--rate",
                "10000",
                "--batch-size",
                "16384",
            ],
        ),
    ] {
        let mut argv = vec!["--topic", topic];
        argv.extend(extra.iter().copied());
        let a = args(&broker, &argv);
        let r = bench::run(&a)
            .await
            .unwrap_or_else(|e| panic!("{topic}: {e}"));
        assert_eq!(r.messages, a.count, "{topic}");
        assert_eq!(
            r.consumed, a.count,
            "{topic}: the consumer read every message once"
        );
        let p = r.produce_latency_ms;
        if a.acks != 0 {
            assert!(
                0.0 < p.p50 && p.p50 <= p.p99 && p.p99 <= p.max,
                "{topic}: {p:?}"
            );
        }
        let e = r.end_to_end_latency_ms;
        assert!(
            0.0 < e.p50 && e.p50 <= e.p99 && e.p99 <= e.max,
            "{topic}: {e:?}"
        );
        assert!(r.messages_per_sec > 0.0 && r.mb_per_sec > 0.0);
        // The broker holds exactly what was reported.
        let held: i64 = broker_topic_end(&broker, topic).await;
        assert_eq!(held as u64, a.count, "{topic}");
        if topic == "b4" {
            // 3,000 messages at 10,000/s take about 0.3 s, not a burst.
            assert!(r.seconds >= 0.25, "the rate limit holds: {}", r.seconds);
        }
    }
    broker.stop().await;
}

async fn broker_topic_end(broker: &TestBroker, topic: &str) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::*;
    let mut c = broker.client().await;
    let m: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(topic.into()),
                ))),
            ])),
        )
        .await;
    let n = m.topics[0].partitions.len() as i32;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                    topic.into(),
                )))
                .with_partitions(
                    (0..n)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                ),
        ]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
    r.topics[0].partitions.iter().map(|p| p.offset).sum()
}

#[tokio::test]
async fn consume_only_reads_the_topic_from_the_start_and_charts_render() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let produced = bench::run(&args(
        &broker,
        &[
            "--topic",
            "full",
            "--count",
            "4000",
            "--partitions",
            "2",
            "--consumers",
            "0",
            // Durable before the next run looks for the latest offsets.
            "--acks",
            "-1",
        ],
    ))
    .await
    .unwrap();
    assert_eq!(produced.consumed, 0);
    let a = args(
        &broker,
        &["--topic", "full", "--consume-only", "--consumers", "2"],
    );
    let r = bench::run(&a).await.unwrap();
    assert_eq!(
        (r.messages, r.consumed),
        (0, 4000),
        "everything from the earliest offsets"
    );
    assert!(r.consume_mb_per_sec > 0.0);
    let svg = bench::chart::svg(&a, &produced);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        3,
        "produced, consumed, latency"
    );
    assert!(produced.produce_latency_distribution.len() >= 5);
    broker.stop().await;
}

/// Every record of every partition from offset 0 up to the high watermark,
/// read with `isolation_level`; also whether any fetch named aborted
/// transactions, and each partition's high watermark and last stable offset.
struct Read {
    records: Vec<(i32, kafka_protocol::records::Record)>,
    aborted_listed: bool,
    ends: Vec<(i64, i64)>,
}

async fn read_all(broker: &TestBroker, topic: &str, partitions: i32, isolation_level: i8) -> Read {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::*;
    use kafka_protocol::records::RecordBatchDecoder;
    let name = || {
        TopicName(kafka_protocol::protocol::StrBytes::from_string(
            topic.into(),
        ))
    };
    let mut c = broker.client().await;
    let mut ends = Vec::new();
    for level in [0, 1] {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(level)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name())
                    .with_partitions(
                        (0..partitions)
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(-1)
                            })
                            .collect(),
                    ),
            ]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
        for (i, p) in r.topics[0].partitions.iter().enumerate() {
            assert_eq!(p.error_code, 0);
            if level == 0 {
                ends.push((p.offset, -1));
            } else {
                ends[i].1 = p.offset;
            }
        }
    }
    let mut out = Read {
        records: Vec::new(),
        aborted_listed: false,
        ends,
    };
    for p in 0..partitions {
        let mut at = 0i64;
        let mut rounds = 0;
        while at < out.ends[p as usize].0 {
            rounds += 1;
            assert!(rounds < 1000, "partition {p} stops growing at {at}");
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(100)
                .with_max_bytes(16 << 20)
                .with_isolation_level(isolation_level)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name())
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(at)
                                .with_partition_max_bytes(8 << 20),
                        ]),
                ]);
            let r: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
            let part = &r.responses[0].partitions[0];
            assert_eq!(part.error_code, 0, "fetch of partition {p} at {at}");
            out.aborted_listed |= part
                .aborted_transactions
                .as_ref()
                .is_some_and(|a| !a.is_empty());
            let mut bytes = part.records.clone().unwrap_or_default();
            for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
                for r in set.records {
                    at = r.offset + 1;
                    out.records.push((p, r));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn transactional_runs_commit_what_they_report() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    // Two producers over three partitions: bt-0 writes partitions 0 and 2
    // (five records to each per transaction), bt-1 partition 1.
    let flags = vec![
        "--topic",
        "tx",
        "--transactional-id",
        "bt",
        "--records-per-txn",
        "10",
        "--count",
        "1000",
        "--acks",
        "-1",
        "--partitions",
        "3",
        "--producers",
        "2",
        "--message-size",
        "100",
    ];
    let a = args(&broker, &flags);
    let r = bench::run(&a).await.unwrap();
    assert_eq!(
        (r.messages, r.transactions, r.consumed),
        (1000, 100, 1000),
        "every record committed once, and read by the read_committed consumer"
    );
    for p in [r.commit_latency_ms, r.transaction_latency_ms] {
        assert!(0.0 < p.p50 && p.p50 <= p.p99 && p.p99 <= p.max, "{p:?}");
    }
    assert!(r.transaction_latency_ms.p50 >= r.commit_latency_ms.p50);

    let read = read_all(&broker, "tx", 3, 1).await;
    for (p, (hw, lso)) in read.ends.iter().enumerate() {
        assert_eq!(hw, lso, "partition {p}: no transaction left open");
    }
    assert!(!read.aborted_listed, "nothing was aborted");
    let (markers, data): (Vec<_>, Vec<_>) = read.records.iter().partition(|(_, r)| r.control);
    assert_eq!(data.len(), 1000, "the records the bench reports, once each");
    assert!(
        data.iter().all(|(_, r)| r.transactional
            && r.producer_id >= 0
            && r.value.as_ref().is_some_and(|v| v.len() == 100)),
        "transactional batches of the bench's records"
    );
    // A COMMIT marker (control key version 0, type 1) per partition per
    // transaction: 50 transactions of bt-0 on two partitions, 50 of bt-1
    // on one.
    assert_eq!(markers.len(), 150);
    assert!(
        markers
            .iter()
            .all(|(_, r)| r.key.as_deref() == Some(&[0u8, 0, 0, 1][..])),
        "only COMMIT markers"
    );
    let per_partition = |q: i32| data.iter().filter(|(p, _)| *p == q).count();
    assert_eq!(
        (per_partition(0), per_partition(1), per_partition(2)),
        (250, 500, 250)
    );
    let hw: i64 = read.ends.iter().map(|(hw, _)| hw).sum();
    assert_eq!(hw, 1150, "the offsets are the records and the markers");

    // A second run of the same ids takes new epochs and goes on committing,
    // now in batches of three records (a transaction's five records to a
    // partition in two produce requests, sequences continuing); consume-only
    // reading then stops at the latest offsets although markers take
    // offsets too.
    let mut smaller = flags.clone();
    smaller.extend(["--batch-size", "300"]);
    let again = bench::run(&args(&broker, &smaller)).await.unwrap();
    assert_eq!((again.messages, again.transactions), (1000, 100));
    let read = read_all(&broker, "tx", 3, 1).await;
    assert!(read.ends.iter().all(|(hw, lso)| hw == lso) && !read.aborted_listed);
    assert_eq!(
        read.records.iter().filter(|(_, r)| !r.control).count(),
        2000
    );
    assert_eq!(read.ends.iter().map(|(hw, _)| hw).sum::<i64>(), 2300);
    let all = bench::run(&args(
        &broker,
        &["--topic", "tx", "--consume-only", "--consumers", "2"],
    ))
    .await
    .unwrap();
    assert_eq!(all.consumed, 2000, "data records only, markers not counted");
    broker.stop().await;
}

#[tokio::test]
async fn idempotent_runs_number_their_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let a = args(
        &broker,
        &[
            "--topic",
            "idem",
            "--idempotent",
            "--acks",
            "-1",
            "--count",
            "3000",
            "--partitions",
            "2",
            "--message-size",
            "100",
            "--batch-size",
            "10000",
        ],
    );
    let r = bench::run(&a).await.unwrap();
    assert_eq!((r.messages, r.consumed, r.transactions), (3000, 3000, 0));
    let read = read_all(&broker, "idem", 2, 0).await;
    assert_eq!(read.records.len(), 3000);
    let pid = read.records[0].1.producer_id;
    assert!(pid >= 0, "a producer id from InitProducerId");
    for (p, rec) in &read.records {
        assert!(!rec.transactional && !rec.control);
        assert_eq!(
            (rec.producer_id, rec.producer_epoch),
            (pid, 0),
            "partition {p}"
        );
        // One producer on a new topic: sequences start at 0 and continue
        // from batch to batch (100 records each) without a gap.
        assert_eq!(rec.sequence as i64, rec.offset, "partition {p}");
    }

    // Flags that cannot work are refused before anything is sent.
    for (extra, wanted) in [
        (vec!["--idempotent", "--acks", "1"], "--acks -1"),
        (vec!["--transactional-id", "x"], "--acks -1"),
        (
            vec![
                "--transactional-id",
                "x",
                "--acks",
                "-1",
                "--records-per-txn",
                "0",
            ],
            "--records-per-txn",
        ),
    ] {
        let mut argv = vec!["--topic", "idem"];
        argv.extend(extra);
        let e = bench::run(&args(&broker, &argv)).await.unwrap_err();
        assert!(e.to_string().contains(wanted), "{argv:?}: {e}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_fenced_transactional_producer_stops_with_the_reason() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let a = args(
        &broker,
        &[
            "--topic",
            "fenced",
            "--transactional-id",
            "victim",
            "--records-per-txn",
            "5",
            "--duration",
            "15",
            "--acks",
            "-1",
            "--consumers",
            "0",
        ],
    );
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move { bench::run(&a).await });
    let id = || TransactionalId(StrBytes::from_static_str("victim-0"));
    let mut c = broker.client().await;
    // Once the bench's producer holds the id, a newer incarnation takes it.
    loop {
        assert!(started.elapsed().as_secs() < 10, "the bench never started");
        let r: DescribeTransactionsResponse = c
            .call(
                ApiKey::DescribeTransactions,
                0,
                &DescribeTransactionsRequest::default().with_transactional_ids(vec![id()]),
            )
            .await;
        if r.transaction_states[0].error_code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // CONCURRENT_TRANSACTIONS while a commit of the bench completes: again.
    let mut codes = Vec::new();
    loop {
        let r: InitProducerIdResponse = c
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(id()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await;
        codes.push(r.error_code);
        match r.error_code {
            0 => break,
            51 if codes.len() < 100 => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            _ => panic!("InitProducerId answered {codes:?}"),
        }
    }
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the fenced bench stops, long before its 15 s")
        .unwrap()
        .expect_err("a fenced producer cannot go on");
    assert!(e.to_string().contains("fenced"), "{e}");
    assert!(started.elapsed().as_secs() < 14, "it stopped early");
    broker.stop().await;
}
