//! DescribeTopicPartitions (KIP-966): topics and their partitions, paged by
//! a cursor so that topics with very many partitions fit. Newer admin
//! clients use it in place of Metadata to describe topics by name.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

use super::{RequestContext, topic_name};
use crate::security::acl::AclOperation;

/// Kafka's `max.request.partition.size.limit`: partitions per answer at most.
const PARTITION_LIMIT: usize = 2000;

pub async fn handle(
    ctx: &RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let broker = &ctx.broker;
    let node = broker.node_id();
    let fenced = broker.fenced();
    // Topics in name order: all of them, or those asked for.
    let mut names: Vec<String> = if req.topics.is_empty() {
        // All of them: those the principal may describe.
        broker
            .topics()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| ctx.authorize_topic(AclOperation::Describe, n))
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let unknown_topic = |name: &str, code: ResponseError| {
        DescribeTopicPartitionsResponseTopic::default()
            .with_error_code(code.code())
            .with_name(Some(topic_name(name)))
    };
    if let Some(c) = &req.cursor
        && !req.topics.is_empty()
        && !names.iter().any(|n| n == c.topic_name.0.as_str())
    {
        tracing::debug!(cursor = %c.topic_name.0, "DescribeTopicPartitions cursor not among the topics");
        return DescribeTopicPartitionsResponse::default().with_topics(
            names
                .iter()
                .map(|n| unknown_topic(n, ResponseError::InvalidRequest))
                .collect(),
        );
    }
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, PARTITION_LIMIT);
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in &names {
        let first = match &req.cursor {
            Some(c) if name.as_str() < c.topic_name.0.as_str() => continue,
            Some(c) if name.as_str() == c.topic_name.0.as_str() => {
                c.partition_index.max(0) as usize
            }
            _ => 0,
        };
        if !ctx.authorize_topic(AclOperation::Describe, name) {
            topics.push(unknown_topic(name, ResponseError::TopicAuthorizationFailed));
            continue;
        }
        let Some(t) = broker.topic(name) else {
            topics.push(unknown_topic(name, ResponseError::UnknownTopicOrPartition));
            continue;
        };
        if left == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(first as i32),
            );
            break;
        }
        let mut partitions = Vec::new();
        for part in t.partitions.iter().skip(first) {
            if left == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(name))
                        .with_partition_index(part.index),
                );
                break;
            }
            left -= 1;
            let (leader, epoch) = part.leader(node);
            let replicas: Vec<BrokerId> = if part.replicas().is_empty() {
                vec![BrokerId(node)]
            } else {
                part.replicas().iter().map(|&r| BrokerId(r)).collect()
            };
            let mut p = DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(part.index)
                .with_leader_id(BrokerId(leader.unwrap_or(-1)))
                .with_leader_epoch(epoch)
                .with_isr_nodes(crate::broker::Broker::in_sync(
                    &replicas,
                    &fenced,
                    part.isr().as_deref(),
                ))
                .with_replica_nodes(replicas)
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()));
            if leader.is_none() {
                p.error_code = ResponseError::LeaderNotAvailable.code();
            }
            partitions.push(p);
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(t.id)
                .with_is_internal(t.name == crate::group::OFFSETS_TOPIC)
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
