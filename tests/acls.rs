//! ACLs over the wire: CreateAcls / DescribeAcls / DeleteAcls with Kafka's
//! validation and errors, and the checks they drive in Metadata, Produce and
//! Fetch. The plaintext listener's principal is `User:ANONYMOUS`, so the
//! ACLs here name it.

mod common;

use bytes::Bytes;
use common::{TestBroker, batch, create_topic_with};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn acl(kind: i8, name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(kind)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

async fn create_acls(c: &mut common::Client, acls: Vec<AclCreation>) -> Vec<i16> {
    let r: CreateAclsResponse = c
        .call(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(acls),
        )
        .await;
    r.results.iter().map(|r| r.error_code).collect()
}

fn any_filter() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

async fn describe_acls(
    c: &mut common::Client,
    v: i16,
    f: &DescribeAclsRequest,
) -> DescribeAclsResponse {
    c.call(ApiKey::DescribeAcls, v, f).await
}

async fn produce(c: &mut common::Client, topic: &str) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(1, 1_000, None))),
                ]),
        ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
    r.responses[0].partition_responses[0].error_code
}

async fn fetch(c: &mut common::Client, topic: &str) -> (i16, Option<Bytes>) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.clone())
}

async fn metadata(c: &mut common::Client, topics: Option<&[&str]>) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true);
    c.call(ApiKey::Metadata, 12, &req).await
}

#[tokio::test]
async fn without_an_authorizer_the_acl_apis_answer_security_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    for v in 1..=3 {
        let r: CreateAclsResponse = c
            .call(
                ApiKey::CreateAcls,
                v,
                &CreateAclsRequest::default().with_creations(vec![acl(
                    TOPIC,
                    "t",
                    LITERAL,
                    "User:ANONYMOUS",
                    READ,
                    ALLOW,
                )]),
            )
            .await;
        assert_eq!(r.results[0].error_code, SECURITY_DISABLED, "v{v}");
        assert_eq!(
            describe_acls(&mut c, v, &any_filter()).await.error_code,
            SECURITY_DISABLED
        );
        let r: DeleteAclsResponse = c
            .call(
                ApiKey::DeleteAcls,
                v,
                &DeleteAclsRequest::default().with_filters(vec![
                    DeleteAclsFilter::default()
                        .with_resource_name_filter(None)
                        .with_principal_filter(None)
                        .with_host_filter(None)
                        .with_resource_type_filter(ANY)
                        .with_pattern_type_filter(ANY)
                        .with_operation(ANY)
                        .with_permission_type(ANY),
                ]),
            )
            .await;
        assert_eq!(r.filter_results[0].error_code, SECURITY_DISABLED);
    }
    // Everything else works as before: no authorizer, no checks.
    create_topic_with(&mut c, "open", &[]).await;
    assert_eq!(produce(&mut c, "open").await, 0);
    broker.stop().await;
}

