//! Bad input gets the right Kafka error code, or a closed connection where the
//! protocol leaves no other way, and the broker keeps serving everyone else.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Client, TestBroker, batch, decode_response};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

// The broker binary's allocator (see src/alloc.rs).
#[global_allocator]
static ALLOC: sluice::alloc::BrokerAlloc = sluice::alloc::BrokerAlloc;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// The broker still answers a well-formed request on a fresh connection.
async fn still_serving(broker: &TestBroker) {
    let mut c = broker.client().await;
    let r: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
}

async fn assert_closed(c: &mut Client, what: &str) {
    assert!(
        c.read_frame().await.is_none(),
        "{what}: connection should be closed"
    );
}

fn produce_req(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

async fn produce_error(c: &mut Client, topic: &str, records: Bytes, acks: i16) -> i16 {
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_req(topic, records, acks))
        .await;
    r.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn framing_errors_close_the_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request (length 0x47455420 > limit)",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("a negative length", (-1i32).to_be_bytes().to_vec()),
        ("a huge length", i32::MAX.to_be_bytes().to_vec()),
        (
            "a frame too short for a header",
            [0, 0, 0, 4, 0, 18, 0, 0].to_vec(),
        ),
        ("an unknown API key", {
            let mut f = vec![0, 0, 0, 10];
            f.extend_from_slice(&999i16.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0]);
            f
        }),
    ];
    for (what, bytes) in cases {
        let mut c = broker.client().await;
        c.send_raw(&bytes).await;
        assert_closed(&mut c, what).await;
        still_serving(&broker).await;
    }

    // An element count far beyond the frame: a Metadata v4 request claiming
    // 2^31-1 topics. The decoder sizes its Vec from that count before reading.
    let mut c = broker.client().await;
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(4);
    f.put_i32(9);
    f.put_i16(-1);
    f.put_i32(i32::MAX);
    f.put_i16(1);
    f.put_u8(b'x');
    let mut framed = BytesMut::new();
    framed.put_i32(f.len() as i32);
    framed.extend_from_slice(&f);
    c.send_raw(&framed).await;
    assert_closed(&mut c, "a lying array count").await;
    still_serving(&broker).await;

    // A frame cut short, then the client goes away.
    let mut c = broker.client().await;
    c.send_raw(&[0, 0, 1, 0, 0, 18, 0]).await;
    drop(c);
    still_serving(&broker).await;
    broker.stop().await;
}

#[tokio::test]
async fn unsupported_versions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;

    // ApiVersions at a version we do not know: error 35 in a v0 body with our ranges.
    let mut c = broker.client().await;
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(77);
    f.put_i16(-1); // null client id
    c.send_raw(&f).await;
    let mut resp = c.read_frame().await.expect("an answer");
    let r: ApiVersionsResponse = decode_response(&mut resp, 77, 0);
    assert_eq!(r.error_code, 35);
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );

    // Any other API at an unserved version: closed, as Kafka does.
    let mut c = broker.client().await;
    let (_, frame) = c.encode_request(ApiKey::Metadata, 12, &MetadataRequest::default());
    let mut bytes = frame.to_vec();
    bytes[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.send_raw(&bytes).await;
    assert_closed(&mut c, "Metadata v99").await;

    // A body that does not parse: closed.
    let mut c = broker.client().await;
    let (_, frame) = c.encode_request(ApiKey::Metadata, 4, &MetadataRequest::default());
    let mut cut = frame[..frame.len() - 1].to_vec();
    let len = (cut.len() - 4) as i32;
    cut[..4].copy_from_slice(&len.to_be_bytes());
    c.send_raw(&cut).await;
    assert_closed(&mut c, "truncated Metadata body").await;
    still_serving(&broker).await;
    broker.stop().await;
}

#[tokio::test]
async fn bad_batches_get_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.message_max_bytes = 2_000).await;
    let mut c = broker.client().await;
    // Auto-created by Metadata.
    let _: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("t"))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;

    let good = batch(3, 1, None);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce_error(&mut c, "t", Bytes::from(corrupt), 1).await,
        2,
        "CORRUPT_MESSAGE"
    );

    let mut magic1 = good.to_vec();
    magic1[16] = 1;
    assert_eq!(
        produce_error(&mut c, "t", Bytes::from(magic1), 1).await,
        87,
        "INVALID_RECORD"
    );

    let mut short = good.to_vec();
    short.truncate(30);
    assert_eq!(
        produce_error(&mut c, "t", Bytes::from(short), 1).await,
        2,
        "CORRUPT_MESSAGE"
    );

    let mut base = good.to_vec();
    base[7] = 5;
    assert_eq!(
        produce_error(&mut c, "t", Bytes::from(base), 1).await,
        87,
        "base offset must be 0"
    );

    assert_eq!(
        produce_error(&mut c, "t", batch(300, 1, None), 1).await,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce_error(&mut c, "t", good.clone(), 5).await,
        21,
        "INVALID_REQUIRED_ACKS"
    );
    // Nothing of that reached the log; a good batch still lands at offset 0.
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_req("t", good, -1))
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    broker.stop().await;
}

