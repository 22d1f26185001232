//! Produce → fetch → list offsets → idempotence → restart, over the wire against
//! the real server in-process.

mod common;

use bytes::Bytes;
use common::{TestBroker, batch};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

async fn create(c: &mut common::Client, topic: &str, partitions: i32) -> Uuid {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
    assert_eq!(resp.topics[0].num_partitions, partitions);
    resp.topics[0].topic_id
}

async fn produce(
    c: &mut common::Client,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
    resp.responses[0].partition_responses[0].clone()
}

async fn fetch(
    c: &mut common::Client,
    version: i16,
    topic: &str,
    id: Uuid,
    partition: i32,
    offset: i64,
) -> fetch_response::PartitionData {
    let mut ft = FetchTopic::default().with_partitions(vec![
        FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20),
    ]);
    if version >= 13 {
        ft.topic_id = id;
    } else {
        ft.topic = name(topic);
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![ft]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, version, &req).await;
    assert_eq!(resp.error_code, 0);
    if version >= 13 {
        assert_eq!(resp.responses[0].topic_id, id);
    }
    resp.responses[0].partitions[0].clone()
}

fn decode_all(mut records: Bytes) -> Vec<kafka_protocol::records::Record> {
    let mut out = Vec::new();
    while !records.is_empty() {
        out.extend(RecordBatchDecoder::decode(&mut records).unwrap().records);
    }
    out
}

#[tokio::test]
async fn produce_fetch_and_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let id = create(&mut c, "orders", 3).await;

    let first = produce(&mut c, "orders", 1, batch(10, 1_000, None), -1).await;
    assert_eq!(
        (first.error_code, first.base_offset),
        (0, 0),
        "{:?}",
        first.error_message
    );
    let second = produce(&mut c, "orders", 1, batch(5, 2_000, None), 1).await;
    assert_eq!((second.error_code, second.base_offset), (0, 10));

    for version in [4, 12, 13, 16] {
        // acks=1 data becomes visible once flushed; poll until it is.
        let mut records = Vec::new();
        let deadline = std::time::Instant::now() + common::TIMEOUT;
        while std::time::Instant::now() < deadline {
            let pd = fetch(&mut c, version, "orders", id, 1, 0).await;
            assert_eq!(pd.error_code, 0);
            records = decode_all(pd.records.unwrap_or_default());
            if records.len() == 15 {
                assert_eq!(pd.high_watermark, 15);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(records.len(), 15, "fetch v{version}");
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..15).collect::<Vec<_>>());
        assert_eq!(records[3].key.as_deref(), Some(&b"key-3"[..]));
        assert_eq!(records[12].value.as_deref(), Some(&b"value-2"[..]));
        assert_eq!(records[12].timestamp, 2_002);
    }

    // Offset past the end is out of range; the end itself is an empty read.
    let pd = fetch(&mut c, 12, "orders", id, 1, 99).await;
    assert_eq!(pd.error_code, 1);
    let pd = fetch(&mut c, 12, "orders", id, 1, 15).await;
    assert_eq!(pd.error_code, 0);
    assert!(pd.records.unwrap_or_default().is_empty());

    let list = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("orders"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(1)
                            .with_timestamp(ts),
                    ]),
            ])
    };
    for (ts, want_offset, want_ts) in [
        (-2, 0, -1),
        (-1, 15, -1),
        (1_005, 5, 1_005),
        (2_000, 10, 2_000),
        (-3, 14, 2_004),
        (9_999, -1, -1),
    ] {
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &list(ts)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(
            (p.offset, p.timestamp),
            (want_offset, want_ts),
            "query {ts}"
        );
    }
    broker.stop().await;
}

/// DescribeProducers of one topic: per partition (error code, or the
/// partition index when there is none, and the producers as (id, epoch,
/// last sequence, last timestamp, coordinator epoch, txn start offset)).
async fn describe_producers(
    c: &mut common::Client,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, Vec<(i64, i32, i32, i64, i32, i64)>)> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let req = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(name(topic))
            .with_partition_indexes(partitions.to_vec()),
    ]);
    let r: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &req).await;
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let producers: Vec<_> = p
                .active_producers
                .iter()
                .map(|a| {
                    (
                        a.producer_id.0,
                        a.producer_epoch,
                        a.last_sequence,
                        a.last_timestamp,
                        a.coordinator_epoch,
                        a.current_txn_start_offset,
                    )
                })
                .collect();
            if p.error_code == 0 {
                (p.partition_index, producers)
            } else {
                (i32::from(p.error_code), producers)
            }
        })
        .collect()
}

