//! DescribeProducers: the idempotent producers each partition's leader
//! remembers (admin describeProducers, `kafka-transactions.sh
//! describe-producers`): id, epoch, last sequence and the last batch's
//! timestamp. Sluice has no transactions, so the coordinator epoch and the
//! current transaction's start offset are always -1.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{RequestContext, str_bytes};

pub async fn handle(
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
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
                    let Some(p) = partition else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match p.active_producers() {
                        Ok(producers) => r.with_active_producers(
                            producers
                                .into_iter()
                                .map(|a| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_producer_epoch(a.producer_epoch.into())
                                        .with_last_sequence(a.last_sequence)
                                        .with_last_timestamp(a.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
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
