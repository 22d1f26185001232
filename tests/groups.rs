//! Consumer groups over the wire: every served version of the group APIs, a
//! two-member rebalance, and offsets and groups that survive a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::handlers::SERVED;

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const FENCED_MEMBER_EPOCH: i16 = 110;
const STALE_MEMBER_EPOCH: i16 = 113;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

async fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, |c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.offsets_topic_num_partitions = 5;
    })
    .await
}

/// ConsumerProtocolSubscription v0 for `topics`, as consumers send it.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_req(group: &str, member: &str, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// Joins `group` at version `v`, answering MEMBER_ID_REQUIRED when it comes.
async fn join(c: &mut Client, v: i16, group: &str, topics: &[&str]) -> JoinGroupResponse {
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, v, &join_req(group, "", topics))
        .await;
    if r.error_code != MEMBER_ID_REQUIRED {
        return r;
    }
    assert!(v >= 4, "MEMBER_ID_REQUIRED only from v4, got it at v{v}");
    let id = r.member_id.to_string();
    c.call(ApiKey::JoinGroup, v, &join_req(group, &id, topics))
        .await
}

async fn sync(
    c: &mut Client,
    v: i16,
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupResponse {
    let mut req = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&m))
                        .with_assignment(a)
                })
                .collect(),
        );
    if v >= 5 {
        req.protocol_type = Some(s("consumer"));
        req.protocol_name = Some(s("range"));
    }
    c.call(ApiKey::SyncGroup, v, &req).await
}

/// A one-member group, stable: (member id, generation).
async fn form(c: &mut Client, group: &str, topics: &[&str]) -> (String, i32) {
    let j = join(c, 5, group, topics).await;
    assert_eq!(j.error_code, 0);
    let id = j.member_id.to_string();
    let a = Bytes::from_static(b"assignment");
    let r = sync(
        c,
        3,
        group,
        &id,
        j.generation_id,
        vec![(id.clone(), a.clone())],
    )
    .await;
    assert_eq!((r.error_code, r.assignment), (0, a));
    (id, j.generation_id)
}

async fn create_topic(c: &mut Client, name: &str, partitions: i32) {
    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(name)))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(r.topics[0].error_code, 0, "topic {name} created");
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_metadata(Some(s("meta")))
                        })
                        .collect(),
                ),
        ])
}

/// Committed offsets of `group` for `topic` partitions 0..n, at version `v`.
async fn fetch_offsets(c: &mut Client, v: i16, group: &str, topic: &str, n: i32) -> Vec<i64> {
    let parts: Vec<i32> = (0..n).collect();
    if v >= 8 {
        let req = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s(topic)))
                        .with_partition_indexes(parts),
                ])),
        ]);
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req).await;
        assert_eq!(r.groups[0].error_code, 0);
        return r.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(parts),
        ]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req).await;
    assert_eq!(r.error_code, 0);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

/// OffsetDelete of one partition's committed offset.
async fn delete_offset(
    c: &mut Client,
    group: &str,
    topic: &str,
    partition: i32,
) -> OffsetDeleteResponse {
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid(group))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(partition),
                ]),
        ]);
    c.call(ApiKey::OffsetDelete, 0, &req).await
}

