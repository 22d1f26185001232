//! Transactions over the wire: every served version of the transaction APIs,
//! the bad input the issue names (each answered with Kafka's code and the
//! log left unchanged), a transaction aborted by its timeout, and a
//! coordinator restarted with a transaction and its offsets still open.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sluice::handlers::SERVED;

const NONE: i16 = 0;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

/// A transactional batch of `n` records, as a transactional producer builds it.
fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize, tag: &str) -> Bytes {
    common::batch_of(n, 1_000, Some((pid, epoch, seq)), true, tag)
}

struct Txn<'a> {
    c: &'a mut Client,
    id: String,
    pid: i64,
    epoch: i16,
    seq: i32,
}

async fn create_topic(c: &mut Client, topic: &str, partitions: i32) {
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

async fn init(c: &mut Client, version: i16, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
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
    async fn start(c: &'a mut Client, id: &str) -> Txn<'a> {
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

    async fn add(&mut self, version: i16, topic: &str, partitions: Vec<i32>) -> Vec<i16> {
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

    async fn produce(&mut self, topic: &str, partition: i32, n: usize, tag: &str) -> (i16, i64) {
        let batch = txn_batch(self.pid, self.epoch, self.seq, n, tag);
        let (code, offset) = produce(self.c, Some(&self.id), topic, partition, batch).await;
        if code == NONE {
            self.seq += n as i32;
        }
        (code, offset)
    }

    async fn end(&mut self, version: i16, commit: bool) -> i16 {
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

    async fn add_offsets(&mut self, version: i16, group: &str) -> i16 {
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

    async fn commit_offset(&mut self, version: i16, group: &str, topic: &str, offset: i64) -> i16 {
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

async fn produce(
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
async fn fetch(
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
async fn fetch_at(
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

async fn list_offset(c: &mut Client, topic: &str, isolation: i8) -> i64 {
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

async fn describe(c: &mut Client, id: &str) -> describe_transactions_response::TransactionState {
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

async fn offset_fetch(c: &mut Client, group: &str, topic: &str) -> (i16, i64) {
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

#[tokio::test]
async fn every_served_version_of_the_transaction_apis_works() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;

    for v in range(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("tx")])
        } else {
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_key(s("tx"))
        };
        if v == 0 {
            continue; // v0 has no key type: groups only.
        }
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req).await;
        let (code, port) = if v >= 4 {
            (r.coordinators[0].error_code, r.coordinators[0].port)
        } else {
            (r.error_code, r.port)
        };
        assert_eq!(
            (code, port),
            (NONE, broker.addr.port() as i32),
            "FindCoordinator v{v}"
        );
    }

    // Each InitProducerId version fences the one before with a new epoch.
    let mut last_epoch = -1;
    for v in range(ApiKey::InitProducerId) {
        let r = init(&mut c, v, "tx-init", 60_000).await;
        assert_eq!(r.error_code, NONE, "InitProducerId v{v}");
        assert_eq!(r.producer_epoch, last_epoch + 1, "InitProducerId v{v}");
        last_epoch = r.producer_epoch;
    }

    let mut offset_versions = range(ApiKey::AddOffsetsToTxn).cycle();
    let mut commit_versions = range(ApiKey::TxnOffsetCommit).cycle();
    let mut end_versions = range(ApiKey::EndTxn).cycle();
    let mut expected_values = Vec::new();
    for v in range(ApiKey::AddPartitionsToTxn) {
        let mut t = Txn::start(&mut c, &format!("tx-{v}")).await;
        assert_eq!(
            t.add(v, "t", vec![0]).await,
            vec![NONE],
            "AddPartitionsToTxn v{v}"
        );
        if v >= 4 {
            // The broker-to-broker form: verify_only says what is in.
            let r: AddPartitionsToTxnResponse =
                t.c.call(
                    ApiKey::AddPartitionsToTxn,
                    v,
                    &AddPartitionsToTxnRequest::default().with_transactions(vec![
                        AddPartitionsToTxnTransaction::default()
                            .with_transactional_id(TransactionalId(s(&t.id)))
                            .with_producer_id(ProducerId(t.pid))
                            .with_producer_epoch(t.epoch)
                            .with_verify_only(true)
                            .with_topics(vec![
                                AddPartitionsToTxnTopic::default()
                                    .with_name(TopicName(s("t")))
                                    .with_partitions(vec![0]),
                            ]),
                    ]),
                )
                .await;
            assert_eq!(
                r.results_by_transaction[0].topic_results[0].results_by_partition[0]
                    .partition_error_code,
                NONE
            );
        }
        let (code, _) = t.produce("t", 0, 2, &format!("v{v}-")).await;
        assert_eq!(
            code, NONE,
            "transactional produce under AddPartitionsToTxn v{v}"
        );
        let ov = offset_versions.next().unwrap();
        assert_eq!(t.add_offsets(ov, "g").await, NONE, "AddOffsetsToTxn v{ov}");
        let cv = commit_versions.next().unwrap();
        assert_eq!(
            t.commit_offset(cv, "g", "t", 7).await,
            NONE,
            "TxnOffsetCommit v{cv}"
        );
        let ev = end_versions.next().unwrap();
        // Odd versions abort, even ones commit.
        let commit = v % 2 == 0;
        assert_eq!(t.end(ev, commit).await, NONE, "EndTxn v{ev}");
        if commit {
            expected_values.extend([format!("v{v}-0"), format!("v{v}-1")]);
        }
    }
    // Versions of EndTxn, AddOffsetsToTxn and TxnOffsetCommit not reached above.
    for v in range(ApiKey::EndTxn) {
        let mut t = Txn::start(&mut c, &format!("end-{v}")).await;
        assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
        assert_eq!(t.add_offsets(v.min(4), "g2").await, NONE);
        assert_eq!(t.commit_offset(v.min(4), "g2", "t", v as i64).await, NONE);
        assert_eq!(t.end(v, true).await, NONE, "EndTxn v{v}");
    }

    let (values, hw, lso, aborted) = fetch(&mut c, "t", 0, true).await;
    assert_eq!(values, expected_values);
    assert_eq!(lso, hw, "nothing open");
    assert_eq!(aborted.len(), 3, "the aborted transactions of v1, v3, v5");
    let (all, _, _, _) = fetch(&mut c, "t", 0, false).await;
    assert_eq!(
        all.len(),
        12,
        "read_uncommitted reads the aborted records too"
    );
    assert_eq!(list_offset(&mut c, "t", 1).await, hw);

    // The offsets of the committed transactions count, those aborted not.
    let (code, offset) = offset_fetch(&mut c, "g2", "t").await;
    let last = *range(ApiKey::EndTxn).end() as i64;
    assert_eq!((code, offset), (NONE, last));

    for v in range(ApiKey::WriteTxnMarkers) {
        // A marker for a producer with nothing open here writes nothing.
        let before = list_offset(&mut c, "t", 0).await;
        let r: WriteTxnMarkersResponse = c
            .call(
                ApiKey::WriteTxnMarkers,
                v,
                &WriteTxnMarkersRequest::default().with_markers(vec![
                    WritableTxnMarker::default()
                        .with_producer_id(ProducerId(987_654))
                        .with_producer_epoch(0)
                        .with_transaction_result(true)
                        .with_coordinator_epoch(0)
                        .with_topics(vec![
                            WritableTxnMarkerTopic::default()
                                .with_name(TopicName(s("t")))
                                .with_partition_indexes(vec![0, 9]),
                        ]),
                ]),
            )
            .await;
        let parts = &r.markers[0].topics[0].partitions;
        assert_eq!(parts[0].error_code, NONE, "WriteTxnMarkers v{v}");
        assert_eq!(parts[1].error_code, 3, "unknown partition");
        assert_eq!(list_offset(&mut c, "t", 0).await, before, "log unchanged");
    }

    let d = describe(&mut c, "tx-0").await;
    assert_eq!(d.error_code, NONE);
    assert_eq!(d.transaction_state.as_str(), "CompleteCommit");
    assert_eq!(d.transaction_timeout_ms, 20_000);
    let d = describe(&mut c, "tx-1").await;
    assert_eq!(d.transaction_state.as_str(), "CompleteAbort");
    assert_eq!(
        describe(&mut c, "nobody").await.error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );

    for v in range(ApiKey::ListTransactions) {
        let mut req = ListTransactionsRequest::default()
            .with_state_filters(vec![s("CompleteAbort"), s("Bogus")])
            .with_duration_filter(-1);
        if v >= 2 {
            req = req.with_transactional_id_pattern(Some(s("tx-[0-9]")));
        }
        let r: ListTransactionsResponse = c.call(ApiKey::ListTransactions, v, &req).await;
        assert_eq!(r.error_code, NONE);
        assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
        let mut ids: Vec<String> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["tx-1", "tx-3", "tx-5"], "ListTransactions v{v}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn bad_transactional_input_gets_kafkas_codes_and_leaves_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        TestBroker::start_with(dir.path(), |c| c.transaction_max_timeout_ms = 30_000).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 2).await;

    // transaction.timeout.ms above transaction.max.timeout.ms.
    let r = init(&mut c, 4, "slow", 60_000).await;
    assert_eq!(r.error_code, INVALID_TRANSACTION_TIMEOUT);

    let mut t = Txn::start(&mut c, "tx").await;
    // EndTxn without a transaction.
    assert_eq!(t.end(3, true).await, INVALID_TXN_STATE);
    // A transactional produce to a partition not added (KIP-890 part 1).
    assert_eq!(t.produce("t", 0, 1, "x").await.0, INVALID_TXN_STATE);
    assert_eq!(list_offset(t.c, "t", 0).await, 0, "nothing written");
    // Added to partition 0 only: partition 1 is still refused.
    assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
    assert_eq!(t.produce("t", 1, 1, "x").await.0, INVALID_TXN_STATE);
    // Unknown partitions: nothing added, the others not attempted.
    assert_eq!(t.add(3, "t", vec![1, 5]).await, vec![55, 3]);
    // TxnOffsetCommit for a group the transaction did not add.
    assert_eq!(t.commit_offset(3, "g", "t", 1).await, INVALID_TXN_STATE);
    // Transactional records without a transactional id.
    let batch = txn_batch(t.pid, t.epoch, 0, 1, "x");
    assert_eq!(
        produce(t.c, None, "t", 0, batch).await.0,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(list_offset(t.c, "t", 0).await, 0, "nothing written");
    assert_eq!(t.produce("t", 0, 2, "ok").await, (NONE, 0));

    // A second incarnation fences the first: its stale epoch is refused
    // (PRODUCER_FENCED from v2, INVALID_PRODUCER_EPOCH before), its open
    // transaction aborted.
    let (stale_pid, stale_epoch) = (t.pid, t.epoch);
    let mut c2 = broker.client().await;
    let t2 = Txn::start(&mut c2, "tx").await;
    assert_eq!(t2.pid, stale_pid);
    assert_eq!(t2.epoch, stale_epoch + 2, "one bump to abort, one to start");
    assert_eq!(t.add(3, "t", vec![1]).await, vec![PRODUCER_FENCED]);
    assert_eq!(t.add(1, "t", vec![1]).await, vec![INVALID_PRODUCER_EPOCH]);
    assert_eq!(t.end(2, true).await, PRODUCER_FENCED);
    assert_eq!(t.end(1, true).await, INVALID_PRODUCER_EPOCH);
    let before = list_offset(t.c, "t", 0).await;
    assert_eq!(
        t.produce("t", 0, 1, "zombie").await.0,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(list_offset(t.c, "t", 0).await, before);
    let (values, hw, lso, aborted) = fetch(t.c, "t", 0, true).await;
    assert!(
        values.is_empty(),
        "the fenced transaction was aborted: {values:?}"
    );
    assert_eq!(lso, hw);
    assert_eq!(aborted, vec![(stale_pid, 0)]);
    // A marker older than the producer's epoch is refused, log unchanged.
    let r: WriteTxnMarkersResponse =
        t.c.call(
            ApiKey::WriteTxnMarkers,
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![
                WritableTxnMarker::default()
                    .with_producer_id(ProducerId(stale_pid))
                    .with_producer_epoch(-5)
                    .with_transaction_result(false)
                    .with_topics(vec![
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0]),
                    ]),
            ]),
        )
        .await;
    assert_eq!(
        r.markers[0].topics[0].partitions[0].error_code,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(list_offset(t.c, "t", 0).await, before);
    broker.stop().await;
}

#[tokio::test]
async fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.transaction_abort_timed_out_transaction_cleanup_interval_ms = 100
    })
    .await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let r = init(&mut c, 4, "late", 500).await;
    assert_eq!(r.error_code, NONE);
    let mut t = Txn {
        c: &mut c,
        id: "late".into(),
        pid: r.producer_id.0,
        epoch: r.producer_epoch,
        seq: 0,
    };
    assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
    assert_eq!(t.produce("t", 0, 3, "late").await.0, NONE);
    let (_, hw, lso, _) = fetch(t.c, "t", 0, true).await;
    assert_eq!((hw, lso), (3, 0), "the open transaction holds the LSO back");
    assert_eq!(
        list_offset(t.c, "t", 1).await,
        0,
        "ListOffsets read_committed: the LSO"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = describe(t.c, "late").await;
        if d.transaction_state.as_str() == "CompleteAbort" {
            assert_eq!(
                d.producer_epoch,
                r.producer_epoch + 1,
                "the epoch was bumped"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not aborted: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (values, hw, lso, aborted) = fetch(t.c, "t", 0, true).await;
    assert!(values.is_empty());
    assert_eq!((hw, lso), (4, 4), "the abort marker ends it");
    assert_eq!(aborted, vec![(t.pid, 0)]);
    assert_eq!(
        t.end(4, true).await,
        PRODUCER_FENCED,
        "the late producer is fenced"
    );
    // KIP-588: the producer may claim the bumped epoch with the one it had.
    let r: InitProducerIdResponse =
        t.c.call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("late"))))
                .with_transaction_timeout_ms(500)
                .with_producer_id(ProducerId(t.pid))
                .with_producer_epoch(t.epoch),
        )
        .await;
    assert_eq!((r.error_code, r.producer_epoch), (NONE, t.epoch + 2));
    broker.stop().await;
}

#[tokio::test]
async fn an_open_transaction_and_its_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let (pid, epoch) = {
        let mut t = Txn::start(&mut c, "keep").await;
        assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
        assert_eq!(t.produce("t", 0, 2, "kept").await.0, NONE);
        assert_eq!(t.add_offsets(3, "g").await, NONE);
        assert_eq!(t.commit_offset(3, "g", "t", 42).await, NONE);
        (t.pid, t.epoch)
    };
    assert_eq!(
        offset_fetch(&mut c, "g", "t").await.0,
        UNSTABLE_OFFSET_COMMIT
    );
    drop(c);
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let (values, hw, lso, _) = fetch(&mut c, "t", 0, true).await;
    assert_eq!(
        (values.len(), hw, lso),
        (0, 2, 0),
        "still open after the restart"
    );
    assert_eq!(
        offset_fetch(&mut c, "g", "t").await.0,
        UNSTABLE_OFFSET_COMMIT
    );
    let r: DescribeProducersResponse = c
        .call(
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0]),
            ]),
        )
        .await;
    let p = &r.topics[0].partitions[0].active_producers[0];
    assert_eq!((p.producer_id.0, p.current_txn_start_offset), (pid, 0));
    let mut t = Txn {
        c: &mut c,
        id: "keep".into(),
        pid,
        epoch,
        seq: 2,
    };
    assert_eq!(t.end(3, true).await, NONE);
    let (values, hw, lso, _) = fetch(&mut c, "t", 0, true).await;
    assert_eq!(values, vec!["kept0", "kept1"]);
    assert_eq!((hw, lso), (3, 3));
    assert_eq!(offset_fetch(&mut c, "g", "t").await, (NONE, 42));
    drop(c);
    broker.stop().await;

    // The committed offset and data are read back from the log again.
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(offset_fetch(&mut c, "g", "t").await, (NONE, 42));
    assert_eq!(fetch(&mut c, "t", 0, true).await.0.len(), 2);
    drop(c);
    broker.stop().await;
}

#[tokio::test]
async fn an_idle_transactional_id_expires() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.transaction_abort_timed_out_transaction_cleanup_interval_ms = 100;
        c.transaction_remove_expired_transaction_cleanup_interval_ms = 100;
        c.transactional_id_expiration_ms = 1_000;
    })
    .await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let mut t = Txn::start(&mut c, "idle").await;
    let first_pid = t.pid;
    assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
    assert_eq!(t.produce("t", 0, 1, "x").await.0, NONE);
    assert_eq!(t.end(3, true).await, NONE);
    assert_eq!(describe(&mut c, "idle").await.error_code, NONE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while describe(&mut c, "idle").await.error_code != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    broker.stop().await;
    // Its tombstone is in the log: gone after a restart too, and the id
    // starts over with a new producer id.
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        describe(&mut c, "idle").await.error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );
    let t = Txn::start(&mut c, "idle").await;
    assert_ne!(t.pid, first_pid);
    assert_eq!(t.epoch, 0);
    drop(c);
    broker.stop().await;
}