#[tokio::test]
async fn missing_topics_are_unknown_when_auto_creation_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.auto_create_topics_enable = false).await;
    let mut c = broker.client().await;
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("nope"))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;
    assert_eq!(md.topics[0].error_code, 3);
    assert_eq!(produce_error(&mut c, "nope", batch(1, 1, None), 1).await, 3);
    let f: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(10)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name("nope"))
                        .with_partitions(vec![FetchPartition::default().with_partition(0)]),
                ]),
        )
        .await;
    assert_eq!(f.responses[0].partitions[0].error_code, 3);
    // An unknown fetch session is refused, not silently treated as a full fetch.
    let f: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_session_id(1234)
                .with_session_epoch(3),
        )
        .await;
    assert_eq!(f.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    broker.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let mut all = BytesMut::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (id, frame) = if i % 2 == 0 {
            c.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        } else {
            c.encode_request(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            )
        };
        ids.push(id);
        all.extend_from_slice(&frame);
    }
    c.send_raw(&all).await;
    for id in ids {
        let resp = c.read_frame().await.expect("response");
        let got = i32::from_be_bytes(resp[..4].try_into().unwrap());
        assert_eq!(got, id, "responses come back in request order");
    }
    broker.stop().await;
}

/// Produce requests are appended as they are read and answered together
/// once flushed; acks=0 ones get no answer; a request of another kind waits
/// for the Produce requests before it, so it sees them acknowledged.
#[tokio::test]
async fn pipelined_produce_requests_are_appended_in_order_and_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let created = common::create_topic_with(&mut c, "piped", &[]).await;
    assert_eq!(created.topics[0].error_code, 0);
    let list_latest = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("piped"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
    let mut all = BytesMut::new();
    // (correlation id, what it is: records before it for a ListOffsets,
    // else the base offset its Produce must get)
    let mut expected = Vec::new();
    let mut written = 0i64;
    for i in 0..40 {
        if i % 10 == 9 {
            let (id, frame) = c.encode_request(ApiKey::ListOffsets, 7, &list_latest);
            expected.push((id, ApiKey::ListOffsets, written));
            all.extend_from_slice(&frame);
            continue;
        }
        let acks = if i == 4 { 0 } else { -1 };
        let (id, frame) = c.encode_request(
            ApiKey::Produce,
            9,
            &produce_req("piped", batch(3, 1, None), acks),
        );
        if acks != 0 {
            expected.push((id, ApiKey::Produce, written));
        }
        written += 3;
        all.extend_from_slice(&frame);
    }
    c.send_raw(&all).await;
    for (id, key, offset) in expected {
        let mut frame = c.read_frame().await.expect("response");
        let got = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(got, id, "responses come back in request order");
        if key == ApiKey::Produce {
            let r: ProduceResponse = decode_response(&mut frame, id, 9);
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, offset), "request {id}");
        } else {
            let r: ListOffsetsResponse = decode_response(&mut frame, id, 7);
            assert_eq!(
                r.topics[0].partitions[0].offset, offset,
                "a ListOffsets sees every Produce before it acknowledged"
            );
        }
    }
    broker.stop().await;
}

#[tokio::test]
async fn zstd_needs_produce_v7() {
    use kafka_protocol::records::{
        Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let records = RecordBatchDecoder::decode(&mut batch(3, 1, None))
        .unwrap()
        .records;
    let mut zstd = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut zstd,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Zstd,
        },
    )
    .unwrap();
    let zstd = zstd.freeze();
    let _: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("z"))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .await;
    for (v, want) in [(3, 76), (6, 76), (7, 0), (9, 0)] {
        let r: ProduceResponse = c
            .call(ApiKey::Produce, v, &produce_req("z", zstd.clone(), -1))
            .await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, want,
            "Produce v{v}: UNSUPPORTED_COMPRESSION_TYPE below v7"
        );
    }
    broker.stop().await;
}