#[tokio::test]
async fn every_served_group_version_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 3).await;

    for v in range(ApiKey::FindCoordinator) {
        let mut req = FindCoordinatorRequest::default().with_key_type(0);
        if v >= 4 {
            req.coordinator_keys = vec![s("g1"), s("g2")];
        } else {
            req.key = s("g1");
        }
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req).await;
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            for co in &r.coordinators {
                assert_eq!(
                    (co.error_code, co.port),
                    (0, broker.addr.port() as i32),
                    "FindCoordinator v{v}"
                );
            }
        } else {
            assert_eq!(
                (r.error_code, r.port),
                (0, broker.addr.port() as i32),
                "FindCoordinator v{v}"
            );
        }
    }

    for v in range(ApiKey::JoinGroup) {
        let group = format!("join-v{v}");
        let r = join(&mut c, v, &group, &["t"]).await;
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert_eq!(r.generation_id, 1, "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id, "the only member leads (v{v})");
        assert_eq!(r.members.len(), 1, "JoinGroup v{v}");
        assert_eq!(r.protocol_name.as_deref(), Some("range"), "JoinGroup v{v}");
        let id = r.member_id.to_string();
        let s = sync(
            &mut c,
            0,
            &group,
            &id,
            1,
            vec![(id.clone(), Bytes::from_static(b"x"))],
        )
        .await;
        assert_eq!(s.error_code, 0);
    }

    for v in range(ApiKey::SyncGroup) {
        let group = format!("sync-v{v}");
        let j = join(&mut c, 5, &group, &["t"]).await;
        let id = j.member_id.to_string();
        let a = Bytes::from(format!("for-v{v}"));
        let r = sync(
            &mut c,
            v,
            &group,
            &id,
            j.generation_id,
            vec![(id.clone(), a.clone())],
        )
        .await;
        assert_eq!(
            (r.error_code, r.assignment.clone()),
            (0, a.clone()),
            "SyncGroup v{v}"
        );
        if v >= 5 {
            assert_eq!(r.protocol_name.as_deref(), Some("range"));
        }
        // A stale generation is refused.
        let r = sync(&mut c, v, &group, &id, 7, vec![]).await;
        assert_eq!(r.error_code, ILLEGAL_GENERATION, "SyncGroup v{v}");
    }

    let (member, generation) = form(&mut c, "hb", &["t"]).await;
    for v in range(ApiKey::Heartbeat) {
        let req = HeartbeatRequest::default()
            .with_group_id(gid("hb"))
            .with_generation_id(generation)
            .with_member_id(s(&member));
        let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, v, &req).await;
        assert_eq!(r.error_code, 0, "Heartbeat v{v}");
        let r: HeartbeatResponse = c
            .call(
                ApiKey::Heartbeat,
                v,
                &req.clone().with_member_id(s("stranger")),
            )
            .await;
        assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "Heartbeat v{v}");
    }

    for v in range(ApiKey::LeaveGroup) {
        let group = format!("leave-v{v}");
        let (member, _) = form(&mut c, &group, &["t"]).await;
        let mut req = LeaveGroupRequest::default().with_group_id(gid(&group));
        if v >= 3 {
            req.members = vec![
                MemberIdentity::default().with_member_id(s(&member)),
                MemberIdentity::default().with_member_id(s("stranger")),
            ];
        } else {
            req.member_id = s(&member);
        }
        let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, v, &req).await;
        assert_eq!(r.error_code, 0, "LeaveGroup v{v}");
        if v >= 3 {
            let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
            assert_eq!(codes, vec![0, UNKNOWN_MEMBER_ID], "LeaveGroup v{v}");
        }
        let d: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                0,
                &DescribeGroupsRequest::default().with_groups(vec![gid(&group)]),
            )
            .await;
        assert_eq!(d.groups[0].group_state.as_str(), "Empty", "LeaveGroup v{v}");
    }

    for v in range(ApiKey::OffsetCommit) {
        let group = format!("commit-v{v}");
        let (member, generation) = form(&mut c, &group, &["t"]).await;
        let offsets = [(0, 10 + v as i64), (1, 20 + v as i64)];
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                v,
                &commit_req(&group, &member, generation, "t", &offsets),
            )
            .await;
        let codes: Vec<i16> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![0, 0], "OffsetCommit v{v}");
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                v,
                &commit_req(&group, &member, generation + 1, "t", &offsets),
            )
            .await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, ILLEGAL_GENERATION,
            "OffsetCommit v{v}"
        );
        assert_eq!(
            fetch_offsets(&mut c, 1, &group, "t", 3).await,
            vec![10 + v as i64, 20 + v as i64, -1]
        );
    }

    // A standalone consumer (generation -1, no member) commits to a new group.
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_req("standalone", "", -1, "t", &[(0, 5), (2, 7)]),
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    for v in range(ApiKey::OffsetFetch) {
        assert_eq!(
            fetch_offsets(&mut c, v, "standalone", "t", 3).await,
            vec![5, -1, 7],
            "OffsetFetch v{v}"
        );
        if v >= 2 {
            // All of a group's offsets when no topic is named.
            let r: OffsetFetchResponse = if v >= 8 {
                c.call(
                    ApiKey::OffsetFetch,
                    v,
                    &OffsetFetchRequest::default().with_groups(vec![
                        OffsetFetchRequestGroup::default()
                            .with_group_id(gid("standalone"))
                            .with_topics(None),
                    ]),
                )
                .await
            } else {
                c.call(
                    ApiKey::OffsetFetch,
                    v,
                    &OffsetFetchRequest::default()
                        .with_group_id(gid("standalone"))
                        .with_topics(None),
                )
                .await
            };
            let n = if v >= 8 {
                r.groups[0].topics[0].partitions.len()
            } else {
                r.topics[0].partitions.len()
            };
            assert_eq!(n, 2, "OffsetFetch v{v} (all)");
        }
    }

    for v in range(ApiKey::DescribeGroups) {
        let r: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                v,
                &DescribeGroupsRequest::default()
                    .with_groups(vec![gid("hb"), gid("no-such-group")]),
            )
            .await;
        let hb = &r.groups[0];
        assert_eq!(
            (hb.error_code, hb.group_state.as_str()),
            (0, "Stable"),
            "DescribeGroups v{v}"
        );
        assert_eq!(hb.protocol_data.as_str(), "range");
        assert_eq!(hb.members.len(), 1);
        assert_eq!(
            hb.members[0].member_assignment,
            Bytes::from_static(b"assignment")
        );
        assert_eq!(hb.members[0].client_id.as_str(), "sluice-test");
        assert_eq!(
            r.groups[1].group_state.as_str(),
            "Dead",
            "unknown groups are Dead"
        );
    }

    for v in range(ApiKey::ListGroups) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![s("stable")];
        }
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &req).await;
        assert_eq!(r.error_code, 0, "ListGroups v{v}");
        let names: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
        assert!(names.contains(&"hb"), "ListGroups v{v}: {names:?}");
        if v >= 4 {
            assert!(!names.contains(&"standalone"), "state filter at v{v}");
            assert!(r.groups.iter().all(|g| g.group_state.as_str() == "Stable"));
        } else {
            assert!(names.contains(&"standalone"));
        }
    }

    // OffsetDelete: refused for a topic the stable group subscribes to.
    let r = delete_offset(&mut c, "commit-v2", "t", 0).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );
    let r = delete_offset(&mut c, "standalone", "t", 0).await;
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(
        fetch_offsets(&mut c, 8, "standalone", "t", 3).await,
        vec![-1, -1, 7]
    );

    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("kt")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(r.topics[0].error_code, 0);
    for v in range(ApiKey::ConsumerGroupHeartbeat) {
        let group = format!("kip848-v{v}");
        let member = format!("member-{v}");
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(gid(&group))
            .with_member_id(s(&member))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(5000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("kt"))]))
            .with_topic_partitions(Some(vec![]));
        let r: ConsumerGroupHeartbeatResponse =
            c.call(ApiKey::ConsumerGroupHeartbeat, v, &join).await;
        assert_eq!(
            (r.error_code, r.member_epoch),
            (0, 1),
            "ConsumerGroupHeartbeat v{v}"
        );
        assert_eq!(r.member_id.as_deref(), Some(member.as_str()));
        let a = r
            .assignment
            .expect("a join is answered with the assignment");
        assert_eq!(a.topic_partitions.len(), 1);
        assert_eq!(a.topic_partitions[0].partitions, vec![0, 1]);
        let stale = join
            .clone()
            .with_member_epoch(5)
            .with_subscribed_topic_names(None);
        let r: ConsumerGroupHeartbeatResponse =
            c.call(ApiKey::ConsumerGroupHeartbeat, v, &stale).await;
        assert_eq!(
            r.error_code, FENCED_MEMBER_EPOCH,
            "ConsumerGroupHeartbeat v{v}"
        );
        // Commits carry the member epoch.
        let ok: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                9,
                &commit_req(&group, &member, 1, "kt", &[(0, 3)]),
            )
            .await;
        assert_eq!(ok.topics[0].partitions[0].error_code, 0);
        let old: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                9,
                &commit_req(&group, &member, 0, "kt", &[(0, 4)]),
            )
            .await;
        assert_eq!(old.topics[0].partitions[0].error_code, STALE_MEMBER_EPOCH);
    }
    for v in range(ApiKey::ConsumerGroupDescribe) {
        let r: ConsumerGroupDescribeResponse = c
            .call(
                ApiKey::ConsumerGroupDescribe,
                v,
                &ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![gid("kip848-v0"), gid("hb")]),
            )
            .await;
        let g = &r.groups[0];
        assert_eq!(
            (g.error_code, g.group_state.as_str()),
            (0, "Stable"),
            "ConsumerGroupDescribe v{v}"
        );
        assert_eq!(g.members.len(), 1);
        assert_eq!(
            g.members[0].assignment.topic_partitions[0].partitions,
            vec![0, 1]
        );
        assert_eq!(
            r.groups[1].error_code, GROUP_ID_NOT_FOUND,
            "a classic group is not a consumer group"
        );
    }
    // OffsetDelete: a KIP-848 member subscribes to "kt", not to "t".
    let r = delete_offset(&mut c, "kip848-v0", "kt", 0).await;
    assert_eq!(
        (r.error_code, r.topics[0].partitions[0].error_code),
        (0, GROUP_SUBSCRIBED_TO_TOPIC)
    );
    let r = delete_offset(&mut c, "kip848-v0", "t", 0).await;
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid("kip848-v0"))
        .with_member_id(s("member-0"))
        .with_member_epoch(-1);
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 0, &leave).await;
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    // Empty, the group's offsets can go.
    let r = delete_offset(&mut c, "kip848-v0", "kt", 0).await;
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(
        fetch_offsets(&mut c, 8, "kip848-v0", "kt", 2).await,
        vec![-1, -1]
    );

    for v in range(ApiKey::DeleteGroups) {
        let r: DeleteGroupsResponse = c
            .call(
                ApiKey::DeleteGroups,
                v,
                &DeleteGroupsRequest::default().with_groups_names(vec![
                    gid(&format!("leave-v{v}")),
                    gid("hb"),
                    gid("never-was"),
                ]),
            )
            .await;
        let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
        assert_eq!(
            codes,
            vec![0, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND],
            "DeleteGroups v{v}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_second_member_triggers_a_rebalance_and_both_get_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut a = broker.client().await;
    let (a_id, gen1) = form(&mut a, "pair", &["t"]).await;
    assert_eq!(gen1, 1);

    // b's join parks until a rejoins.
    let mut b = broker.client().await;
    let b_join = tokio::spawn(async move {
        let r = join(&mut b, 7, "pair", &["t"]).await;
        (b, r)
    });
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("pair"))
        .with_generation_id(gen1)
        .with_member_id(s(&a_id));
    let mut seen = 0;
    for _ in 0..100 {
        let r: HeartbeatResponse = a.call(ApiKey::Heartbeat, 4, &hb).await;
        seen = r.error_code;
        if seen == REBALANCE_IN_PROGRESS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, REBALANCE_IN_PROGRESS, "a learns of the rebalance");
    let ra: JoinGroupResponse = a
        .call(ApiKey::JoinGroup, 7, &join_req("pair", &a_id, &["t"]))
        .await;
    let (mut b, rb) = tokio::time::timeout(Duration::from_secs(10), b_join)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.as_str(), a_id, "the leader stays");
    assert_eq!(ra.members.len(), 2, "the leader gets every member");
    assert!(rb.members.is_empty());
    let b_id = rb.member_id.to_string();

    // b's sync parks until the leader's.
    let b_sync = tokio::spawn(async move { sync(&mut b, 5, "pair", &b_id, 2, vec![]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ra = sync(
        &mut a,
        5,
        "pair",
        &a_id,
        2,
        vec![
            (a_id.clone(), Bytes::from_static(b"A")),
            (rb.member_id.to_string(), Bytes::from_static(b"B")),
        ],
    )
    .await;
    let rb = tokio::time::timeout(Duration::from_secs(10), b_sync)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ra.error_code, ra.assignment),
        (0, Bytes::from_static(b"A"))
    );
    assert_eq!(
        (rb.error_code, rb.assignment),
        (0, Bytes::from_static(b"B"))
    );
    broker.stop().await;
}

