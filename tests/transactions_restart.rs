//! Transactions across restarts: an open transaction and its offsets,
//! retention below an open transaction, a producer id rotation retried
//! after a restart, and aborted transactions in sealed segments (their
//! `.txnindex` files, and the files lost).

mod common;

use common::txn::*;
use common::{Client, TestBroker};

use std::time::Duration;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;

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
