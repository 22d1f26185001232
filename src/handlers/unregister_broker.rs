//! UnregisterBroker (KIP-631; `Admin.unregisterBroker`,
//! `kafka-cluster.sh unregister`): a broker leaves the cluster's
//! registrations, and the active controller takes it out of the metadata
//! log's learners. Kafka's check first (ALTER on the cluster), then
//! BROKER_ID_NOT_REGISTERED for an unknown id. Stricter than Kafka, so
//! that no partition is left with a replica nobody runs: a broker that
//! still holds a replica (assigned, or joining or leaving a reassignment)
//! is refused with INVALID_REQUEST until its replicas are moved off
//! (AlterPartitionReassignments), and so is a controller voter (until
//! RemoveRaftVoter takes it out of the quorum). A broker still running
//! registers again, as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};

use super::{RequestContext, str_bytes};
use crate::replication::metadata::MetadataRecord;
use crate::security::acl::AclOperation;

pub async fn handle(
    ctx: &RequestContext,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let refuse = |e: ResponseError, message: String| {
        tracing::info!(broker = req.broker_id.0, error = ?e, %message, "unregistration refused");
        UnregisterBrokerResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !ctx.authorize_cluster(AclOperation::Alter) {
        return UnregisterBrokerResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let id = req.broker_id.0;
    let Some(cluster) = ctx.broker.cluster() else {
        let me = ctx.broker.node_id();
        return if id == me {
            refuse(
                ResponseError::InvalidRequest,
                format!("broker {id} is the only broker"),
            )
        } else {
            refuse(
                ResponseError::BrokerIdNotRegistered,
                format!("broker {id} is not registered"),
            )
        };
    };
    let Ok(node) = u64::try_from(id) else {
        return refuse(
            ResponseError::BrokerIdNotRegistered,
            format!("broker {id} is not registered"),
        );
    };
    let (registered, held) =
        cluster.with_image(|img| (img.brokers.contains_key(&node), img.replicas_held(node)));
    if !registered {
        return refuse(
            ResponseError::BrokerIdNotRegistered,
            format!("broker {id} is not registered"),
        );
    }
    if cluster.controller_voters().contains(&node) {
        return refuse(
            ResponseError::InvalidRequest,
            format!(
                "broker {id} is a controller voter: remove it from the quorum first (RemoveRaftVoter)"
            ),
        );
    }
    if held > 0 {
        return refuse(
            ResponseError::InvalidRequest,
            format!(
                "broker {id} still holds replicas of {held} partitions: move them off first (AlterPartitionReassignments)"
            ),
        );
    }
    let record = MetadataRecord::UnregisterBroker { node_id: node };
    let wait = crate::broker::ADMIN_WAIT;
    match cluster
        .propose_until(&record, wait, |img| !img.brokers.contains_key(&node))
        .await
    {
        Ok(_) => {
            tracing::info!(broker = id, "broker unregistered");
            UnregisterBrokerResponse::default()
        }
        Err(_) => refuse(
            ResponseError::RequestTimedOut,
            format!("the controller quorum did not unregister broker {id} within {wait:?}"),
        ),
    }
}