/// Produce v12 of one transactional batch (transaction version 2).
async fn produce_v12(t: &mut Txn<'_>, topic: &str, n: usize, tag: &str) -> i16 {
    let batch = txn_batch(t.pid, t.epoch, t.seq, n, tag);
    let r: ProduceResponse =
        t.c.call(
            ApiKey::Produce,
            12,
            &ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(s(&t.id))))
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(s(topic)))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch)),
                        ]),
                ]),
        )
        .await;
    let code = r.responses[0].partition_responses[0].error_code;
    if code == NONE {
        t.seq += n as i32;
    }
    code
}

#[tokio::test]
async fn transaction_version_2_adds_partitions_on_the_broker_and_bumps_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let mut t = Txn::start(&mut c, "tv2").await;
    let first_epoch = t.epoch;
    // No AddPartitionsToTxn: Produce v12 adds the partition.
    assert_eq!(produce_v12(&mut t, "t", 2, "one").await, NONE);
    // No AddOffsetsToTxn: TxnOffsetCommit v5 adds the group's partition.
    assert_eq!(t.commit_offset(5, "g", "t", 2).await, NONE);
    let d = describe(t.c, "tv2").await;
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!(d.topics.len(), 2, "t and __consumer_offsets: {d:?}");
    // EndTxn v5 bumps the epoch and says so.
    let r: EndTxnResponse =
        t.c.call(
            ApiKey::EndTxn,
            5,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tv2")))
                .with_producer_id(ProducerId(t.pid))
                .with_producer_epoch(t.epoch)
                .with_committed(true),
        )
        .await;
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (NONE, t.pid, first_epoch + 1)
    );
    // A retry of it (with the epoch it was sent with) is answered the same.
    assert_eq!(t.end(5, true).await, NONE);
    // Anything still in flight at the old epoch is fenced by the markers.
    assert_eq!(
        produce_v12(&mut t, "t", 1, "late").await,
        INVALID_PRODUCER_EPOCH
    );
    // The next transaction runs at the new epoch, sequences from 0.
    t.epoch = r.producer_epoch;
    t.seq = 0;
    assert_eq!(produce_v12(&mut t, "t", 1, "two").await, NONE);
    assert_eq!(t.end(5, false).await, NONE);
    let (values, hw, lso, aborted) = fetch(t.c, "t", 0, true).await;
    assert_eq!(values, vec!["one0", "one1"]);
    assert_eq!((hw, lso), (5, 5), "2 records, a marker, 1 record, a marker");
    assert_eq!(aborted, vec![(t.pid, 3)]);
    assert_eq!(offset_fetch(&mut c, "g", "t").await, (NONE, 2));
    broker.stop().await;
}

