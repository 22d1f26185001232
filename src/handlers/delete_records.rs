//! DeleteRecords: moves partitions' log start offsets up (whole segments
//! below it are deleted); consumers and ListOffsets(earliest) follow. In a
//! cluster every replica moves, through Raft, before the answer.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::security::acl::AclOperation;

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !ctx.authorize_topic(AclOperation::Delete, t.name.0.as_str());
        let topic = ctx.broker.topic(t.name.0.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let part = topic.as_ref().and_then(|t| {
                usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            partitions.push(match part {
                _ if denied => r.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                None => r.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(part) => match part.delete_records(p.offset, timeout).await {
                    Ok(low) => {
                        tracing::info!(partition = ?part, log_start_offset = low, "records deleted");
                        r.with_low_watermark(low)
                    }
                    Err(e) => {
                        info_limited!(partition = ?part, error = %e, "DeleteRecords refused");
                        r.with_error_code(e.code())
                    }
                },
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