#[tokio::test]
async fn offsets_and_groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "orders", 2).await;
    let (member, generation) = form(&mut c, "kept", &["orders"]).await;
    for round in 0..3 {
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit_req(
                    "kept",
                    &member,
                    generation,
                    "orders",
                    &[(0, 100 + round), (1, 200 + round)],
                ),
            )
            .await;
        assert_eq!(r.topics[0].partitions[1].error_code, 0);
    }
    let _ = c
        .call::<_, OffsetCommitResponse>(
            ApiKey::OffsetCommit,
            8,
            &commit_req("gone", "", -1, "orders", &[(0, 1)]),
        )
        .await;
    let r: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("gone")]),
        )
        .await;
    assert_eq!(r.results[0].error_code, 0);
    // Clients may not write to the internal topic.
    let p: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(s("__consumer_offsets")))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(common::batch(1, 0, None))),
                        ]),
                ]),
        )
        .await;
    assert_eq!(
        p.responses[0].partition_responses[0].error_code,
        INVALID_TOPIC_EXCEPTION
    );
    // A KIP-848 member, to come back to after the restart.
    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("orders")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let _: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &create).await;
    let kip = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid("kip-kept"))
        .with_member_id(s("m-1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]))
        .with_topic_partitions(Some(vec![]));
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 1, &kip).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
    drop(c);
    broker.stop().await;

    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    // The consumer-protocol member goes on at its epoch with its partitions.
    let again = kip
        .clone()
        .with_member_epoch(1)
        .with_subscribed_topic_names(None)
        .with_topic_partitions(None);
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 1, &again).await;
    assert_eq!(
        (r.error_code, r.member_epoch),
        (0, 1),
        "the member survived the restart"
    );
    let d: ConsumerGroupDescribeResponse = c
        .call(
            ApiKey::ConsumerGroupDescribe,
            1,
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("kip-kept")]),
        )
        .await;
    assert_eq!(
        d.groups[0].members[0].assignment.topic_partitions[0].partitions,
        vec![0, 1]
    );
    assert_eq!(
        fetch_offsets(&mut c, 9, "kept", "orders", 2).await,
        vec![102, 201 + 1]
    );
    assert_eq!(
        fetch_offsets(&mut c, 9, "gone", "orders", 1).await,
        vec![-1],
        "deleted groups stay deleted"
    );
    // The member comes back to its group at its generation, without a rebalance.
    let hb: HeartbeatResponse = c
        .call(
            ApiKey::Heartbeat,
            4,
            &HeartbeatRequest::default()
                .with_group_id(gid("kept"))
                .with_generation_id(generation)
                .with_member_id(s(&member)),
        )
        .await;
    assert_eq!(hb.error_code, 0);
    let d: DescribeGroupsResponse = c
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("kept"), gid("gone")]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members[0].member_id.as_str(), member);
    assert_eq!(d.groups[1].group_state.as_str(), "Dead");
    broker.stop().await;
}

