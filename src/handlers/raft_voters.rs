//! AddRaftVoter and RemoveRaftVoter (KIP-853; `Admin.addRaftVoter`,
//! `Admin.removeRaftVoter`, `kafka-metadata-quorum.sh add-controller /
//! remove-controller`): the controller quorum's voters change at runtime.
//!
//! Any broker takes them (a Kafka broker forwards them to the active
//! controller; here any broker proposes the metadata record). The checks,
//! in order: ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED), the
//! cluster id if given (INCONSISTENT_CLUSTER_ID), a change still under way
//! (REQUEST_TIMED_OUT, as Kafka answers while it handles the previous
//! one); then for AddRaftVoter a voter already in the set (DUPLICATE_VOTER),
//! and a broker not registered with that directory id (INVALID_REQUEST: the
//! new voter must be running, as an observer of the metadata log, on the
//! data folder named); for RemoveRaftVoter a voter not in the set, or named
//! with a directory id that is not one of its data folders
//! (VOTER_NOT_FOUND), and the last voter (INVALID_REQUEST). The change is a
//! `ControllerVoters` record; the active controller takes the controller
//! group there (the new voter is a learner already and joins in a joint
//! change; a removed one stays an observer, and a removed leader hands
//! over), and the answer comes once this broker has applied the new
//! configuration, or REQUEST_TIMED_OUT after `timeout_ms` (AddRaftVoter) or
//! 30 s. A voter's Raft id is its node id: the quorum keeps no incarnation
//! (see `replication::raft_id`), so a voter whose disk was wiped is removed
//! before it is started again, and added back once it has caught up.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, str_bytes};
use crate::cluster::{CONTROLLER_GROUP, Cluster};
use crate::replication::directory;
use crate::replication::metadata::MetadataRecord;
use crate::security::acl::AclOperation;

/// How long RemoveRaftVoter (which has no timeout of its own) waits.
const REMOVE_WAIT: Duration = Duration::from_secs(30);

/// An error and its message, both requests' answer.
type Refusal = (ResponseError, String);

/// The checks both requests share; the cluster when they pass.
fn common<'a>(
    ctx: &'a RequestContext,
    cluster_id: &Option<StrBytes>,
) -> Result<&'a std::sync::Arc<Cluster>, Refusal> {
    if !ctx.authorize_cluster(AclOperation::Alter) {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            "ALTER on the cluster is needed".into(),
        ));
    }
    if let Some(id) = cluster_id
        && id.as_str() != ctx.broker.cluster_id()
    {
        return Err((
            ResponseError::InconsistentClusterId,
            format!(
                "the cluster id is {}, not {}",
                ctx.broker.cluster_id(),
                id.as_str()
            ),
        ));
    }
    ctx.broker.cluster().ok_or_else(|| {
        (
            ResponseError::InvalidRequest,
            "a broker alone has no controller quorum to change (start it with --controller-voters)"
                .to_owned(),
        )
    })
}

/// The controller group's configuration as applied here.
async fn applied(cluster: &Cluster) -> Option<crate::replication::replica::Membership> {
    cluster
        .host
        .inspect(CONTROLLER_GROUP, |r| r.membership())
        .await
}

/// REQUEST_TIMED_OUT while an earlier change is not applied yet.
async fn no_change_under_way(cluster: &Cluster) -> Result<Vec<u64>, Refusal> {
    let voters = cluster.controller_voters();
    let m = applied(cluster).await.unwrap_or_default();
    if m.voters != voters || !m.outgoing.is_empty() {
        return Err((
            ResponseError::RequestTimedOut,
            format!(
                "Request timed out waiting for leader to handle previous voter change request (voters {:?}, moving to {voters:?})",
                m.voters
            ),
        ));
    }
    Ok(voters)
}

