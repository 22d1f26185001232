//! Expiry of committed offsets (offsets.retention.minutes), driven through the
//! coordinator with a hand-moved clock: a week cannot pass in a test.

use bytes::Bytes;

#[tokio::test]
async fn offsets_expire_after_retention_once_the_group_is_empty() {
    use std::sync::Arc;

    use sluice::broker::Broker;
    use sluice::config::Config;
    use sluice::group::CommitItem;
    use sluice::group::classic::{JoinRequest, SyncRequest};
    use sluice_storage::ManualClock;

    const DAY: i64 = 24 * 3600 * 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        data_dir: dir.path().to_owned(),
        group_initial_rebalance_delay_ms: 0,
        offsets_topic_num_partitions: 3,
        ..Config::default()
    };
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let broker =
        Broker::open_with_clock(config(), sluice::handlers::version_table(), clock.clone())
            .unwrap();
    let groups = &broker.groups;
    let item = |offset| {
        vec![CommitItem {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        }]
    };
    let committed = |group: &str| -> Option<i64> {
        groups.fetch(group, Some(&[("t".to_string(), vec![0])]))[0].1[0]
            .1
            .as_ref()
            .map(|c| c.offset)
    };
    // A standalone consumer's offsets, and a live group's.
    assert_eq!(
        groups.commit(&broker, "solo", "", None, -1, &item(5)).await,
        vec![0]
    );
    let join = groups
        .join(
            &broker,
            "live",
            JoinRequest {
                member_id: String::new(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 30_000,
                rebalance_timeout_ms: 30_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::new())],
                require_known_member_id: false,
                new_member_id: "m-1".into(),
            },
        )
        .await;
    assert_eq!((join.error, join.generation), (0, 1));
    let sync = SyncRequest {
        member_id: "m-1".into(),
        generation: 1,
        ..SyncRequest::default()
    };
    assert_eq!(groups.sync(&broker, "live", sync).await.error, 0);
    assert_eq!(
        groups
            .commit(&broker, "live", "m-1", None, 1, &item(7))
            .await,
        vec![0]
    );

    // A week and a bit later: the standalone offsets go; the live group keeps
    // its own although they are as old (its member keeps heartbeating).
    clock.advance(7 * DAY + 1);
    assert_eq!(groups.heartbeat(&broker, "live", "m-1", None, 1), 0);
    assert_eq!(groups.expire_offsets(&broker, 7 * DAY).await, 1);
    assert_eq!((committed("solo"), committed("live")), (None, Some(7)));

    // Once empty, the group keeps its offsets for the retention from then.
    groups
        .leave(&broker, "live", &[("m-1".into(), None)])
        .await
        .unwrap();
    clock.advance(6 * DAY);
    assert_eq!(groups.expire_offsets(&broker, 7 * DAY).await, 0);
    assert_eq!(committed("live"), Some(7));
    clock.advance(DAY + 1);
    assert_eq!(groups.expire_offsets(&broker, 7 * DAY).await, 1);
    assert_eq!(committed("live"), None);
    assert!(
        groups
            .list()
            .iter()
            .all(|g| g.id != "live" && g.id != "solo"),
        "both groups are forgotten"
    );

    // The expiry is durable: tombstones, replayed at the next start.
    broker.shutdown();
    drop(broker);
    let broker =
        Broker::open_with_clock(config(), sluice::handlers::version_table(), clock.clone())
            .unwrap();
    let after = broker.groups.fetch("live", None);
    assert!(after.is_empty(), "{after:?}");
    assert!(broker.groups.fetch("solo", None).is_empty());
}
