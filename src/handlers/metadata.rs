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
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};

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
    // KIP-430: the topics' operations this principal may perform, when asked.
    let with_ops = ctx.version >= 8 && req.include_topic_authorized_operations;
    let fenced = broker.fenced();
    let described = |t: &Topic| {
        let mut d = describe(t, node, ctx.version, &fenced);
        if with_ops {
            d.topic_authorized_operations = ctx.authorized_operations(ResourceType::Topic, &t.name);
        }
        d
    };
    if all {
        // Topics this principal may not describe are left out.
        for t in broker.topics() {
            if ctx.authorize_topic(AclOperation::Describe, &t.name) {
                topics.push(described(&t));
            }
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
            let denied = ResponseError::TopicAuthorizationFailed.code();
            let found = match name {
                // Named: DESCRIBE first, whether it exists or not (so
                // existence is not revealed).
                Some(name) if !ctx.authorize_topic(AclOperation::Describe, name.0.as_str()) => {
                    Err((denied, name.0.to_string(), Uuid::nil()))
                }
                Some(name) => {
                    let name = name.0.as_str();
                    match broker.topic(name) {
                        Some(t) => Ok(t),
                        None => {
                            if let Err(e) = validate_topic_name(name) {
                                Err((e.code, name.to_owned(), Uuid::nil()))
                            } else if may_create
                                && broker.config.auto_create_topics_enable
                                && !ctx.authorize_cluster(AclOperation::Create)
                                && !ctx.authorize_topic(AclOperation::Create, name)
                            {
                                // Auto-creation needs CREATE on the cluster or the topic.
                                Err((denied, name.to_owned(), Uuid::nil()))
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
                None => match broker.topic_by_id(wanted.topic_id) {
                    Some(t) if !ctx.authorize_topic(AclOperation::Describe, &t.name) => {
                        Err((denied, String::new(), wanted.topic_id))
                    }
                    Some(t) => Ok(t),
                    None => Err((
                        ResponseError::UnknownTopicId.code(),
                        String::new(),
                        wanted.topic_id,
                    )),
                },
            };
            topics.push(match found {
                Ok(t) => described(&t),
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
    let mut racks = broker.broker_racks();
    let brokers = broker
        .brokers_on(&ctx.session.listener)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_rack(racks.remove(&id).map(str_bytes))
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
    if (8..=10).contains(&ctx.version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations =
            ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME);
    }
    resp
}

/// A topic's entry; fields a version lacks stay at their defaults (the encoder
/// refuses non-default values there).
///
/// In a cluster the leader is the Raft leader as this broker knows it
/// (LEADER_NOT_AVAILABLE while there is none), the epoch its term; the ISR
/// the replicas its leader finds in sync (see `Broker::in_sync`) but the
/// fenced brokers, which are the offline replicas (v5+).
fn describe(
    t: &Topic,
    node: BrokerId,
    version: i16,
    fenced: &std::collections::BTreeSet<i32>,
) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|part| {
            let (leader, epoch) = part.leader(node.0);
            let replicas: Vec<BrokerId> = if part.replicas().is_empty() {
                vec![node]
            } else {
                part.replicas().iter().map(|&r| BrokerId(r)).collect()
            };
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(part.index)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_isr_nodes(crate::broker::Broker::in_sync(
                    &replicas,
                    fenced,
                    part.isr().as_deref(),
                ))
                .with_replica_nodes(replicas.clone());
            if version >= 5 {
                p.offline_replicas = replicas
                    .iter()
                    .filter(|r| fenced.contains(&r.0))
                    .copied()
                    .collect();
            }
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