#[tokio::test]
async fn acls_decide_what_a_principal_sees_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut sluice::config::Config| {
        c.authorizer_class_name = "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into();
        c.allow_everyone_if_no_acl_found = false;
    };
    let broker = TestBroker::start_with(dir.path(), tweak).await;
    let mut c = broker.client().await;
    // No ACL at all: not even ACLs may be managed.
    let me = "User:ANONYMOUS";
    assert_eq!(
        create_acls(&mut c, vec![acl(TOPIC, "t", LITERAL, me, READ, ALLOW)]).await,
        [CLUSTER_AUTHORIZATION_FAILED]
    );
    assert_eq!(
        describe_acls(&mut c, 3, &any_filter()).await.error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    broker.stop().await;

    // With allow.everyone.if.no.acl.found the cluster is open until an ACL
    // names it.
    let broker = TestBroker::start_with(dir.path(), |c| {
        tweak(c);
        c.allow_everyone_if_no_acl_found = true;
    })
    .await;
    let mut c = broker.client().await;
    let codes = create_acls(
        &mut c,
        vec![
            acl(CLUSTER, "kafka-cluster", LITERAL, me, ALL, ALLOW),
            acl(TOPIC, "orders", LITERAL, me, READ, ALLOW),
            acl(TOPIC, "pay", PREFIXED, me, WRITE, ALLOW),
            acl(TOPIC, "secret", LITERAL, "User:bob", READ, ALLOW),
            acl(TOPIC, "*", PREFIXED, me, READ, ALLOW),
            acl(TOPIC, "", LITERAL, me, READ, ALLOW),
            acl(TOPIC, "x", MATCH, me, READ, ALLOW),
            acl(TOPIC, "x", LITERAL, "alice", READ, ALLOW),
            acl(CLUSTER, "other", LITERAL, me, ALL, ALLOW),
        ],
    )
    .await;
    assert_eq!(
        codes,
        [
            0,
            0,
            0,
            0,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST
        ]
    );
    let all = describe_acls(&mut c, 3, &any_filter()).await;
    assert_eq!(all.error_code, 0);
    assert_eq!(all.resources.len(), 4);
    // MATCH: the bindings that apply to topic "payments".
    let r = describe_acls(
        &mut c,
        1,
        &any_filter()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(Some(s("payments")))
            .with_pattern_type_filter(MATCH),
    )
    .await;
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.resources[0].resource_name.as_str(), "pay");
    assert_eq!(r.resources[0].pattern_type, PREFIXED);
    // A filter with UNKNOWN elements is refused.
    let r = describe_acls(&mut c, 3, &any_filter().with_operation(0)).await;
    assert_eq!(r.error_code, INVALID_REQUEST);

    for t in ["orders", "payments", "secret"] {
        let r = create_topic_with(&mut c, t, &[]).await;
        assert_eq!(r.topics[0].error_code, 0, "{t}");
    }
    // Metadata hides what the principal may not describe, and refuses it
    // by name.
    let m = metadata(&mut c, None).await;
    let mut names: Vec<&str> = m
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["orders", "payments"]);
    let orders = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "orders")
        .unwrap();
    assert_eq!(
        orders.topic_authorized_operations,
        (1 << READ) | (1 << DESCRIBE)
    );
    let m = metadata(&mut c, Some(&["secret"])).await;
    assert_eq!(m.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);

    // READ on orders, WRITE on pay*: nothing else.
    assert_eq!(produce(&mut c, "orders").await, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(produce(&mut c, "payments").await, 0);
    assert_eq!(produce(&mut c, "secret").await, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(fetch(&mut c, "orders").await.0, 0);
    assert_eq!(
        fetch(&mut c, "payments").await.0,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(fetch(&mut c, "secret").await.0, TOPIC_AUTHORIZATION_FAILED);

    // DENY wins over ALLOW.
    assert_eq!(
        create_acls(
            &mut c,
            vec![acl(TOPIC, "pay", PREFIXED, "User:*", WRITE, DENY)]
        )
        .await,
        [0]
    );
    assert_eq!(
        produce(&mut c, "payments").await,
        TOPIC_AUTHORIZATION_FAILED
    );

    // DeleteAcls returns what each filter matched; ACLs survive a restart.
    let r: DeleteAclsResponse = c
        .call(
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(TOPIC)
                    .with_resource_name_filter(Some(s("pay")))
                    .with_pattern_type_filter(PREFIXED)
                    .with_operation(ANY)
                    .with_permission_type(DENY),
                DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(TOPIC)
                    .with_pattern_type_filter(0)
                    .with_operation(ANY)
                    .with_permission_type(ANY),
            ]),
        )
        .await;
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    assert_eq!(r.filter_results[0].matching_acls[0].permission_type, DENY);
    assert_eq!(r.filter_results[1].error_code, INVALID_REQUEST);
    assert_eq!(produce(&mut c, "payments").await, 0);
    broker.stop().await;

    let broker = TestBroker::start_with(dir.path(), tweak).await;
    let mut c = broker.client().await;
    let all = describe_acls(&mut c, 2, &any_filter()).await;
    assert_eq!(all.error_code, 0);
    let count: usize = all.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(count, 4);
    assert_eq!(fetch(&mut c, "orders").await.0, 0);
    assert_eq!(fetch(&mut c, "secret").await.0, TOPIC_AUTHORIZATION_FAILED);
    broker.stop().await;
}

