//! KIP-848 online migration over the wire: a classic group converts into a
//! consumer group when a ConsumerGroupHeartbeat joins it, its classic member
//! is served through JoinGroup / SyncGroup / Heartbeat, and the group goes
//! back to classic when the consumer-protocol member leaves. Both kinds
//! survive a restart, and so do the committed offsets.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Client, TestBroker};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const GROUP_ID_NOT_FOUND: i16 = 69;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

async fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, |c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.offsets_topic_num_partitions = 3;
    })
    .await
}

/// ConsumerProtocolSubscription v1 for topic `t`, owning `owned`.
fn subscription(owned: &[i32]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t")])
        .with_owned_partitions(if owned.is_empty() {
            vec![]
        } else {
            vec![
                TopicPartition::default()
                    .with_topic(TopicName(s("t")))
                    .with_partitions(owned.to_vec()),
            ]
        });
    let mut b = BytesMut::new();
    b.put_i16(1);
    msg.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn assignment(ps: &[i32]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(ps.to_vec()),
    ]);
    let mut b = BytesMut::new();
    b.put_i16(1);
    msg.encode(&mut b, 1).unwrap();
    b.freeze()
}

fn partitions_of(mut a: Bytes) -> Vec<i32> {
    let v = bytes::Buf::get_i16(&mut a);
    let a = ConsumerProtocolAssignment::decode(&mut a, v).unwrap();
    a.assigned_partitions
        .into_iter()
        .flat_map(|tp| tp.partitions)
        .collect()
}

fn join_req(group: &str, member: &str, protocol_type: &str, owned: &[i32]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription(owned)),
        ])
}

fn sync_req(group: &str, member: &str, generation: i32, mine: Option<Bytes>) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            mine.map(|a| {
                vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(member))
                        .with_assignment(a),
                ]
            })
            .unwrap_or_default(),
        )
}

/// A one-member classic group owning every partition of `t`: (member, generation).
async fn classic_group(c: &mut Client, group: &str, protocol_type: &str) -> (String, i32) {
    let r: JoinGroupResponse = c
        .call(
            ApiKey::JoinGroup,
            5,
            &join_req(group, "", protocol_type, &[]),
        )
        .await;
    let id = r.member_id.to_string();
    let r: JoinGroupResponse = c
        .call(
            ApiKey::JoinGroup,
            5,
            &join_req(group, &id, protocol_type, &[]),
        )
        .await;
    assert_eq!((r.error_code, r.leader.as_str()), (0, id.as_str()));
    let g = r.generation_id;
    let all = assignment(&[0, 1, 2, 3]);
    let sync = sync_req(group, &id, g, Some(all)).with_protocol_type(Some(s(protocol_type)));
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(r.error_code, 0);
    (id, g)
}

fn kip848(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    let mut r = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 10_000 } else { -1 });
    if epoch == 0 {
        r.subscribed_topic_names = Some(vec![TopicName(s("t"))]);
        r.topic_partitions = Some(vec![]);
    }
    r
}

fn owned(ps: Vec<i32>) -> Option<Vec<TopicPartitions>> {
    Some(vec![
        TopicPartitions::default()
            .with_topic_id(Default::default())
            .with_partitions(ps),
    ])
}

async fn commit(c: &mut Client, group: &str, member: &str, generation: i32, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req).await;
    r.topics[0].partitions[0].error_code
}

async fn committed(c: &mut Client, group: &str) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await;
    r.topics[0].partitions[0].committed_offset
}

async fn describe848(c: &mut Client, group: &str) -> ConsumerGroupDescribeResponse {
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid(group)]);
    c.call(ApiKey::ConsumerGroupDescribe, 1, &req).await
}

async fn describe_classic(c: &mut Client, group: &str) -> describe_groups_response::DescribedGroup {
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let mut r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &req).await;
    r.groups.remove(0)
}

async fn create_topic(c: &mut Client) {
    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(4)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(r.topics[0].error_code, 0);
}

