//! Transactions over the wire: every served version of the transaction APIs,
//! the bad input the issue names (each answered with Kafka's code and the
//! log left unchanged), a transaction aborted by its timeout, an idle id
//! expiring, and transaction version 2 (see also transactions_restart.rs).

mod common;

use common::TestBroker;
use common::txn::*;

use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;

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