#[tokio::test]
async fn retention_keeps_a_transaction_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        TestBroker::start_with(dir.path(), |c| c.log_retention_check_interval_ms = 50).await;
    let mut c = broker.client().await;
    // Batches of 10 records are ~250 bytes: a segment holds about four.
    let r = common::create_topic_with(
        &mut c,
        "kept",
        &[("segment.bytes", "1000"), ("retention.bytes", "2000")],
    )
    .await;
    assert_eq!(r.topics[0].error_code, NONE);
    let mut t = Txn::start(&mut c, "long").await;
    assert_eq!(t.add(3, "kept", vec![0]).await, vec![NONE]);
    assert_eq!(t.produce("kept", 0, 10, "open").await, (NONE, 0));
    for _ in 0..40 {
        let (code, _) = produce(t.c, None, "kept", 0, common::batch(10, 1_000, None)).await;
        assert_eq!(code, NONE);
    }
    // Retention runs every 50 ms: give it several rounds. The open
    // transaction's first records stay (log start 0).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let earliest = |r: ListOffsetsResponse| r.topics[0].partitions[0].offset;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(s("kept")))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                ]),
        ]);
    let r: ListOffsetsResponse = t.c.call(ApiKey::ListOffsets, 7, &req).await;
    assert_eq!(earliest(r), 0, "the open transaction's start stays");
    // Once it commits, retention goes on.
    assert_eq!(t.end(3, true).await, NONE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r: ListOffsetsResponse = t.c.call(ApiKey::ListOffsets, 7, &req).await;
        if earliest(r) > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never went on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.stop().await;
}

