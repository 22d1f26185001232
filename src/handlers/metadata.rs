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
    let (host, port) = broker.config.advertised();
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
        for wanted in req.topics.unwrap_or_default() {
            let found = match &wanted.name {
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
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(str_bytes(host))
                .with_port(port),
        ])
        .with_topics(topics);
    if ctx.version >= 1 {
        resp.controller_id = node;
    }
    if ctx.version >= 2 {
        resp.cluster_id = Some(str_bytes(broker.cluster_id()));
    }
    resp
}

/// A topic's entry; fields a version lacks stay at their defaults (the encoder
/// refuses non-default values there).
fn describe(t: &Topic, node: BrokerId, version: i16) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|i| {
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if version >= 7 {
                p.leader_epoch = 0;
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