/// Proposes the change and waits until this broker applied it.
async fn change(
    cluster: &Cluster,
    before: Vec<u64>,
    after: Vec<u64>,
    wait: Duration,
) -> Result<(), Refusal> {
    let record = MetadataRecord::ControllerVoters {
        before: before.clone(),
        after: after.clone(),
    };
    let deadline = tokio::time::Instant::now() + wait;
    let timed_out = || {
        (
            ResponseError::RequestTimedOut,
            format!(
                "the controller quorum did not move from {before:?} to {after:?} within {wait:?}"
            ),
        )
    };
    // Done once the voters are no longer `before` (this record, or another
    // change that came first).
    let image = cluster
        .propose_until(&record, wait, |img| {
            img.controller_voters.as_ref().is_some_and(|v| v != &before)
        })
        .await
        .map_err(|_| timed_out())?;
    if image.controller_voters.as_ref() != Some(&after) {
        return Err((
            ResponseError::RequestTimedOut,
            format!(
                "another voter change came first: the voters are {:?}",
                image.controller_voters
            ),
        ));
    }
    loop {
        let m = applied(cluster).await.unwrap_or_default();
        if m.voters == after && m.outgoing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn add(ctx: &RequestContext, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let id = req.voter_id;
    let dir = directory::format_id(req.voter_directory_id);
    let result = async {
        let cluster = common(ctx, &req.cluster_id)?;
        let voters = no_change_under_way(cluster).await?;
        let node = u64::try_from(id).map_err(|_| {
            (
                ResponseError::InvalidRequest,
                format!("{id} is not a node id"),
            )
        })?;
        if voters.contains(&node) {
            return Err((
                ResponseError::DuplicateVoter,
                format!("The voter id for ReplicaKey(id={id}, directoryId={dir}) is already part of the set of voters {voters:?}."),
            ));
        }
        // A broker just started on a new folder registers it within a
        // moment (a few seconds more while the quorum elects): its
        // registration is waited for, up to 10 s (less than the Java
        // client's request timeout, so a wrong folder still gets its
        // answer rather than a retry).
        let registered_with = |img: &crate::replication::metadata::ClusterImage| {
            img.brokers
                .get(&node)
                .map(|b| b.directory_id.clone().unwrap_or_default())
        };
        let mut images = cluster.subscribe();
        let patience = Duration::from_millis(req.timeout_ms.clamp(0, 10_000) as u64);
        let _ = tokio::time::timeout(
            patience,
            images.wait_for(|img| registered_with(img).as_deref() == Some(dir.as_str())),
        )
        .await;
        let registered = cluster.with_image(registered_with);
        match registered {
            None => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("broker {id} is not registered: start it first (it follows the quorum as an observer), then add it"),
                ));
            }
            Some(d) if d != dir => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("broker {id} runs on the data folder with directory id {d}, not {dir}"),
                ));
            }
            Some(_) => {}
        }
        let mut after = voters.clone();
        after.push(node);
        after.sort_unstable();
        let wait = Duration::from_millis(req.timeout_ms.clamp(1000, 300_000) as u64);
        change(cluster, voters, after, wait).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(voter = id, directory_id = %dir, "controller voter added");
            AddRaftVoterResponse::default()
        }
        Err((e, message)) => {
            tracing::info!(voter = id, directory_id = %dir, error = ?e, %message, "AddRaftVoter refused");
            AddRaftVoterResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(message)))
        }
    }
}

pub async fn remove(ctx: &RequestContext, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let id = req.voter_id;
    let dir = directory::format_id(req.voter_directory_id);
    let result = async {
        let cluster = common(ctx, &req.cluster_id)?;
        let voters = no_change_under_way(cluster).await?;
        let not_found = || {
            (
                ResponseError::VoterNotFound,
                format!("Cannot remove voter ReplicaKey(id={id}, directoryId={dir}) from the set of voters {voters:?}"),
            )
        };
        let node = u64::try_from(id).map_err(|_| not_found())?;
        if !voters.contains(&node) {
            return Err(not_found());
        }
        // Any data folder the voter ran on: a wiped voter is removed under
        // the folder it voted with.
        let known = cluster.with_image(|img| {
            let mut known: Vec<String> = img.past_directories.get(&node).cloned().unwrap_or_default();
            known.extend(img.brokers.get(&node).and_then(|b| b.directory_id.clone()));
            known
        });
        // A broker registered before directory ids has none: it is named
        // with the nil id.
        let named = known.contains(&dir) || (req.voter_directory_id.is_nil() && known.is_empty());
        if !named {
            return Err(not_found());
        }
        if voters.len() == 1 {
            return Err((
                ResponseError::InvalidRequest,
                format!("voter {id} is the last one: the controller quorum cannot lose its last voter"),
            ));
        }
        let after: Vec<u64> = voters.iter().copied().filter(|&v| v != node).collect();
        change(cluster, voters, after, REMOVE_WAIT).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(voter = id, directory_id = %dir, "controller voter removed");
            RemoveRaftVoterResponse::default()
        }
        Err((e, message)) => {
            tracing::info!(voter = id, directory_id = %dir, error = ?e, %message, "RemoveRaftVoter refused");
            RemoveRaftVoterResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(message)))
        }
    }
}
