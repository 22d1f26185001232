//! Every version in the served table is answered, and its response decodes.
//!
//! The generated encoders refuse a field that a version lacks, and a refusal
//! closes the client's connection; this walks each served range so such a bug
//! shows up here rather than with a client.

mod common;

use common::{TestBroker, batch};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::handlers::SERVED;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

#[tokio::test]
async fn every_served_version_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;

    for v in range(ApiKey::ApiVersions) {
        let r: ApiVersionsResponse = c
            .call(ApiKey::ApiVersions, v, &ApiVersionsRequest::default())
            .await;
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
        assert_eq!(r.api_keys.len(), SERVED.len());
    }

    for v in range(ApiKey::CreateTopics) {
        let topic = format!("t{v}");
        let req = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(5000);
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req).await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
        // Creating it again names the error.
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req).await;
        assert_eq!(r.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS at v{v}");
    }

    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 {
            Some(vec![])
        } else {
            Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("t2"))),
                MetadataRequestTopic::default().with_name(Some(name(&format!("missing-{v}")))),
            ])
        };
        // Before v4 auto-creation is implicit, so the missing topic gets created.
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(v < 4);
        let r: MetadataResponse = c.call(ApiKey::Metadata, v, &req).await;
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
        let t2 = r
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "t2"))
            .expect("t2 listed");
        assert_eq!(t2.partitions.len(), 2);
        if v >= 4 {
            let missing = r
                .topics
                .iter()
                .find(|t| t.error_code != 0)
                .expect("missing topic");
            assert_eq!(missing.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION at v{v}");
        }
    }

    for v in range(ApiKey::InitProducerId) {
        let r: InitProducerIdResponse = c
            .call(
                ApiKey::InitProducerId,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
    }

    let mut expected_offset = 0;
    for v in range(ApiKey::Produce) {
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("t2"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(3, 1000 * v as i64, None))),
                        PartitionProduceData::default()
                            .with_index(7)
                            .with_records(Some(batch(1, 0, None))),
                    ]),
            ]);
        let r: ProduceResponse = c.call(ApiKey::Produce, v, &req).await;
        let parts = &r.responses[0].partition_responses;
        assert_eq!(
            (parts[0].error_code, parts[0].base_offset),
            (0, expected_offset),
            "Produce v{v}"
        );
        assert_eq!(parts[1].error_code, 3, "unknown partition at v{v}");
        expected_offset += 3;
    }

    let id = {
        let r: MetadataResponse = c
            .call(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("t2"))),
                ])),
            )
            .await;
        r.topics[0].topic_id
    };
    for v in range(ApiKey::Fetch) {
        let mut ft = FetchTopic::default().with_partitions(vec![
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20),
        ]);
        if v >= 13 {
            ft.topic_id = id;
        } else {
            ft.topic = name("t2");
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(10)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![ft]);
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &req).await;
        let pd = &r.responses[0].partitions[0];
        assert_eq!(pd.error_code, 0, "Fetch v{v}");
        assert_eq!(pd.high_watermark, expected_offset, "Fetch v{v}");
        assert!(!pd.records.as_ref().unwrap().is_empty(), "Fetch v{v}");
    }

    for v in range(ApiKey::ListOffsets) {
        if v == 0 {
            // v0 has its own layout: a list of offsets, here the latest.
            use sluice_protocol::list_offsets_v0::*;
            let partition = |i| RequestPartition {
                partition_index: i,
                timestamp: -1,
                max_num_offsets: 1,
            };
            let req = ListOffsetsV0Request {
                replica_id: -1,
                topics: vec![
                    RequestTopic {
                        name: StrBytes::from_static_str("t2"),
                        partitions: vec![partition(0), partition(9)],
                    },
                    RequestTopic {
                        name: StrBytes::from_static_str("no-such-topic"),
                        partitions: vec![partition(0)],
                    },
                ],
            };
            let r: ListOffsetsV0Response = c.call(ApiKey::ListOffsets, 0, &req).await;
            let t2 = &r.topics[0].partitions;
            assert_eq!(
                (t2[0].error_code, &t2[0].old_style_offsets[..]),
                (0, &[expected_offset][..])
            );
            assert_eq!((t2[1].error_code, t2[1].old_style_offsets.len()), (3, 0));
            assert_eq!(
                r.topics[1].partitions[0].error_code, 3,
                "unknown topic at v0"
            );
            continue;
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("t2"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.offset),
            (0, expected_offset),
            "ListOffsets v{v}"
        );
    }
    for v in range(ApiKey::DescribeCluster) {
        let r: DescribeClusterResponse = c
            .call(
                ApiKey::DescribeCluster,
                v,
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .await;
        assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].port, broker.addr.port() as i32);
    }

    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t2"))
                    .with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                        "num.partitions",
                    )])),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("no-such-topic"))
                    .with_configuration_keys(None),
            ]);
        let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req).await;
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        let retention = r.results[0]
            .configs
            .iter()
            .find(|e| e.name.as_str() == "retention.ms")
            .expect("retention.ms listed");
        assert_eq!(retention.value.as_deref(), Some("604800000"));
        assert_eq!(retention.config_source, 5, "DEFAULT_CONFIG");
        assert_eq!(retention.synonyms[0].name.as_str(), "log.retention.ms");
        assert_eq!(r.results[1].configs.len(), 1);
        assert_eq!(
            r.results[2].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION at v{v}"
        );
    }

    for v in range(ApiKey::CreatePartitions) {
        let topic = format!("t{}", 2 + v);
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(&topic))
                    .with_count(4)
                    .with_assignments(None),
            ]);
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(r.results[0].error_code, 37, "INVALID_PARTITIONS at v{v}");
    }

    for v in range(ApiKey::DeleteTopics) {
        let topic = format!("t{}", 1 + v);
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(5000);
        if v >= 6 {
            req.topics = vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&topic))),
            ];
        } else {
            req.topic_names = vec![name(&topic)];
        }
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req).await;
        assert_eq!(r.responses[0].error_code, 3, "deleting twice at v{v}");
    }

    for v in range(ApiKey::DescribeQuorum) {
        use describe_quorum_request::{PartitionData, TopicData};
        let ask = |topic: &str, partition| {
            DescribeQuorumRequest::default().with_topics(vec![
                TopicData::default()
                    .with_topic_name(name(topic))
                    .with_partitions(vec![
                        PartitionData::default().with_partition_index(partition),
                    ]),
            ])
        };
        let req = ask("__cluster_metadata", 0);
        let r: DescribeQuorumResponse = c.call(ApiKey::DescribeQuorum, v, &req).await;
        assert_eq!(r.error_code, 0, "DescribeQuorum v{v}");
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 1, 0));
        assert_eq!(p.current_voters.len(), 1, "a quorum of one");
        assert_eq!(r.nodes.len(), if v >= 2 { 1 } else { 0 }, "nodes at v{v}");
        // Kafka has one quorum: any other partition is an invalid request.
        for bad in [ask("__cluster_metadata", 1), ask("t2", 0)] {
            let r: DescribeQuorumResponse = c.call(ApiKey::DescribeQuorum, v, &bad).await;
            assert_eq!(r.error_code, 42, "INVALID_REQUEST at v{v}");
        }
    }

    let req = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name("moving"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(r.topics[0].error_code, 0);
    for v in range(ApiKey::AlterPartitionReassignments) {
        use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
        let ask = |replicas: Option<Vec<i32>>| {
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_allow_replication_factor_change(true)
                .with_topics(vec![
                    ReassignableTopic::default()
                        .with_name(name("moving"))
                        .with_partitions(vec![
                            ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(
                                    replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                                ),
                        ]),
                ])
        };
        // One broker: its replica stays where it is; another broker does
        // not exist; there is never a reassignment to cancel.
        for (replicas, code) in [(Some(vec![1]), 0), (Some(vec![2]), 39), (None, 85)] {
            let r: AlterPartitionReassignmentsResponse = c
                .call(
                    ApiKey::AlterPartitionReassignments,
                    v,
                    &ask(replicas.clone()),
                )
                .await;
            assert_eq!(r.error_code, 0, "AlterPartitionReassignments v{v}");
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, code, "{replicas:?} at v{v}");
        }
    }
    for v in range(ApiKey::ListPartitionReassignments) {
        let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(5000);
        let r: ListPartitionReassignmentsResponse =
            c.call(ApiKey::ListPartitionReassignments, v, &req).await;
        assert_eq!(r.error_code, 0, "ListPartitionReassignments v{v}");
        assert!(r.topics.is_empty());
    }
    // One broker: it cannot leave, and no other is registered.
    for v in range(ApiKey::UnregisterBroker) {
        for (id, code) in [(1, 42), (7, 102)] {
            let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
            let r: UnregisterBrokerResponse = c.call(ApiKey::UnregisterBroker, v, &req).await;
            assert_eq!(r.error_code, code, "UnregisterBroker of {id} v{v}");
            assert!(r.error_message.is_some());
        }
    }
    broker.stop().await;
}
