//! Topic configs changed live, retention by time and by size, DeleteRecords —
//! seen the way clients see them: ListOffsets, Fetch and DescribeConfigs.

mod common;

use std::time::Duration;

use common::{Client, TestBroker, batch};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::handlers::SERVED;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const INVALID_CONFIG: i16 = 40;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

async fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, |c| c.log_retention_check_interval_ms = 50).await
}

async fn create(c: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    let r = common::create_topic_with(c, topic, configs).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// Produces `batches` batches of 10 records, their timestamps starting at `ts`.
async fn produce(c: &mut Client, topic: &str, batches: usize, ts: i64) {
    for _ in 0..batches {
        let p = produce_one(c, topic, batch(10, ts, None)).await;
        assert_eq!(p.error_code, 0);
    }
}

/// ListOffsets: (earliest, latest).
async fn offsets(c: &mut Client, topic: &str) -> (i64, i64) {
    let mut out = [0i64; 2];
    for (i, ts) in [-2i64, -1].into_iter().enumerate() {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ]),
            ]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
        out[i] = r.topics[0].partitions[0].offset;
    }
    (out[0], out[1])
}

async fn wait_for_earliest(
    c: &mut Client,
    topic: &str,
    pred: impl Fn(i64, i64) -> bool,
) -> (i64, i64) {
    for _ in 0..200 {
        let (e, l) = offsets(c, topic).await;
        if pred(e, l) {
            return (e, l);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "retention did not act on {topic}: {:?}",
        offsets(c, topic).await
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn retention_by_size_deletes_the_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    // Batches of 10 records are ~250 bytes: a segment holds about four.
    create(
        &mut c,
        "sized",
        &[("segment.bytes", "1000"), ("retention.bytes", "2000")],
    )
    .await;
    produce(&mut c, "sized", 40, now_ms()).await;
    // The retention task may run while the batches are still arriving, so
    // wait until it has acted on the whole log: at most retention.bytes plus
    // one segment is left.
    let (earliest, latest) = wait_for_earliest(&mut c, "sized", |e, l| e > 0 && l - e <= 120).await;
    assert_eq!(latest, 400);
    let kept_records = latest - earliest;
    assert!(
        kept_records <= 120,
        "kept {kept_records} records of ~25 bytes each"
    );
    assert_eq!(
        earliest % 10,
        0,
        "whole batches (whole segments) are deleted"
    );
    broker.stop().await;
}

#[tokio::test]
async fn retention_by_time_deletes_expired_segments_including_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "aged", &[("segment.bytes", "1000")]).await;
    let hour_ago = now_ms() - 3_600_000;
    produce(&mut c, "aged", 20, hour_ago).await;
    // Nothing happens under the 7-day default.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(offsets(&mut c, "aged").await, (0, 200));
    // Lowered live to one minute: every record is an hour old.
    let code =
        alter_incrementally(&mut c, 1, "aged", &[("retention.ms", SET, Some("60000"))]).await;
    assert_eq!(code, 0);
    let (earliest, latest) = wait_for_earliest(&mut c, "aged", |e, l| e == l).await;
    assert_eq!(
        (earliest, latest),
        (200, 200),
        "all of it expired, the active segment too"
    );
    // New records are kept.
    produce(&mut c, "aged", 1, now_ms()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(offsets(&mut c, "aged").await, (200, 210));
    broker.stop().await;
}

#[tokio::test]
async fn delete_records_moves_the_log_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "trimmed", &[]).await;
    produce(&mut c, "trimmed", 10, now_ms()).await;
    let mut expected = 0;
    for v in range(ApiKey::DeleteRecords) {
        expected += 20;
        let req = |offset| {
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(TopicName(s("trimmed")))
                        .with_partitions(vec![
                            DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(offset),
                        ]),
                ])
        };
        let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, v, &req(expected)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, expected),
            "DeleteRecords v{v}"
        );
        assert_eq!(offsets(&mut c, "trimmed").await, (expected, 100));
        let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, v, &req(101)).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, OFFSET_OUT_OF_RANGE,
            "past the high watermark"
        );
    }
    // -1 means "up to the high watermark".
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(TopicName(s("trimmed")))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(-1),
                ]),
        ]);
    let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await;
    assert_eq!(r.topics[0].partitions[0].low_watermark, 100);
    drop(c);
    broker.stop().await;
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        offsets(&mut c, "trimmed").await,
        (100, 100),
        "the log start offset persists"
    );
    broker.stop().await;
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// IncrementalAlterConfigs on one topic; the topic's error code.
async fn alter_incrementally(
    c: &mut Client,
    v: i16,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> i16 {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configs(
                ops.iter()
                    .map(|&(name, op, value)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s(name))
                            .with_config_operation(op)
                            .with_value(value.map(s))
                    })
                    .collect(),
            ),
    ]);
    let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req).await;
    r.responses[0].error_code
}

async fn describe(c: &mut Client, topic: &str, key: &str) -> (Option<String>, i8) {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(key)])),
    ]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await;
    let e = &r.results[0].configs[0];
    (e.value.as_ref().map(|v| v.to_string()), e.config_source)
}

