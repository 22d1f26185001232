//! ElectLeaders: preferred leader election (`kafka-leader-election.sh`,
//! admin electLeaders). Leadership does not move back to a returning
//! preferred replica by itself; this asks for it through the controller
//! quorum (a `MetadataRecord::ElectPreferred`, as the active controller's
//! leader balancing does): each partition's Raft leader hands over once the
//! preferred replica (the first assigned) has every entry. The answer waits
//! for the hand-over up to the request's timeout.
//!
//! Raft never elects a replica that lacks committed entries, so an unclean
//! election is needed only when a majority of a partition's replicas is
//! gone: then, for a topic with `unclean.leader.election.enable`, a
//! `MetadataRecord::UncleanElection` starts the group again from the first
//! replica left, keeping what that replica holds; otherwise it is refused
//! (ELIGIBLE_LEADERS_NOT_AVAILABLE, with the reason). A partition with a
//! live majority answers ELECTION_NOT_NEEDED.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{RequestContext, str_bytes, topic_name};
use crate::partition::Partition;
use crate::replication::metadata::{MetadataRecord, PartitionRef};
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
    // Judge every partition first; those that need an election are asked
    // for in one record, then awaited together.
    let outcomes: Vec<(String, i32, Outcome)> = wanted
        .into_iter()
        .map(|(topic, index, partition)| {
            let outcome = match partition {
                None => Outcome::Done(Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("{topic}-{index} does not exist"),
                ))),
                Some(p) => judge(ctx, &topic, p, election),
            };
            (topic, index, outcome)
        })
        .collect();
    ask_for_elections(ctx, &outcomes, deadline).await;
    let outcomes = ask_for_unclean_elections(ctx, outcomes, deadline).await;
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, index, outcome) in outcomes {
        let outcome = match outcome {
            Outcome::Done(r) => r,
            Outcome::Elect {
                partition,
                preferred,
            } => wait_for(&partition, node, preferred, deadline).await,
            // Each was asked for and turned into its verdict above.
            Outcome::Unclean(_) => Err((
                ResponseError::UnknownServerError,
                "the unclean election was not asked for".into(),
            )),
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

type Verdict = Result<(), (ResponseError, String)>;

enum Outcome {
    Done(Verdict),
    /// A preferred election to ask for and wait on.
    Elect {
        partition: Arc<Partition>,
        preferred: i32,
    },
    /// An unclean election to ask for and wait on.
    Unclean(MetadataRecord),
}

fn judge(ctx: &RequestContext, topic: &str, p: Arc<Partition>, election: i8) -> Outcome {
    let node = ctx.broker.node_id();
    let leader = p.leader(node).0;
    if election == UNCLEAN {
        return judge_unclean(ctx, topic, &p);
    }
    let preferred = p.replicas().first().copied().unwrap_or(node);
    if leader == Some(preferred) {
        return Outcome::Done(Err((
            ResponseError::ElectionNotNeeded,
            format!("the preferred replica {preferred} already leads"),
        )));
    }
    // Registered, not fenced, and heard from just now (a broker that went
    // down is fenced only after broker.session.timeout.ms).
    let live = match ctx.broker.cluster() {
        Some(c) => {
            let id = preferred as u64;
            c.with_image(|img| img.brokers.contains_key(&id) && !img.fenced.contains(&id))
                && c.heard_now(id)
        }
        None => preferred == node,
    };
    if !live {
        return Outcome::Done(Err((
            ResponseError::PreferredLeaderNotAvailable,
            format!(
                "the preferred replica {preferred} of {topic}-{} is not live",
                p.index
            ),
        )));
    }
    Outcome::Elect {
        partition: p,
        preferred,
    }
}

/// An unclean election of `p`: asked for when a majority of its replicas
/// is not live (Raft elects nobody) and its topic allows it.
fn judge_unclean(ctx: &RequestContext, topic: &str, p: &Partition) -> Outcome {
    let Some(c) = ctx.broker.cluster() else {
        return Outcome::Done(Err((
            ResponseError::ElectionNotNeeded,
            "the partition has a leader".into(),
        )));
    };
    let heard = c.heard_now_all();
    let candidate = c.with_image(|img| {
        img.unclean_candidates(
            |name, index, _| name == topic && index == p.index,
            &heard,
            |_| true,
            crate::cluster::now_ms(),
            0,
        )
        .pop()
    });
    let Some((partition, survivor, seen)) = candidate else {
        let (live, voters) = c.with_image(|img| {
            let voters = img.group_voters(topic, p.index);
            let live = voters
                .iter()
                .filter(|&&id| {
                    img.brokers.contains_key(&id) && !img.fenced.contains(&id) && heard(id)
                })
                .count();
            (live, voters.len())
        });
        return Outcome::Done(Err(if live * 2 > voters {
            (
                ResponseError::ElectionNotNeeded,
                "a majority of its replicas is live: Raft elects a leader holding every \
                 committed entry"
                    .into(),
            )
        } else {
            (
                ResponseError::EligibleLeadersNotAvailable,
                "none of its replicas is live".into(),
            )
        }));
    };
    if !p.config().unclean_leader_election_enable {
        return Outcome::Done(Err((
            ResponseError::EligibleLeadersNotAvailable,
            format!(
                "a majority of the replicas of {topic}-{} is not live, and Raft elects only a \
                 replica holding every committed entry; set unclean.leader.election.enable=true \
                 on the topic to make replica {survivor} the leader with what it holds (records \
                 only the others hold are lost)",
                p.index
            ),
        )));
    }
    Outcome::Unclean(MetadataRecord::UncleanElection {
        partition,
        survivor,
        seen,
        at_ms: crate::cluster::now_ms(),
    })
}

/// Asks for the unclean elections among `outcomes` together, and waits
/// until each survivor leads its partition's new group (or the deadline).
async fn ask_for_unclean_elections(
    ctx: &RequestContext,
    outcomes: Vec<(String, i32, Outcome)>,
    deadline: tokio::time::Instant,
) -> Vec<(String, i32, Outcome)> {
    let Some(c) = ctx.broker.cluster() else {
        return outcomes;
    };
    if !outcomes
        .iter()
        .any(|(_, _, o)| matches!(o, Outcome::Unclean(_)))
    {
        return outcomes;
    }
    let node = ctx.broker.node_id();
    let mut outcomes = outcomes;
    let mut last_asked: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let ask_again = last_asked.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        let mut pending = 0;
        for (topic, index, outcome) in outcomes.iter_mut() {
            let Outcome::Unclean(record) = &*outcome else {
                continue;
            };
            let MetadataRecord::UncleanElection { survivor, seen, .. } = record else {
                continue;
            };
            let (topic, index, survivor) = (topic.as_str(), *index, *survivor);
            let generation = c.with_image(|img| {
                img.generations
                    .get(&(topic.to_owned(), index))
                    .filter(|g| g.number > *seen)
                    .map(|g| (g.epoch_floor, g.survivor))
            });
            let Some((floor, _)) = generation else {
                if ask_again {
                    // Proposed (again) without waiting here.
                    let _ = c.propose_until(record, Duration::ZERO, |_| false).await;
                }
                if now >= deadline {
                    *outcome = Outcome::Done(Err(late(survivor)));
                } else {
                    pending += 1;
                }
                continue;
            };
            // The partition is opened again in its new generation here:
            // looked up afresh each time.
            let led = ctx
                .broker
                .topic(topic)
                .and_then(|t| t.partitions.get(usize::try_from(index).ok()?).cloned())
                .map(|p| p.leader(node))
                .is_some_and(|(l, e)| l == Some(survivor as i32) && e as u64 > floor);
            if led {
                *outcome = Outcome::Done(Ok(()));
            } else if now >= deadline {
                *outcome = Outcome::Done(Err(late(survivor)));
            } else {
                pending += 1;
            }
        }
        if ask_again {
            last_asked = Some(now);
        }
        if pending == 0 {
            return outcomes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn late(survivor: u64) -> (ResponseError, String) {
    (
        ResponseError::EligibleLeadersNotAvailable,
        format!("replica {survivor} did not take over in time"),
    )
}

/// Asks the controller quorum for a preferred election of the partitions
/// that need one, and waits until the request is in this broker's image.
async fn ask_for_elections(
    ctx: &RequestContext,
    outcomes: &[(String, i32, Outcome)],
    deadline: tokio::time::Instant,
) {
    let Some(cluster) = ctx.broker.cluster() else {
        return;
    };
    let node = ctx.broker.node_id();
    // Each partition with the leader epoch this broker sees: the image may
    // not hold that leadership yet, and must not take the preferred replica
    // for the leader then.
    let (partitions, seen_epochs): (Vec<PartitionRef>, Vec<u64>) = outcomes
        .iter()
        .filter_map(|(topic, index, o)| {
            let Outcome::Elect { partition, .. } = o else {
                return None;
            };
            let p = PartitionRef {
                name: topic.clone(),
                topic_id: ctx.broker.topic(topic)?.id.to_string(),
                partition: *index,
            };
            Some((p, partition.leader(node).1.max(0) as u64))
        })
        .unzip();
    if partitions.is_empty() {
        return;
    }
    let at_ms = crate::cluster::now_ms();
    let keys: Vec<((String, i32), u64)> = partitions
        .iter()
        .zip(&seen_epochs)
        .map(|(p, &e)| ((p.name.clone(), p.partition), e))
        .collect();
    let record = MetadataRecord::ElectPreferred {
        partitions,
        at_ms,
        seen_epochs,
    };
    let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
    // Done once the request is in the image (or the preferred replicas lead
    // already, in a leadership at least as new as the one seen here, which
    // removes it).
    let _ = cluster
        .propose_until(&record, wait, |img| {
            keys.iter().all(|(k, seen)| {
                img.elections.get(k).is_some_and(|e| e.at_ms == at_ms)
                    || img
                        .leaders
                        .get(k)
                        .is_some_and(|&(l, e)| Some(l) == img.preferred(&k.0, k.1) && e >= *seen)
            })
        })
        .await;
}

/// Waits until `preferred` leads `p`, or the deadline.
async fn wait_for(
    p: &Partition,
    node: i32,
    preferred: i32,
    deadline: tokio::time::Instant,
) -> Verdict {
    loop {
        if p.leader(node).0 == Some(preferred) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err((
                ResponseError::PreferredLeaderNotAvailable,
                format!("the preferred replica {preferred} did not take over in time"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
