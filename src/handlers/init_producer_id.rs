//! InitProducerId for idempotent producers: a fresh producer id, epoch 0.
//! Transactions are not served yet, so a transactional id is refused.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(txn) = &req.transactional_id {
        warn_limited!(transactional_id = %txn.0, "transactions are not supported yet");
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    match ctx.broker.allocate_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
