//! InitProducerId: a fresh producer id at epoch 0 for an idempotent
//! producer; for a transactional one, its transactional id's producer id
//! with a new epoch, from the transaction coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::RequestContext;
use crate::security::acl::{AclOperation, ResourceType};

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    match &req.transactional_id {
        Some(txn)
            if !ctx.authorize(
                AclOperation::Write,
                ResourceType::TransactionalId,
                txn.0.as_str(),
            ) =>
        {
            return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        None if !ctx.authorize_cluster(AclOperation::IdempotentWrite)
            && !ctx.broker.authorize_any(
                &ctx.session,
                AclOperation::Write,
                ResourceType::Topic,
            ) =>
        {
            return resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        }
        _ => {}
    }
    if let Some(txn) = &req.transactional_id {
        // KIP-360 (v3+): a producer recovering names the id and epoch it had.
        let expected = (ctx.version >= 3 && req.producer_id.0 >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        return match ctx
            .broker
            .txns
            .init_producer_id(
                &ctx.broker,
                txn.0.as_str(),
                req.transaction_timeout_ms,
                expected,
            )
            .await
        {
            Ok((id, epoch)) => resp
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(code) => {
                let code = super::txn::fenced_for(code, ctx.version, 4);
                if code != ResponseError::ConcurrentTransactions.code() {
                    warn_limited!(transactional_id = %txn.0, code, "InitProducerId refused");
                }
                resp.with_error_code(code)
            }
        };
    }
    match ctx.broker.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        // Not registered with its data folder yet (just started): the
        // client asks again.
        Err(crate::error::BrokerError::NotLeaderOrFollower) => {
            resp.with_error_code(ResponseError::CoordinatorLoadInProgress.code())
        }
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