#[tokio::test]
async fn bad_consumer_group_heartbeats_get_invalid_request() {
    const INVALID_REQUEST: i16 = 42;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid("bad-hb"))
        .with_member_id(s("m-1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![]));
    let cases = [
        (
            "no rebalance timeout on join",
            join.clone().with_rebalance_timeout_ms(-1),
        ),
        (
            "null owned partitions on join",
            join.clone().with_topic_partitions(None),
        ),
        (
            "no subscription on join",
            join.clone().with_subscribed_topic_names(None),
        ),
        ("empty member id", join.clone().with_member_id(s(""))),
        (
            "empty instance id",
            join.clone().with_instance_id(Some(s(""))),
        ),
        ("empty rack id", join.clone().with_rack_id(Some(s("")))),
        ("epoch below -2", join.clone().with_member_epoch(-3)),
        (
            "static leave without instance id",
            join.clone().with_member_epoch(-2),
        ),
    ];
    for (what, req) in cases {
        let r: ConsumerGroupHeartbeatResponse =
            c.call(ApiKey::ConsumerGroupHeartbeat, 1, &req).await;
        assert_eq!(r.error_code, INVALID_REQUEST, "{what}");
        assert!(r.error_message.is_some(), "{what}: says why");
    }
    // None of them created a member: the real join is the first.
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 1, &join).await;
    assert_eq!((r.error_code, r.member_epoch), (0, 1));
    broker.stop().await;
}
