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