#[tokio::test]
async fn a_classic_group_converts_to_a_consumer_group_and_back_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    create_topic(&mut c).await;

    // A group of another protocol type does not convert: GROUP_ID_NOT_FOUND.
    classic_group(&mut c, "connectors", "connect").await;
    let r: ConsumerGroupHeartbeatResponse = c
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            &kip848("connectors", "n", 0),
        )
        .await;
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);

    let (k, generation) = classic_group(&mut c, "g", "consumer").await;
    assert_eq!(commit(&mut c, "g", &k, generation, 5).await, 0);
    // The KIP-848 member joins: the group converts; it waits for partitions.
    let r: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 0, &kip848("g", "n", 0))
        .await;
    assert_eq!((r.error_code, r.member_epoch), (0, generation + 1));
    assert!(r.assignment.unwrap().topic_partitions.is_empty());
    // DescribeGroups knows no consumer group (Dead), as Kafka.
    assert_eq!(
        describe_classic(&mut c, "g").await.group_state.as_str(),
        "Dead"
    );
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("g"))
        .with_member_id(s(&k))
        .with_generation_id(generation);
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb).await;
    assert_eq!(
        r.error_code, REBALANCE_IN_PROGRESS,
        "the classic member rejoins"
    );

    // A restart finds a consumer group of two members and the offsets.
    broker.stop().await;
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    let d = describe848(&mut c, "g").await;
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_epoch, generation + 1);
    assert_eq!(d.groups[0].members.len(), 2);
    let kinds: Vec<(String, i8)> = d.groups[0]
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_type))
        .collect();
    assert!(
        kinds.contains(&(k.clone(), 0)),
        "{kinds:?}: the classic member"
    );
    assert!(kinds.contains(&("n".to_string(), 1)), "{kinds:?}");
    assert_eq!(committed(&mut c, "g").await, 5);

    // The classic member rejoins owning nothing and gets half.
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join_req("g", &k, "consumer", &[]))
        .await;
    assert_eq!((r.error_code, r.generation_id), (0, generation + 1));
    assert_eq!(
        r.leader.as_str(),
        "",
        "a classic member of a consumer group never leads"
    );
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    let epoch = r.generation_id;
    let r: SyncGroupResponse = c
        .call(ApiKey::SyncGroup, 5, &sync_req("g", &k, epoch, None))
        .await;
    assert_eq!(r.error_code, 0);
    let mine = partitions_of(r.assignment);
    assert_eq!(mine.len(), 2);
    assert_eq!(
        commit(&mut c, "g", &k, generation, 6).await,
        ILLEGAL_GENERATION
    );
    assert_eq!(commit(&mut c, "g", &k, epoch, 7).await, 0);
    let r: HeartbeatResponse = c
        .call(ApiKey::Heartbeat, 4, &hb.clone().with_generation_id(epoch))
        .await;
    assert_eq!(r.error_code, 0);
    // The KIP-848 member gets the other half.
    let r: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 0, &kip848("g", "n", epoch))
        .await;
    assert_eq!(r.error_code, 0);
    let theirs: Vec<i32> = r
        .assignment
        .unwrap()
        .topic_partitions
        .into_iter()
        .flat_map(|tp| tp.partitions)
        .collect();
    let mut all: Vec<i32> = mine.iter().chain(&theirs).copied().collect();
    all.sort();
    assert_eq!(all, [0, 1, 2, 3]);

    // It leaves: the group is classic again, at the group epoch, rebalancing.
    let mut leave = kip848("g", "n", -1);
    leave.topic_partitions = owned(theirs);
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 0, &leave).await;
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    assert_eq!(
        describe848(&mut c, "g").await.groups[0].error_code,
        GROUP_ID_NOT_FOUND
    );
    let d = describe_classic(&mut c, "g").await;
    assert_eq!(d.group_state.as_str(), "PreparingRebalance");
    assert_eq!((d.protocol_type.as_str(), d.members.len()), ("consumer", 1));
    // Its generation is still the classic member's: commits still count.
    assert_eq!(commit(&mut c, "g", &k, epoch, 8).await, 0);
    let r: HeartbeatResponse = c
        .call(ApiKey::Heartbeat, 4, &hb.clone().with_generation_id(epoch))
        .await;
    assert_eq!(r.error_code, REBALANCE_IN_PROGRESS);

    // A restart finds the classic group, its member and the offsets.
    broker.stop().await;
    let broker = start(dir.path()).await;
    let mut c = broker.client().await;
    assert_eq!(
        describe848(&mut c, "g").await.groups[0].error_code,
        GROUP_ID_NOT_FOUND
    );
    let d = describe_classic(&mut c, "g").await;
    assert_eq!((d.protocol_type.as_str(), d.members.len()), ("consumer", 1));
    assert_eq!(committed(&mut c, "g").await, 8);
    // The rebalance the downgrade started is still on: the member rejoins.
    let r: HeartbeatResponse = c
        .call(ApiKey::Heartbeat, 4, &hb.clone().with_generation_id(epoch))
        .await;
    assert_eq!(r.error_code, REBALANCE_IN_PROGRESS);
    // The member rejoins and, alone, leads and takes every partition.
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join_req("g", &k, "consumer", &[]))
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.leader.as_str(), k.as_str());
    assert!(r.generation_id > epoch);
    broker.stop().await;
}