/// The checks the admin APIs and acks=0 need: DescribeTopicPartitions lists
/// only what the principal may describe (and refuses the rest by name),
/// DescribeProducers needs READ, and an acks=0 produce that is refused
/// closes the connection, the one answer Kafka's protocol leaves.
#[tokio::test]
async fn describe_apis_and_acks_0_meet_the_acls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.authorizer_class_name = "kafka.security.authorizer.AclAuthorizer".into();
        c.allow_everyone_if_no_acl_found = true;
    })
    .await;
    let mut c = broker.client().await;
    for t in ["orders", "secret"] {
        assert_eq!(
            create_topic_with(&mut c, t, &[]).await.topics[0].error_code,
            0
        );
    }
    let me = "User:ANONYMOUS";
    let codes = create_acls(
        &mut c,
        vec![
            acl(CLUSTER, "kafka-cluster", LITERAL, me, ALL, ALLOW),
            acl(TOPIC, "orders", LITERAL, me, DESCRIBE, ALLOW),
            acl(TOPIC, "secret", LITERAL, "User:bob", ALL, ALLOW),
        ],
    )
    .await;
    assert_eq!(codes, [0, 0, 0]);

    let dtp = |topics: &[&str]| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(TopicName(s(t)))
                    })
                    .collect(),
            )
            .with_response_partition_limit(100)
    };
    let all: DescribeTopicPartitionsResponse =
        c.call(ApiKey::DescribeTopicPartitions, 0, &dtp(&[])).await;
    let names: Vec<&str> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.as_str())
        .collect();
    assert_eq!(names, ["orders"]);
    let named: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &dtp(&["orders", "secret"]),
        )
        .await;
    let codes: Vec<i16> = named.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, TOPIC_AUTHORIZATION_FAILED]);
    assert!(named.topics[1].partitions.is_empty());

    // DESCRIBE on orders is not READ: DescribeProducers refuses both.
    let dp = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s("orders")))
            .with_partition_indexes(vec![0]),
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s("secret")))
            .with_partition_indexes(vec![0]),
    ]);
    let r: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &dp).await;
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        codes,
        [TOPIC_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED]
    );
    assert_eq!(
        create_acls(&mut c, vec![acl(TOPIC, "orders", LITERAL, me, READ, ALLOW)]).await,
        [0]
    );
    let r: DescribeProducersResponse = c.call(ApiKey::DescribeProducers, 0, &dp).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // A regular-expression subscription brings in only the topics the
    // member may describe: "secret" matches but is bob's.
    assert_eq!(
        create_acls(&mut c, vec![acl(GROUP, "g", LITERAL, me, READ, ALLOW)]).await,
        [0]
    );
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_regex(Some(s("orders|secret")))
        .with_topic_partitions(Some(vec![]));
    let r: ConsumerGroupHeartbeatResponse = c.call(ApiKey::ConsumerGroupHeartbeat, 1, &join).await;
    assert_eq!(r.error_code, 0);
    let assigned = r.assignment.expect("assigned").topic_partitions;
    let m = metadata(&mut c, Some(&["orders"])).await;
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].topic_id, m.topics[0].topic_id);

    // acks=0: a refused write closes the connection and stores nothing.
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s("orders")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(1, 1_000, None))),
                ]),
        ]);
    let (_, frame) = c.encode_request(ApiKey::Produce, 9, &req);
    c.send_raw(&frame).await;
    assert!(c.read_frame().await.is_none(), "the connection stays open");
    let mut c = broker.client().await;
    let (code, records) = fetch(&mut c, "orders").await;
    assert_eq!(code, 0);
    assert!(records.is_none_or(|r| r.is_empty()));
    broker.stop().await;
}