/// EndTxn v5 that uses the last epoch (transaction version 2): the markers
/// carry the old producer id, the answer a new one at epoch 0, and a retry
/// naming the old id is still recognised — after a restart too, since the
/// previous producer id is kept in the id's record (value version 1).
#[tokio::test]
async fn a_retried_end_txn_after_the_producer_id_rotated_is_recognised() {
    use sluice::txn::{TxnMeta, TxnState, records};
    use sluice_storage::{AppendOptions, Log, LogConfig, SystemClock};

    let one_partition = |c: &mut sluice::config::Config| c.transaction_state_log_num_partitions = 1;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), one_partition).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let r = init(&mut c, 5, "rot", 20_000).await;
    assert_eq!(r.error_code, NONE);
    let pid = r.producer_id.0;
    drop(c);
    broker.stop().await;

    // The id as it stands after 32,765 transactions.
    {
        let mut log = Log::open(
            &dir.path().join("__transaction_state-0"),
            LogConfig::default(),
            std::sync::Arc::new(SystemClock),
        )
        .unwrap();
        let meta = TxnMeta {
            producer_id: pid,
            prev_producer_id: -1,
            epoch: i16::MAX - 2,
            timeout_ms: 20_000,
            state: TxnState::CompleteCommit,
            partitions: Default::default(),
            start_ms: -1,
            last_update_ms: 1,
            client_version: 2,
            written: -1,
        };
        let (key, value) = (records::key("rot"), records::value(&meta));
        let batch = sluice_storage::batch::build(
            &[sluice_storage::batch::RecordSpec {
                key: Some(&key),
                value: Some(&value),
                timestamp: 1,
            }],
            Default::default(),
        );
        log.append(&batch, &AppendOptions::default()).unwrap();
        log.close().unwrap();
    }

    let broker = TestBroker::start_with(dir.path(), one_partition).await;
    let mut c = broker.client().await;
    let r = init(&mut c, 5, "rot", 20_000).await;
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (NONE, pid, i16::MAX - 1)
    );
    let mut t = Txn {
        c: &mut c,
        id: "rot".into(),
        pid,
        epoch: i16::MAX - 1,
        seq: 0,
    };
    assert_eq!(t.add(3, "t", vec![0]).await, vec![NONE]);
    assert_eq!(t.produce("t", 0, 2, "last-epoch").await.0, NONE);
    let end_v5 = |pid: i64| {
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("rot")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(i16::MAX - 1)
            .with_committed(true)
    };
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 5, &end_v5(pid)).await;
    assert_eq!(r.error_code, NONE);
    let next = r.producer_id.0;
    assert!(next >= 0 && next != pid, "a new producer id: {next}");
    assert_eq!(r.producer_epoch, 0);
    let (values, _, lso, _) = fetch(&mut c, "t", 0, true).await;
    assert_eq!((values.len(), lso), (2, 3), "committed under the old id");

    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 5, &end_v5(pid)).await;
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (NONE, next, 0),
        "the retry is answered as the first was"
    );
    drop(c);
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), one_partition).await;
    let mut c = broker.client().await;
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 5, &end_v5(pid)).await;
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (NONE, next, 0),
        "the previous producer id survived the restart"
    );
    // Any other epoch of the old id is fenced.
    let r: EndTxnResponse = c
        .call(
            ApiKey::EndTxn,
            5,
            &end_v5(pid).with_producer_epoch(i16::MAX - 2),
        )
        .await;
    assert_ne!(r.error_code, NONE);
    broker.stop().await;
}