#[tokio::test]
async fn configs_change_live_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "tuned", &[("retention.ms", "1000000")]).await;
    for v in range(ApiKey::AlterConfigs) {
        let value = format!("{}", 2_000_000 + v as i64);
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("tuned"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s(&value))),
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("delete"))),
                ]),
        ]);
        let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
        assert_eq!(
            describe(&mut c, "tuned", "retention.ms").await,
            (Some(value), 1)
        );
        let bad = req.clone().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("tuned"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("soon"))),
                ]),
        ]);
        let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &bad).await;
        assert_eq!(
            r.responses[0].error_code, INVALID_CONFIG,
            "AlterConfigs v{v}"
        );
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let ops = [
            ("cleanup.policy", APPEND, Some("compact")),
            ("retention.ms", DELETE, None),
            ("max.message.bytes", SET, Some("2000")),
        ];
        let code = alter_incrementally(&mut c, v, "tuned", &ops).await;
        assert_eq!(code, 0, "IncrementalAlterConfigs v{v}");
        assert_eq!(
            describe(&mut c, "tuned", "cleanup.policy").await,
            (Some("delete,compact".into()), 1)
        );
        assert_eq!(
            describe(&mut c, "tuned", "retention.ms").await,
            (Some("604800000".into()), 5),
            "back to the default"
        );
        // Put cleanup.policy back for the next round.
        let undo = [("cleanup.policy", SUBTRACT, Some("compact"))];
        assert_eq!(alter_incrementally(&mut c, v, "tuned", &undo).await, 0);
    }
    // max.message.bytes = 2000 applies at once: a 3 KB batch is refused.
    let big = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s("tuned")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(200, now_ms(), None))),
                ]),
        ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &big).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );
    drop(c);
    broker.stop().await;
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        describe(&mut c, "tuned", "max.message.bytes").await,
        (Some("2000".into()), 1)
    );
    broker.stop().await;
}

#[tokio::test]
async fn compression_type_recompresses_what_producers_send() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "squeezed", &[("compression.type", "zstd")]).await;
    produce(&mut c, "squeezed", 1, now_ms()).await;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(s("squeezed")))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    let raw = r.responses[0].partitions[0].records.clone().unwrap();
    let h = sluice_storage::BatchHeader::parse(&raw).unwrap();
    h.validate_crc(&raw).unwrap();
    assert_eq!(
        h.compression(),
        4,
        "stored with zstd although sent uncompressed"
    );
    let sent = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch(10, 0, None))
        .unwrap()
        .records;
    let stored = kafka_protocol::records::RecordBatchDecoder::decode(&mut raw.clone())
        .unwrap()
        .records;
    assert_eq!(stored.len(), 10);
    for (a, b) in sent.iter().zip(&stored) {
        assert_eq!((&a.key, &a.value), (&b.key, &b.value));
    }
    broker.stop().await;
}

/// A v2 batch of `values`, keyed by `keys` (None: no key), uncompressed.
fn keyed_batch(keys: &[Option<&str>], value: &str) -> bytes::Bytes {
    use kafka_protocol::records::*;
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1,
            key: k.map(|k| bytes::Bytes::from(k.to_owned())),
            value: Some(bytes::Bytes::from(value.to_owned())),
            headers: Default::default(),
        })
        .collect();
    common::encode_v2(&records)
}

async fn produce_one(
    c: &mut Client,
    topic: &str,
    records: bytes::Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let mut r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
    r.responses.remove(0).partition_responses.remove(0)
}

#[tokio::test]
async fn keyless_records_on_a_compacted_topic_are_named_and_sizes_are_checked_as_sent() {
    const INVALID_RECORD: i16 = 87;
    const MESSAGE_TOO_LARGE: i16 = 10;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "compacted", &[("cleanup.policy", "compact")]).await;
    let p = produce_one(
        &mut c,
        "compacted",
        keyed_batch(&[Some("a"), None, Some("c"), None], "v"),
    )
    .await;
    assert_eq!(p.error_code, INVALID_RECORD);
    let named: Vec<(i32, String)> = p
        .record_errors
        .iter()
        .map(|e| {
            (
                e.batch_index,
                e.batch_index_error_message
                    .as_deref()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(named[0].1.contains("without key"), "{named:?}");
    let message = p.error_message.as_deref().unwrap_or("");
    assert!(message.contains("2 record errors"), "{message}");
    // Nothing was written: the next good batch lands at 0.
    let p = produce_one(&mut c, "compacted", keyed_batch(&[Some("a")], "v")).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    assert!(p.record_errors.is_empty() && p.error_message.is_none());

    // 3 KB as sent, far less once lz4 has compressed it: still too large.
    create(
        &mut c,
        "squeezed",
        &[("compression.type", "lz4"), ("max.message.bytes", "1000")],
    )
    .await;
    let big = "a".repeat(3000);
    let p = produce_one(&mut c, "squeezed", keyed_batch(&[Some("k")], &big)).await;
    assert_eq!(p.error_code, MESSAGE_TOO_LARGE);
    let p = produce_one(&mut c, "squeezed", keyed_batch(&[Some("k")], "small")).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    broker.stop().await;
}
