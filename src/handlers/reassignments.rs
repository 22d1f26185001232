//! AlterPartitionReassignments and ListPartitionReassignments
//! (`kafka-reassign-partitions.sh`, Admin.alterPartitionReassignments): a
//! partition's replicas move to other brokers. The request is checked as
//! Kafka's controller checks it, then recorded through the controller
//! quorum (`MetadataRecord::AlterReassignment`); the partition's Raft group
//! moves (learners, catch-up, joint configuration, see
//! `Replica::set_target_voters`) and its leader publishes the completion,
//! which makes the target the assignment. The answer comes once the
//! reassignment is recorded, as in Kafka; ListPartitionReassignments shows
//! it until it completes.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{RequestContext, str_bytes, topic_name};
use crate::replication::metadata::{ClusterImage, MetadataRecord, PartitionRef};
use crate::security::acl::AclOperation;

type Verdict = Result<(), (ResponseError, String)>;

pub async fn alter(
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change);
    if !ctx.authorize_cluster(AclOperation::Alter) {
        return resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("ALTER on the cluster is not allowed")));
    }
    // v0 has no choice: replication factor changes are allowed.
    let allow_rf_change = ctx.version < 1 || req.allow_replication_factor_change;
    let wait = Duration::from_millis(req.timeout_ms.clamp(1000, 60_000) as u64);
    let mut seen = BTreeSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let outcome = if !seen.insert((name.clone(), p.partition_index)) {
                Err((
                    ResponseError::InvalidRequest,
                    format!("{name}-{} appears twice in the request", p.partition_index),
                ))
            } else {
                let target = p
                    .replicas
                    .map(|r| r.iter().map(|b| b.0).collect::<Vec<i32>>());
                reassign(ctx, &name, p.partition_index, target, allow_rf_change, wait).await
            };
            let mut r = ReassignablePartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_message(None);
            if let Err((e, message)) = outcome {
                tracing::info!(topic = %name, partition = p.partition_index, error = ?e, %message, "reassignment refused");
                r = r
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(message)));
            }
            partitions.push(r);
        }
        resp.responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    resp
}

/// Checks one partition's reassignment (Kafka's order: the partition, the
/// cancel, the replica list, the replication factor) and records it.
async fn reassign(
    ctx: &RequestContext,
    name: &str,
    index: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
    wait: Duration,
) -> Verdict {
    let unknown = || {
        Err((
            ResponseError::UnknownTopicOrPartition,
            format!("{name}-{index} does not exist"),
        ))
    };
    let Some(topic) = ctx.broker.topic(name) else {
        return unknown();
    };
    let Some(partition) = usize::try_from(index)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return unknown();
    };
    let Some(cluster) = ctx.broker.cluster() else {
        // One broker: its replica stays where it is.
        let me = ctx.broker.node_id();
        return match target {
            None => Err((
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {name}-{index} is in progress"),
            )),
            Some(t) if t == [me] => Ok(()),
            Some(t) => Err((
                ResponseError::InvalidReplicaAssignment,
                format!("{t:?}: this broker ({me}) is the only one"),
            )),
        };
    };
    let key = (name.to_owned(), index);
    let ongoing =
        cluster.with_image(|img| img.reassignments.get(&key).is_some_and(|r| !r.cancelled));
    let partition_ref = PartitionRef {
        name: name.to_owned(),
        topic_id: topic.id.to_string(),
        partition: index,
    };
    let Some(target) = target else {
        if !ongoing {
            return Err((
                ResponseError::NoReassignmentInProgress,
                format!("no reassignment of {name}-{index} is in progress"),
            ));
        }
        let record = MetadataRecord::AlterReassignment {
            partition: partition_ref,
            target: None,
        };
        return cluster
            .propose_until(&record, wait, |img| {
                img.reassignments.get(&key).is_none_or(|r| r.cancelled)
            })
            .await
            .map(drop)
            .map_err(|_| timed_out());
    };
    let target = check_replicas(cluster.with_image(|img| img.clone()), &target)?;
    let assigned: Vec<u64> = partition.replicas().iter().map(|&r| r as u64).collect();
    let current_rf = cluster.with_image(|img| {
        img.topics
            .get(name)
            .and_then(|t| t.assignment.get(index as usize))
            .map_or(assigned.len(), Vec::len)
    });
    if !allow_rf_change && target.len() != current_rf {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "the reassignment changes the replication factor from {current_rf} to {}",
                target.len()
            ),
        ));
    }
    let already = cluster.with_image(|img| {
        !img.reassignments.contains_key(&key)
            && img
                .topics
                .get(name)
                .and_then(|t| t.assignment.get(index as usize))
                == Some(&target)
    });
    if already {
        return Ok(());
    }
    let record = MetadataRecord::AlterReassignment {
        partition: partition_ref,
        target: Some(target.clone()),
    };
    cluster
        .propose_until(&record, wait, |img| {
            img.reassignments
                .get(&key)
                .is_some_and(|r| !r.cancelled && r.target == target)
                || (!img.reassignments.contains_key(&key)
                    && img
                        .topics
                        .get(name)
                        .and_then(|t| t.assignment.get(index as usize))
                        == Some(&target))
        })
        .await
        .map(drop)
        .map_err(|_| timed_out())
}

