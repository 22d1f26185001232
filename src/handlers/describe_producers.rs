//! DescribeProducers: the idempotent producers each partition's leader
//! remembers (admin describeProducers, `kafka-transactions.sh
//! describe-producers`): id, epoch, last sequence and the last batch's
//! timestamp, the coordinator epoch of its last transaction marker and where
//! its transaction under way began (-1 when none).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{RequestContext, str_bytes};
use crate::security::acl::AclOperation;

pub async fn handle(
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !ctx.authorize_topic(AclOperation::Read, t.name.0.as_str());
            let topic = ctx.broker.topic(t.name.0.as_str());
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let partition = topic.as_ref().and_then(|t| {
                        usize::try_from(index)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    });
                    let r = PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_message(None);
                    if denied {
                        return r.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(p) = partition else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match p.active_producers() {
                        Ok(producers) => r.with_active_producers(
                            producers
                                .into_iter()
                                .map(|a| {
                                    let (txn_start, coordinator_epoch) =
                                        p.transaction_of(a.producer_id);
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_producer_epoch(a.producer_epoch.into())
                                        .with_last_sequence(a.last_sequence)
                                        .with_last_timestamp(a.last_timestamp)
                                        .with_coordinator_epoch(coordinator_epoch.unwrap_or(-1))
                                        .with_current_txn_start_offset(txn_start.unwrap_or(-1))
                                })
                                .collect(),
                        ),
                        Err(e) => r
                            .with_error_code(e.code())
                            .with_error_message(Some(str_bytes(e.to_string()))),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
