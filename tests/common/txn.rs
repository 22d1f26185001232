//! Helpers for the transaction tests: a transactional producer speaking the
//! wire protocol step by step, and read_committed fetches decoded the way a
//! client reads them.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sluice::handlers::SERVED;

use super::Client;

pub const NONE: i16 = 0;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
pub const PRODUCER_FENCED: i16 = 90;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

pub fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

/// A transactional batch of `n` records, as a transactional producer builds it.
pub fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize, tag: &str) -> Bytes {
    super::batch_of(n, 1_000, Some((pid, epoch, seq)), true, tag)
}

pub struct Txn<'a> {
    pub c: &'a mut Client,
    pub id: String,
    pub pid: i64,
    pub epoch: i16,
    pub seq: i32,
}

pub async fn create_topic(c: &mut Client, topic: &str, partitions: i32) {
    let r: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1),
                ])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(r.topics[0].error_code, NONE);
}

pub async fn init(
    c: &mut Client,
    version: i16,
    id: &str,
    timeout_ms: i32,
) -> InitProducerIdResponse {
    c.call(
        ApiKey::InitProducerId,
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await
}

impl<'a> Txn<'a> {
    pub async fn start(c: &'a mut Client, id: &str) -> Txn<'a> {
        let r = init(c, 4, id, 20_000).await;
        assert_eq!(r.error_code, NONE);
        Txn {
            c,
            id: id.to_owned(),
            pid: r.producer_id.0,
            epoch: r.producer_epoch,
            seq: 0,
        }
    }

    pub async fn add(&mut self, version: i16, topic: &str, partitions: Vec<i32>) -> Vec<i16> {
        let topics = vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions),
        ];
        let req = if version <= 3 {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(&self.id)))
                .with_v3_and_below_producer_id(ProducerId(self.pid))
                .with_v3_and_below_producer_epoch(self.epoch)
                .with_v3_and_below_topics(topics)
        } else {
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(ProducerId(self.pid))
                    .with_producer_epoch(self.epoch)
                    .with_topics(topics),
            ])
        };
        let r: AddPartitionsToTxnResponse =
            self.c.call(ApiKey::AddPartitionsToTxn, version, &req).await;
        let topics = if version <= 3 {
            r.results_by_topic_v3_and_below
        } else {
            r.results_by_transaction
                .into_iter()
                .next()
                .unwrap()
                .topic_results
        };
        topics[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect()
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        n: usize,
        tag: &str,
    ) -> (i16, i64) {
        let batch = txn_batch(self.pid, self.epoch, self.seq, n, tag);
        let (code, offset) = produce(self.c, Some(&self.id), topic, partition, batch).await;
        if code == NONE {
            self.seq += n as i32;
        }
        (code, offset)
    }

    pub async fn end(&mut self, version: i16, commit: bool) -> i16 {
        let r: EndTxnResponse = self
            .c
            .call(
                ApiKey::EndTxn,
                version,
                &EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(ProducerId(self.pid))
                    .with_producer_epoch(self.epoch)
                    .with_committed(commit),
            )
            .await;
        r.error_code
    }

    pub async fn add_offsets(&mut self, version: i16, group: &str) -> i16 {
        let r: AddOffsetsToTxnResponse = self
            .c
            .call(
                ApiKey::AddOffsetsToTxn,
                version,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_producer_id(ProducerId(self.pid))
                    .with_producer_epoch(self.epoch)
                    .with_group_id(GroupId(s(group))),
            )
            .await;
        r.error_code
    }

    pub async fn commit_offset(
        &mut self,
        version: i16,
        group: &str,
        topic: &str,
        offset: i64,
    ) -> i16 {
        let r: TxnOffsetCommitResponse = self
            .c
            .call(
                ApiKey::TxnOffsetCommit,
                version,
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(s(&self.id)))
                    .with_group_id(GroupId(s(group)))
                    .with_producer_id(ProducerId(self.pid))
                    .with_producer_epoch(self.epoch)
                    .with_generation_id(-1)
                    .with_member_id(s(""))
                    .with_group_instance_id(None)
                    .with_topics(vec![
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(topic)))
                            .with_partitions(vec![
                                TxnOffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(offset)
                                    .with_committed_metadata(Some(s("m"))),
                            ]),
                    ]),
            )
            .await;
        r.topics[0].partitions[0].error_code
    }
}

pub async fn produce(
    c: &mut Client,
    txn: Option<&str>,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64) {
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &ProduceRequest::default()
                .with_transactional_id(txn.map(|t| TransactionalId(s(t))))
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(s(topic)))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(batch)),
                        ]),
                ]),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// (values read, high watermark, last stable offset, aborted transactions)
/// of a fetch from offset 0.
pub async fn fetch(
    c: &mut Client,
    topic: &str,
    partition: i32,
    read_committed: bool,
) -> (Vec<String>, i64, i64, Vec<(i64, i64)>) {
    let (values, hw, lso, aborted, _) = fetch_at(c, topic, partition, 0, read_committed).await;
    (values, hw, lso, aborted)
}

/// A fetch from `offset`: as [`fetch`], and the offset after the last
/// record returned.
pub async fn fetch_at(
    c: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
    read_committed: bool,
) -> (Vec<String>, i64, i64, Vec<(i64, i64)>, i64) {
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            11,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_isolation_level(if read_committed { 1 } else { 0 })
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(TopicName(s(topic)))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        )
        .await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE);
    let aborted: Vec<(i64, i64)> = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    // What a read_committed client does with the list: from an aborted
    // transaction's first offset its producer's records are dropped, up to
    // its ABORT marker.
    let mut pending = aborted.clone();
    let mut skipping = std::collections::HashSet::new();
    let mut records = p.records.clone().unwrap_or_default();
    let mut values = Vec::new();
    let mut next = offset;
    if !records.is_empty() {
        for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
            for rec in set.records {
                next = next.max(rec.offset + 1);
                let pid = rec.producer_id;
                if let Some(i) = pending
                    .iter()
                    .position(|&(p, first)| p == pid && first <= rec.offset)
                {
                    pending.remove(i);
                    skipping.insert(pid);
                }
                if rec.control {
                    let abort = rec
                        .key
                        .as_deref()
                        .is_some_and(|k| k.len() >= 4 && k[3] == 0);
                    if abort {
                        skipping.remove(&pid);
                    }
                    continue;
                }
                if rec.transactional && skipping.contains(&pid) {
                    continue;
                }
                values.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    (
        values,
        p.high_watermark,
        p.last_stable_offset,
        aborted,
        next,
    )
}

pub async fn list_offset(c: &mut Client, topic: &str, isolation: i8) -> i64 {
    let r: ListOffsetsResponse = c
        .call(
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation)
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ]),
                ]),
        )
        .await;
    r.topics[0].partitions[0].offset
}

pub async fn describe(
    c: &mut Client,
    id: &str,
) -> describe_transactions_response::TransactionState {
    let r: DescribeTransactionsResponse = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(id))]),
        )
        .await;
    r.transaction_states.into_iter().next().unwrap()
}

pub async fn offset_fetch(c: &mut Client, group: &str, topic: &str) -> (i16, i64) {
    let r: OffsetFetchResponse = c
        .call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_require_stable(true)
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partition_indexes(vec![0]),
                ])),
        )
        .await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}