fn timed_out() -> (ResponseError, String) {
    (
        ResponseError::RequestTimedOut,
        "the controller quorum did not record the reassignment in time".into(),
    )
}

/// A replica list as Kafka's controller accepts it: not empty, no broker
/// twice, every broker registered.
fn check_replicas(
    image: ClusterImage,
    target: &[i32],
) -> Result<Vec<u64>, (ResponseError, String)> {
    let bad = |m: String| Err((ResponseError::InvalidReplicaAssignment, m));
    if target.is_empty() {
        return bad("the replica list is empty".into());
    }
    let mut seen = BTreeSet::new();
    for &b in target {
        if !seen.insert(b) {
            return bad(format!("broker {b} appears twice in {target:?}"));
        }
        if b < 0 || !image.brokers.contains_key(&(b as u64)) {
            return bad(format!("broker {b} is not registered"));
        }
    }
    Ok(target.iter().map(|&b| b as u64).collect())
}

pub async fn list(
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let resp = ListPartitionReassignmentsResponse::default();
    if !ctx.authorize_cluster(AclOperation::Describe) {
        return resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("DESCRIBE on the cluster is not allowed")));
    }
    let Some(cluster) = ctx.broker.cluster() else {
        return resp;
    };
    let wanted: Option<BTreeSet<(String, i32)>> = req.topics.map(|ts| {
        ts.iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|&i| (t.name.0.to_string(), i))
            })
            .collect()
    });
    let topics = cluster.with_image(|img| {
        let mut out: Vec<OngoingTopicReassignment> = Vec::new();
        for ((name, index), r) in &img.reassignments {
            if r.cancelled
                || wanted
                    .as_ref()
                    .is_some_and(|w| !w.contains(&(name.clone(), *index)))
            {
                continue;
            }
            let assigned = img
                .topics
                .get(name)
                .and_then(|t| t.assignment.get(*index as usize))
                .cloned()
                .unwrap_or_default();
            let ids = |v: Vec<u64>| {
                v.into_iter()
                    .map(|b| BrokerId(b as i32))
                    .collect::<Vec<_>>()
            };
            let p = OngoingPartitionReassignment::default()
                .with_partition_index(*index)
                .with_replicas(ids(img.holders(name, *index)))
                .with_adding_replicas(ids(r
                    .target
                    .iter()
                    .filter(|b| !assigned.contains(b))
                    .copied()
                    .collect()))
                .with_removing_replicas(ids(assigned
                    .iter()
                    .filter(|b| !r.target.contains(b))
                    .copied()
                    .collect()));
            match out.last_mut() {
                Some(t) if t.name.0.as_str() == name => t.partitions.push(p),
                _ => out.push(
                    OngoingTopicReassignment::default()
                        .with_name(topic_name(name))
                        .with_partitions(vec![p]),
                ),
            }
        }
        out
    });
    resp.with_topics(topics)
}