#[tokio::test]
async fn idempotent_retries_are_not_written_twice_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "payments", 1).await;
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;

    // Timestamps of now: producer.id.expiration.ms counts from the last
    // batch's timestamp, as in Kafka, so a 1970 batch would expire at once.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let b0 = batch(4, t0 + 10, Some((pid, 0, 0)));
    let b1 = batch(4, t0 + 20, Some((pid, 0, 4)));
    assert_eq!(
        produce(&mut c, "payments", 0, b0.clone(), -1)
            .await
            .base_offset,
        0
    );
    assert_eq!(
        produce(&mut c, "payments", 0, b1.clone(), -1)
            .await
            .base_offset,
        4
    );
    // A retry of the first batch gets its original offset back.
    let retry = produce(&mut c, "payments", 0, b0.clone(), -1).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    // A gap is refused.
    let gap = produce(
        &mut c,
        "payments",
        0,
        batch(1, t0 + 30, Some((pid, 0, 20))),
        -1,
    )
    .await;
    assert_eq!(gap.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    // DescribeProducers: the last batch's sequence and max timestamp (its
    // records are at 20..23); an unknown partition is named.
    let described = describe_producers(&mut c, "payments", &[0, 5]).await;
    let expected = (pid, 0, 7, t0 + 23, -1, -1);
    assert_eq!(described, vec![(0, vec![expected]), (3, vec![])]);
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        describe_producers(&mut c, "payments", &[0]).await,
        vec![(0, vec![expected])],
        "producer state, last timestamp included, rebuilt at restart"
    );
    let unknown = describe_producers(&mut c, "no-such-topic", &[0]).await;
    assert_eq!(unknown, vec![(3, vec![])]);
    let retry = produce(&mut c, "payments", 0, b1, -1).await;
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, 4),
        "state survives restart"
    );
    let next = produce(
        &mut c,
        "payments",
        0,
        batch(2, t0 + 40, Some((pid, 0, 8))),
        -1,
    )
    .await;
    assert_eq!((next.error_code, next.base_offset), (0, 8));
    // A fresh producer id is never reused across restarts.
    let init2: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert!(init2.producer_id.0 > pid);
    broker.stop().await;
}

#[tokio::test]
async fn a_producer_idle_past_its_expiration_is_forgotten_and_may_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create(&mut c, "events", 1).await;
    // Batches from 1970: idle for longer than producer.id.expiration.ms
    // (one day) by their timestamps, which is what Kafka counts from.
    let pid = 4_242;
    let first = produce(&mut c, "events", 0, batch(3, 10, Some((pid, 0, 0))), -1).await;
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    assert_eq!(
        describe_producers(&mut c, "events", &[0]).await[0].1.len(),
        1
    );
    broker.stop().await;

    // The expiry pass at startup forgets it.
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let mut left = describe_producers(&mut c, "events", &[0]).await;
    for _ in 0..50 {
        if left[0].1.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        left = describe_producers(&mut c, "events", &[0]).await;
    }
    assert_eq!(left, vec![(0, vec![])], "expired at startup");
    // A producer with no state may go on at its next sequence (Kafka's
    // rule): not OUT_OF_ORDER_SEQUENCE_NUMBER.
    let next = produce(&mut c, "events", 0, batch(2, 20, Some((pid, 0, 3))), -1).await;
    assert_eq!((next.error_code, next.base_offset), (0, 3));
    broker.stop().await;
}

#[tokio::test]
async fn topics_and_metadata_persist_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let id = create(&mut c, "audit", 4).await;
    // Auto-creation through Metadata.
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(name("auto.created"))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 1);
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let mut got: Vec<(String, usize, Uuid)> = md
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().unwrap().0.to_string(),
                t.partitions.len(),
                t.topic_id,
            )
        })
        .collect();
    got.sort();
    assert_eq!(got[0], ("audit".to_string(), 4, id));
    assert_eq!(got[1].0, "auto.created");
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].port, broker.addr.port() as i32);

    // By id, with an empty name next to it (as the Java admin client asks).
    let unknown = Uuid::new_v4();
    let by_id = |id: Uuid| {
        metadata_request::MetadataRequestTopic::default()
            .with_topic_id(id)
            .with_name(Some(name("")))
    };
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![by_id(id), by_id(unknown)])),
        )
        .await;
    let t = &md.topics[0];
    assert_eq!((t.error_code, t.topic_id), (0, id));
    assert_eq!(t.name.as_ref().map(|n| n.0.as_str()), Some("audit"));
    assert_eq!(t.partitions.len(), 4);
    let t = &md.topics[1];
    const UNKNOWN_TOPIC_ID: i16 = 100;
    assert_eq!((t.error_code, t.topic_id), (UNKNOWN_TOPIC_ID, unknown));
    assert_eq!(t.name, None);
    broker.stop().await;
}