/// Aborted transactions spread over many segments stay skipped by
/// read_committed reads after restarts: with the segments' `.txnindex`
/// files, and with the files lost (rebuilt from the segments).
#[tokio::test]
async fn aborted_transactions_in_sealed_segments_stay_aborted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let r = common::create_topic_with(&mut c, "seg", &[("segment.bytes", "1024")]).await;
    assert_eq!(r.topics[0].error_code, NONE);
    let mut committed = Vec::new();
    {
        let mut t = Txn::start(&mut c, "segs").await;
        for i in 0..30 {
            let commit = i % 3 != 1;
            assert_eq!(t.add(3, "seg", vec![0]).await, vec![NONE]);
            let tag = format!("{}{i}", if commit { "c" } else { "a" });
            assert_eq!(t.produce("seg", 0, 3, &format!("{tag}-")).await.0, NONE);
            assert_eq!(t.end(3, commit).await, NONE);
            if commit {
                committed.push(tag);
            }
        }
    }
    // Every record of the partition, read_committed, fetch after fetch.
    async fn read_all(c: &mut Client) -> Vec<String> {
        let (mut offset, mut out) = (0, Vec::new());
        loop {
            let (values, hw, _, _, next) = fetch_at(c, "seg", 0, offset, true).await;
            out.extend(values);
            if next >= hw || next == offset {
                return out;
            }
            offset = next;
        }
    }
    let tags = |values: &[String]| {
        let mut t: Vec<String> = values
            .iter()
            .map(|v| v.split('-').next().unwrap().to_owned())
            .collect();
        t.dedup();
        t
    };
    assert_eq!(tags(&read_all(&mut c).await), committed);
    drop(c);
    broker.stop().await;

    let part = dir.path().join("seg-0");
    let indexes = |ext: &str| {
        std::fs::read_dir(&part)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == ext)
            })
            .count()
    };
    assert!(indexes("log") >= 4, "the transactions span many segments");
    assert!(indexes("txnindex") >= indexes("log") - 1);

    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(tags(&read_all(&mut c).await), committed, "after a restart");
    drop(c);
    broker.stop().await;

    for e in std::fs::read_dir(&part).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "txnindex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        tags(&read_all(&mut c).await),
        committed,
        "after a restart without the index files"
    );
    assert!(indexes("txnindex") >= indexes("log") - 1, "rebuilt");
    drop(c);
    broker.stop().await;
}
