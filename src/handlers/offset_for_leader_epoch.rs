//! OffsetForLeaderEpoch: where a leader epoch ends in the log. Consumers ask
//! after a leader change to learn whether the log they read from was
//! truncated below their position (KIP-320). The leader epoch is the Raft
//! term, which every batch carries in its header.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::partition::Partition;
use crate::security::acl::AclOperation;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

pub async fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !ctx.authorize_topic(AclOperation::Describe, t.topic.0.as_str());
            let topic = ctx.broker.topic(t.topic.0.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|lp| {
                    let out = EpochEndOffset::default()
                        .with_partition(lp.partition)
                        .with_leader_epoch(UNDEFINED.0)
                        .with_end_offset(UNDEFINED.1);
                    let partition = topic.as_ref().and_then(|t| {
                        usize::try_from(lp.partition)
                            .ok()
                            .and_then(|i| t.partitions.get(i))
                    });
                    if denied {
                        return out.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(p) = partition else {
                        return out.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match end_of_epoch(p, lp.current_leader_epoch, lp.leader_epoch) {
                        Ok((epoch, end)) => out.with_leader_epoch(epoch).with_end_offset(end),
                        Err(code) => out.with_error_code(code),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// (epoch, end offset) as Kafka's leader epoch cache answers: the largest
/// epoch ≤ `wanted` in the log and the first offset of the next larger one;
/// the log end for the current epoch; undefined for a future one.
fn end_of_epoch(p: &Partition, current_leader_epoch: i32, wanted: i32) -> Result<(i32, i64), i16> {
    p.check_leader_epoch(current_leader_epoch)?;
    p.check_reads().map_err(|e| e.code())?;
    if wanted < 0 {
        return Ok(UNDEFINED);
    }
    let current = p.leader_epoch();
    let (found, latest) = p
        .with_log(|l| Ok::<_, sluice_storage::StorageError>((l.epoch_end(wanted)?, l.latest_epoch()?)))
        .map_err(|e| e.code())?
        .map_err(|e| {
            warn_limited!(partition = ?p, error = %e, "OffsetForLeaderEpoch could not read the log");
            ResponseError::KafkaStorageError.code()
        })?;
    let end = p.log_end_offset();
    Ok(match found {
        Some((floor, start)) => (if floor < 0 { wanted } else { floor }, start),
        None if wanted > current => UNDEFINED,
        None if wanted == current || latest < 0 => (wanted, end),
        None => (latest, end),
    })
}
