//! Metadata: brokers, cluster id, controller, and topics with their partitions.
//! Unknown topics are auto-created when the request and the broker allow it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{RequestContext, str_bytes, topic_name};
use crate::broker::{Topic, validate_topic_name};

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let node = BrokerId(broker.node_id());
    // v0 has no "null = all topics"; an empty list means all there.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    // Auto-creation is implicit before v4.
    let may_create = req.allow_auto_topic_creation || ctx.version < 4;
    let mut topics = Vec::new();
    if all {
        for t in broker.topics() {
            topics.push(describe(&t, node, ctx.version));
        }
    } else {
        let wanted = req.topics.unwrap_or_default();
        // A request that names any topic by id is answered by id alone (the
        // Java admin client sends an empty name next to the id).
        let by_id = wanted.iter().any(|t| !t.topic_id.is_nil());
        for wanted in wanted {
            let name = if by_id { None } else { wanted.name.as_ref() };
            if by_id && wanted.topic_id.is_nil() {
                continue;
            }
            let found = match name {
                Some(name) => {
                    let name = name.0.as_str();
                    match broker.topic(name) {
                        Some(t) => Ok(t),
                        None => {
                            if let Err(e) = validate_topic_name(name) {
                                Err((e.code, name.to_owned(), Uuid::nil()))
                            } else if may_create {
                                broker.auto_create(name).await.ok_or((
                                    ResponseError::UnknownTopicOrPartition.code(),
                                    name.to_owned(),
                                    Uuid::nil(),
                                ))
                            } else {
                                Err((
                                    ResponseError::UnknownTopicOrPartition.code(),
                                    name.to_owned(),
                                    Uuid::nil(),
                                ))
                            }
                        }
                    }
                }
                None => broker.topic_by_id(wanted.topic_id).ok_or((
                    ResponseError::UnknownTopicId.code(),
                    String::new(),
                    wanted.topic_id,
                )),
            };
            topics.push(match found {
                Ok(t) => describe(&t, node, ctx.version),
                Err((code, name, id)) => {
                    let mut t = MetadataResponseTopic::default()
                        .with_error_code(code)
                        .with_name((!name.is_empty()).then(|| topic_name(&name)));
                    if ctx.version >= 10 {
                        t.topic_id = id;
                    }
                    t
                }
            });
        }
    }
    let brokers = broker
        .brokers_on(&ctx.session.listener)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if ctx.version >= 1 {
        resp.controller_id = BrokerId(broker.controller_id());
    }
    if ctx.version >= 2 {
        resp.cluster_id = Some(str_bytes(broker.cluster_id()));
    }
    resp
}

/// A topic's entry; fields a version lacks stay at their defaults (the encoder
/// refuses non-default values there).
///
/// In a cluster the leader is the Raft leader as this broker knows it
/// (LEADER_NOT_AVAILABLE while there is none), the epoch its term. Raft has
/// no ISR: every voter with the committed log can be elected, so the ISR
/// reported is the replica set.
fn describe(t: &Topic, node: BrokerId, version: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|part| {
            let (leader, epoch) = part.leader(node.0);
            let replicas: Vec<BrokerId> = if part.replicas.is_empty() {
                vec![node]
            } else {
                part.replicas.iter().map(|&r| BrokerId(r)).collect()
            };
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(part.index)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_isr_nodes(replicas.clone())
                .with_replica_nodes(replicas);
            if leader.is_none() {
                p.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if version >= 7 {
                p.leader_epoch = epoch;
            }
            p
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_partitions(partitions);
    if version >= 1 {
        topic.is_internal = t.name == crate::group::OFFSETS_TOPIC;
    }
    if version >= 10 {
        topic.topic_id = t.id;
    }
    topic
}
