//! ElectLeaders: preferred leader election (`kafka-leader-election.sh`,
//! admin electLeaders). A Raft group already hands leadership to its
//! preferred replica (the first one) once that replica has every entry; this
//! answers whether it leads, waiting for the handover up to the request's
//! timeout. Raft never elects a replica that lacks committed entries, so an
//! unclean election is never needed: a partition with a leader answers
//! ELECTION_NOT_NEEDED, one without ELIGIBLE_LEADERS_NOT_AVAILABLE.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{RequestContext, str_bytes, topic_name};
use crate::partition::Partition;
use crate::security::acl::AclOperation;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    if !ctx.authorize_cluster(AclOperation::Alter) {
        // The error field arrived with v1; before, no partition is elected.
        let mut resp = ElectLeadersResponse::default();
        if ctx.version >= 1 {
            resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        }
        return resp;
    }
    let broker = &ctx.broker;
    let node = broker.node_id();
    let election = if ctx.version >= 1 {
        req.election_type
    } else {
        PREFERRED
    };
    if election != PREFERRED && election != UNCLEAN {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let explicit = req.topic_partitions.is_some();
    // (topic, partition index, the partition if it exists).
    let wanted: Vec<(String, i32, Option<Arc<Partition>>)> = match req.topic_partitions {
        Some(tps) => tps
            .iter()
            .flat_map(|t| {
                let topic = broker.topic(t.topic.0.as_str());
                t.partitions.iter().map(move |&i| {
                    let p = topic.as_ref().and_then(|t| {
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| t.partitions.get(i).cloned())
                    });
                    (t.topic.0.to_string(), i, p)
                })
            })
            .collect(),
        None => broker
            .topics()
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.clone(), p.index, Some(p.clone())))
            })
            .collect(),
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.clamp(0, 60_000) as u64);
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, index, partition) in wanted {
        let outcome = match partition {
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )),
            Some(p) => elect(&p, node, election, deadline).await,
        };
        // Asked for all partitions, Kafka reports only those it elected.
        if !explicit && matches!(outcome, Err((ResponseError::ElectionNotNeeded, _))) {
            continue;
        }
        let mut r = PartitionResult::default()
            .with_partition_id(index)
            .with_error_message(None);
        if let Err((e, message)) = outcome {
            r = r
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(message)));
        }
        match results.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partition_result.push(r),
            _ => results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&topic))
                    .with_partition_result(vec![r]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

async fn elect(
    p: &Partition,
    node: i32,
    election: i8,
    deadline: tokio::time::Instant,
) -> Result<(), (ResponseError, String)> {
    let preferred = p.replicas.first().copied().unwrap_or(node);
    if election == UNCLEAN {
        return match p.leader(node).0 {
            Some(_) => Err((
                ResponseError::ElectionNotNeeded,
                "the partition has a leader".into(),
            )),
            None => Err((
                ResponseError::EligibleLeadersNotAvailable,
                "no replica with every committed entry is reachable".into(),
            )),
        };
    }
    if p.leader(node).0 == Some(preferred) {
        return Err((
            ResponseError::ElectionNotNeeded,
            format!("the preferred replica {preferred} already leads"),
        ));
    }
    // The group hands over to its preferred replica once that one has every
    // entry: wait for it.
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if p.leader(node).0 == Some(preferred) {
            return Ok(());
        }
    }
    Err((
        ResponseError::PreferredLeaderNotAvailable,
        format!("the preferred replica {preferred} did not take over in time"),
    ))
}