#[tokio::test]
async fn log_append_time_topics_stamp_batches_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name("stamped"))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("message.timestamp.type"))
                        .with_value(Some(StrBytes::from_static_str("LogAppendTime"))),
                ]),
        ])
        .with_timeout_ms(5000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(resp.topics[0].error_code, 0);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let p = produce(&mut c, "stamped", 0, batch(3, 42, None), -1).await;
    assert_eq!(p.error_code, 0);
    assert!(
        p.log_append_time_ms >= before,
        "the broker reports the append time"
    );
    let pd = fetch(&mut c, 12, "stamped", Uuid::nil(), 0, 0).await;
    let raw = pd.records.unwrap();
    // Clients read a LogAppendTime batch's max timestamp as every record's time.
    let header = sluice_storage::BatchHeader::parse(&raw).unwrap();
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, p.log_append_time_ms);
    header.validate_crc(&raw).unwrap();
    let records = decode_all(raw);
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(
            r.timestamp_type,
            kafka_protocol::records::TimestampType::LogAppend
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.max_connections = 2).await;
    let mut first = broker.client().await;
    let mut second = broker.client().await;
    for c in [&mut first, &mut second] {
        let r: ApiVersionsResponse = c
            .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        assert_eq!(r.error_code, 0);
    }
    // The third connection is not served while two are open...
    let mut third = broker.client().await;
    let (id, frame) = third.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    third.send_raw(&frame).await;
    let mut len = [0u8; 4];
    use tokio::io::AsyncReadExt;
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        third.stream.read_exact(&mut len),
    )
    .await;
    assert!(
        early.is_err(),
        "a third connection was served past max.connections = 2"
    );
    // ...and is served as soon as one closes.
    drop(first);
    let mut rest = vec![0u8; 0];
    tokio::time::timeout(common::TIMEOUT, third.stream.read_exact(&mut len))
        .await
        .expect("served once a slot is free")
        .unwrap();
    rest.resize(i32::from_be_bytes(len) as usize, 0);
    third.stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(i32::from_be_bytes(rest[..4].try_into().unwrap()), id);
    drop(second);
    broker.stop().await;
}

