//! Fetch: whole batches below the high watermark, long-polling up to max_wait_ms
//! for min_bytes.
//!
//! Fetch sessions (KIP-227) are declined: every answer carries session id 0, which
//! tells the client that no session exists and that its next request must be a
//! full one. That is correct for every client and costs only request size; a
//! request naming a session this broker never handed out gets
//! FETCH_SESSION_ID_NOT_FOUND.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::RequestContext;
use crate::error::BrokerError;

pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    if req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::InvalidFetchSessionEpoch.code());
    }
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    loop {
        let notified = ctx.broker.data_available.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (response, bytes, errors) = collect(ctx, &req);
        let now = Instant::now();
        if errors || bytes >= req.min_bytes.max(0) as usize || now >= deadline {
            return response;
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
    }
}

/// One pass over the requested partitions: the response, its record bytes, and
/// whether any partition failed (which answers at once).
fn collect(ctx: &RequestContext, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let broker = &ctx.broker;
    let by_id = ctx.version >= 13;
    let read_committed = req.isolation_level == 1;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for ft in &req.topics {
        let topic = if by_id {
            broker.topic_by_id(ft.topic_id)
        } else {
            broker.topic(ft.topic.0.as_str())
        };
        let mut partitions = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            // Null unless the consumer reads committed data, as Kafka sends it.
            pd.aborted_transactions = read_committed.then(Vec::new);
            let partition = topic.as_ref().and_then(|t| {
                usize::try_from(fp.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                    .cloned()
            });
            let Some(p) = partition else {
                pd.error_code = if by_id && topic.is_none() {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                errors = true;
                partitions.push(pd);
                continue;
            };
            let remaining = max_bytes.saturating_sub(total);
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            match p.read(fp.fetch_offset, limit.max(1)) {
                Ok(r) => {
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = r.high_watermark;
                    if ctx.version >= 5 {
                        pd.log_start_offset = r.log_start_offset;
                    }
                    // The first batch of the response may exceed the limits (so a
                    // consumer can always make progress); later ones may not.
                    let records = if total > 0 && r.records.len() > limit {
                        bytes::Bytes::new()
                    } else {
                        r.records
                    };
                    total += records.len();
                    pd.records = Some(records);
                }
                Err(e) => {
                    if !matches!(
                        e,
                        BrokerError::OffsetOutOfRange { .. } | BrokerError::NotLeaderOrFollower
                    ) {
                        warn_limited!(partition = ?p, error = %e, "fetch failed");
                    }
                    pd.error_code = e.code();
                    pd.high_watermark = p.high_watermark();
                    if ctx.version >= 5 {
                        pd.log_start_offset = p.log_start_offset();
                    }
                    errors = true;
                }
            }
            partitions.push(pd);
        }
        let mut tr = FetchableTopicResponse::default().with_partitions(partitions);
        if by_id {
            tr.topic_id = ft.topic_id;
        } else {
            tr.topic = ft.topic.clone();
        }
        topics.push(tr);
    }
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(topics),
        total,
        errors,
    )
}
