//! An in-process broker and a minimal Kafka client for integration tests.
//!
//! The broker is the real `server::run` on a fresh loopback port and its own data
//! folder; the client speaks the wire protocol with kafka-protocol's encoders, so
//! these tests exercise the same bytes a real client sends.

#![allow(dead_code)]

pub mod pki;
pub mod txn;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice::broker::Broker;
use sluice::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestBroker {
    pub addr: SocketAddr,
    pub broker: std::sync::Arc<Broker>,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestBroker {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, |_| {}).await
    }

    pub async fn start_with(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config {
            listen: addr,
            data_dir: data_dir.to_owned(),
            ..Config::default()
        };
        tweak(&mut config);
        let broker = Broker::open(config, sluice::handlers::version_table()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sluice::server::run(listener, broker.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            broker,
            data_dir: data_dir.to_owned(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop: connections closed, logs flushed and marked clean.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("broker stops in time")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        Self {
            stream,
            next_correlation: 1,
        }
    }

    pub fn encode_request<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> (i32, Bytes) {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Req::header_version(version))
            .unwrap();
        req.encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encoding {key:?} v{version}: {e}"));
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        (correlation, framed.freeze())
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no response within {TIMEOUT:?}"),
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        tokio::time::timeout(TIMEOUT, self.stream.read_exact(&mut body))
            .await
            .unwrap()
            .ok()?;
        Some(Bytes::from(body))
    }

    pub async fn call<Req, Resp>(&mut self, key: ApiKey, version: i16, req: &Req) -> Resp
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let (correlation, frame) = self.encode_request(key, version, req);
        self.send_raw(&frame).await;
        let mut resp = self.read_frame().await.expect("broker answered");
        decode_response::<Resp>(&mut resp, correlation, version)
    }
}

pub fn decode_response<Resp: Decodable + HeaderVersion>(
    resp: &mut Bytes,
    correlation: i32,
    version: i16,
) -> Resp {
    let header = ResponseHeader::decode(resp, Resp::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation);
    let out = Resp::decode(resp, version).unwrap();
    assert_eq!(resp.remaining(), 0, "response fully consumed");
    out
}

/// A v2 record batch of `n` records whose values are `size` bytes, each
/// byte depending on the record's offset (`first` + i) and place.
pub fn large_batch(first: i64, n: usize, size: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("key-{}", first + i as i64))),
            value: Some(large_value(first + i as i64, size)),
            headers: Default::default(),
        })
        .collect();
    encode_v2(&records)
}

/// `records` as one uncompressed v2 batch.
pub fn encode_v2(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// The value [`large_batch`] gives the record at `offset`.
pub fn large_value(offset: i64, size: usize) -> Bytes {
    (0..size)
        .map(|j| (offset as usize * 31 + j * 7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A v2 record batch with `n` records `key-i` / `value-i`, as a producer builds it.
pub fn batch(n: usize, first_timestamp: i64, producer: Option<(i64, i16, i32)>) -> Bytes {
    batch_of(n, first_timestamp, producer, false, "value-")
}

/// [`batch`], transactional or not, the values `{prefix}{i}`.
pub fn batch_of(
    n: usize,
    first_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
    prefix: &str,
) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes, so
            // non-idempotent records count up from -1 too (base sequence -1).
            sequence: if seq < 0 {
                i as i32 - 1
            } else {
                seq + i as i32
            },
            timestamp: first_timestamp + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("{prefix}{i}"))),
            headers: Default::default(),
        })
        .collect();
    encode_v2(&records)
}

/// CreateTopics v7 of one single-partition topic with config overrides.
pub async fn create_topic_with(
    c: &mut Client,
    topic: &str,
    configs: &[(&str, &str)],
) -> kafka_protocol::messages::CreateTopicsResponse {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                ),
        ])
        .with_timeout_ms(5000);
    c.call(ApiKey::CreateTopics, 7, &req).await
}
