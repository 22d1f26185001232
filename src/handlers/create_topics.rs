//! CreateTopics: name, partition and replication checks, config validation,
//! manual assignments, validate_only.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{RequestContext, str_bytes};
use crate::broker::{Placement, Topic};
use crate::security::acl::AclOperation;
use crate::topic_config;

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.as_str().to_owned()))
        .map(|t| t.name.0.as_str().to_owned())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    // CREATE on the cluster covers every topic; otherwise CREATE on each.
    let cluster_create = ctx.authorize_cluster(AclOperation::Create);
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        // The error message is null unless there is an error.
        let mut r = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_message(None);
        let outcome = if duplicated.contains(&name) {
            Err((
                ResponseError::InvalidRequest.code(),
                format!("topic '{name}' appears more than once in the request"),
            ))
        } else if !cluster_create && !ctx.authorize_topic(AclOperation::Create, &name) {
            Err((
                ResponseError::TopicAuthorizationFailed.code(),
                "Authorization failed.".to_owned(),
            ))
        } else {
            create_one(ctx, &t, req.validate_only, req.timeout_ms).await
        };
        match outcome {
            Ok(topic) => {
                if ctx.version >= 7 {
                    r.topic_id = topic.id;
                }
                if ctx.version >= 5 {
                    r.num_partitions = if topic.partitions.is_empty() {
                        resolved_partitions(ctx, &t)
                    } else {
                        topic.partitions.len() as i32
                    };
                    r.replication_factor = match topic.partitions.first() {
                        Some(p) => p.replicas().len().max(1) as i16,
                        None => resolved_replication_factor(ctx, &t),
                    };
                    // The configs only with DESCRIBE_CONFIGS on the topic.
                    if ctx.authorize_topic(AclOperation::DescribeConfigs, &name) {
                        r.configs = Some(configs_of(ctx, &topic));
                    } else {
                        r.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
                    }
                }
            }
            Err((code, message)) => {
                info_limited!(topic = %name, code, detail = %message, "topic not created");
                r.error_code = code;
                if ctx.version >= 1 {
                    r.error_message = Some(str_bytes(message));
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn resolved_partitions(
    ctx: &RequestContext,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> i32 {
    if !t.assignments.is_empty() {
        t.assignments.len() as i32
    } else if t.num_partitions == -1 {
        ctx.broker.config.num_partitions
    } else {
        t.num_partitions
    }
}

/// The replication factor a validate_only request would get.
fn resolved_replication_factor(
    ctx: &RequestContext,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> i16 {
    if let Some(a) = t.assignments.first() {
        a.broker_ids.len() as i16
    } else if t.replication_factor == -1 {
        ctx.broker.config.default_replication_factor
    } else {
        t.replication_factor
    }
}

async fn create_one(
    ctx: &RequestContext,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
    timeout_ms: i32,
) -> Result<std::sync::Arc<Topic>, (i16, String)> {
    let mut overrides = BTreeMap::new();
    let mut nulls = Vec::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                overrides.insert(c.name.as_str().to_owned(), v.as_str().to_owned());
            }
            None => nulls.push(c.name.as_str()),
        }
    }
    if !nulls.is_empty() {
        return Err((
            ResponseError::InvalidConfig.code(),
            format!(
                "Null value not supported for topic configs: {}",
                nulls.join(",")
            ),
        ));
    }
    let placement = if t.assignments.is_empty() {
        Placement::Auto {
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
        }
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "Both numPartitions or replicationFactor and replicasAssignments were set. \
                 Both cannot be used at the same time."
                    .into(),
            ));
        }
        for (i, a) in t.assignments.iter().enumerate() {
            if a.partition_index != i as i32 {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    "assignments must list partitions 0..n in order".into(),
                ));
            }
        }
        let lists = t
            .assignments
            .iter()
            .map(|a| broker_ids(&a.broker_ids))
            .collect::<Result<Vec<_>, _>>()?;
        if ctx.broker.cluster().is_none() {
            // A single broker holds every replica itself.
            let node = ctx.broker.node_id() as u64;
            if lists
                .iter()
                .any(|l| l.is_empty() || l.iter().any(|&b| b != node))
            {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!("replicas must be broker {node}, the only broker"),
                ));
            }
        }
        // In a cluster, the broker checks the lists against the image.
        Placement::Explicit(lists)
    };
    ctx.broker
        .create_topic(
            t.name.0.as_str(),
            placement,
            overrides,
            validate_only,
            crate::broker::admin_wait(timeout_ms),
        )
        .await
        .map_err(|e| (e.code, e.message))
}

/// A replica list from a request as node ids; a negative id is no broker.
pub(super) fn broker_ids(
    ids: &[kafka_protocol::messages::BrokerId],
) -> Result<Vec<u64>, (i16, String)> {
    ids.iter()
        .map(|b| {
            u64::try_from(b.0).map_err(|_| {
                (
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!("{} is not a broker id", b.0),
                )
            })
        })
        .collect()
}

/// The new topic's configs with their sources, as DescribeConfigs reports
/// them (min.insync.replicas from the cluster level, as in Kafka 4.1+).
fn configs_of(ctx: &RequestContext, topic: &Topic) -> Vec<CreatableTopicConfigs> {
    topic_config::describe(&ctx.broker.config, &topic.overrides)
        .into_iter()
        .map(|d| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(d.def.name))
                .with_value(Some(str_bytes(d.value)))
                .with_config_source(d.source)
        })
        .collect()
}