#[tokio::test]
async fn leader_epochs_on_one_broker() {
    const UNKNOWN_LEADER_EPOCH: i16 = 75;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let id = create(&mut c, "epochs", 1).await;
    for _ in 0..3 {
        assert_eq!(
            produce(&mut c, "epochs", 0, batch(4, 1, None), -1)
                .await
                .error_code,
            0
        );
    }
    let ask = |t: &str, current: i32, epoch: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name(t))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ])
    };
    for v in 2..=4 {
        let answer = |r: OffsetForLeaderEpochResponse| {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.leader_epoch, p.end_offset)
        };
        // Epoch 0 is the one epoch of a single broker: it ends at the log end.
        let r = c
            .call(ApiKey::OffsetForLeaderEpoch, v, &ask("epochs", 0, 0))
            .await;
        assert_eq!(answer(r), (0, 0, 12), "v{v}");
        let r = c
            .call(ApiKey::OffsetForLeaderEpoch, v, &ask("epochs", -1, 3))
            .await;
        assert_eq!(answer(r), (0, -1, -1), "v{v}: a future epoch is undefined");
        let r = c
            .call(ApiKey::OffsetForLeaderEpoch, v, &ask("epochs", 2, 0))
            .await;
        assert_eq!(answer(r).0, UNKNOWN_LEADER_EPOCH, "v{v}");
        let r = c
            .call(ApiKey::OffsetForLeaderEpoch, v, &ask("nope", -1, 0))
            .await;
        assert_eq!(answer(r).0, UNKNOWN_TOPIC_OR_PARTITION, "v{v}");
    }
    // Fetch and ListOffsets check the client's current leader epoch too.
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 13, &req).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        UNKNOWN_LEADER_EPOCH
    );
    let list = |current: i32, ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("epochs"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_current_leader_epoch(current)
                            .with_timestamp(ts),
                    ]),
            ])
    };
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &list(4, -1)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, UNKNOWN_LEADER_EPOCH);
    for ts in [-1, -2, 1] {
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &list(0, ts)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_epoch), (0, 0), "timestamp {ts}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn describe_topic_partitions_pages_with_a_cursor() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let a = create(&mut c, "pages-a", 3).await;
    create(&mut c, "pages-b", 2).await;
    let ask = |cursor: Option<(&str, i32)>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                ["pages-b", "pages-a", "pages-none"]
                    .iter()
                    .map(|t| TopicRequest::default().with_name(name(t)))
                    .collect(),
            )
            .with_response_partition_limit(2)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            }))
    };
    let page = |r: &DescribeTopicPartitionsResponse| {
        let got: Vec<(String, i16, Vec<i32>)> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().unwrap().0.to_string(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let next = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (got, next)
    };
    let s = |v: &str| v.to_string();
    let r: DescribeTopicPartitionsResponse =
        c.call(ApiKey::DescribeTopicPartitions, 0, &ask(None)).await;
    assert_eq!(
        page(&r),
        (vec![(s("pages-a"), 0, vec![0, 1])], Some((s("pages-a"), 2)))
    );
    assert_eq!(r.topics[0].topic_id, a);
    assert_eq!(r.topics[0].partitions[0].leader_id.0, 1);
    let r: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &ask(Some(("pages-a", 2))),
        )
        .await;
    assert_eq!(
        page(&r),
        (
            vec![(s("pages-a"), 0, vec![2]), (s("pages-b"), 0, vec![0])],
            Some((s("pages-b"), 1))
        )
    );
    let r: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &ask(Some(("pages-b", 1))),
        )
        .await;
    assert_eq!(
        page(&r),
        (
            vec![(s("pages-b"), 0, vec![1]), (s("pages-none"), 3, vec![])],
            None
        )
    );
    // A cursor naming a topic not asked for is refused.
    let r: DescribeTopicPartitionsResponse = c
        .call(ApiKey::DescribeTopicPartitions, 0, &ask(Some(("other", 0))))
        .await;
    assert!(
        r.topics.iter().all(|t| t.error_code == 42),
        "INVALID_REQUEST"
    );
    broker.stop().await;
}

/// The value of a counter in the broker's metrics text, summed over labels.
fn metric_total(broker: &TestBroker, name: &str) -> u64 {
    broker
        .broker
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Large record sets are sent straight from the segment files (sendfile):
/// what a consumer reads back, at every Fetch version and across segment
/// boundaries, is exactly what was produced.
#[tokio::test]
async fn large_fetches_sent_from_the_segment_files_return_the_produced_records() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: reads end at segment boundaries and go on in the next.
    let broker = TestBroker::start_with(dir.path(), |c| c.log_segment_bytes = 1 << 20).await;
    let mut c = broker.client().await;
    let id = create(&mut c, "big", 1).await;
    const SIZE: usize = 1000;
    const PER_BATCH: usize = 100;
    const BATCHES: i64 = 40;
    for b in 0..BATCHES {
        let first = b * PER_BATCH as i64;
        let r = produce(
            &mut c,
            "big",
            0,
            common::large_batch(first, PER_BATCH, SIZE),
            -1,
        )
        .await;
        assert_eq!((r.error_code, r.base_offset), (0, first));
    }
    let total = BATCHES * PER_BATCH as i64;
    for version in [4, 12, 13, 16] {
        let mut next = 0;
        while next < total {
            let pd = fetch(&mut c, version, "big", id, 0, next).await;
            assert_eq!((pd.error_code, pd.high_watermark), (0, total), "v{version}");
            let records = decode_all(pd.records.unwrap_or_default());
            assert!(!records.is_empty(), "v{version} at {next}");
            for r in &records {
                assert_eq!(r.offset, next, "v{version}");
                assert_eq!(r.key.as_deref(), Some(format!("key-{next}").as_bytes()));
                assert_eq!(
                    r.value,
                    Some(common::large_value(next, SIZE)),
                    "v{version} at {next}"
                );
                next += 1;
            }
        }
    }
    // Four passes over ~4 MB: most of it went from the files.
    let from_files = metric_total(&broker, "sluice_network_sent_from_file_bytes_total");
    assert!(from_files > 12 << 20, "{from_files} bytes sent from files");
    broker.stop().await;
}
