//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+), or the first
//! offset whose timestamp is at least the one asked for.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use super::RequestContext;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.broker.topic(t.name.0.as_str());
        let partitions = t
            .partitions
            .iter()
            .map(|lp| {
                let mut r = ListOffsetsPartitionResponse::default()
                    .with_partition_index(lp.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1);
                if ctx.version >= 4 {
                    r.leader_epoch = -1;
                }
                let partition = topic.as_ref().and_then(|t| {
                    usize::try_from(lp.partition_index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                });
                let found = match partition {
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(p) => p
                        .check_leader_epoch(lp.current_leader_epoch)
                        .and_then(|()| lookup(p, lp.timestamp)),
                };
                match found {
                    Ok(Some((ts, off, epoch))) => {
                        r.timestamp = ts;
                        r.offset = off;
                        if ctx.version >= 4 {
                            r.leader_epoch = epoch;
                        }
                    }
                    Ok(None) => {}
                    Err(code) => r.error_code = code,
                }
                r
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset, leader epoch of that offset) for the query, `None`
/// when no record qualifies.
fn lookup(p: &Partition, query: i64) -> Result<Option<(i64, i64, i32)>, i16> {
    p.check_reads().map_err(|e| e.code())?;
    let hw = p.high_watermark();
    let current = p.leader_epoch();
    match query {
        LATEST => Ok(Some((-1, hw, current))),
        EARLIEST => {
            let start = p.log_start_offset();
            let first = p
                .with_log(|l| l.read(start, 1))
                .map_err(|e| e.code())?
                .map_err(|_| ResponseError::UnknownServerError.code())?
                .records;
            // An empty log's start is where the current epoch begins.
            let epoch = batch_epoch(&first).unwrap_or(current);
            Ok(Some((-1, start, epoch)))
        }
        MAX_TIMESTAMP => {
            let Some((ts, batch_last_offset)) =
                p.with_log(|l| l.max_timestamp()).map_err(|e| e.code())?
            else {
                return Ok(None);
            };
            let batch = p
                .with_log(|l| l.read(batch_last_offset, 1))
                .map_err(|e| e.code())?
                .map_err(|_| ResponseError::UnknownServerError.code())?
                .records;
            let epoch = batch_epoch(&batch).unwrap_or(current);
            let exact = records_of_first_batch(batch)
                .into_iter()
                .find(|(_, t)| *t == ts)
                .map(|(o, _)| o)
                .unwrap_or(batch_last_offset);
            Ok((exact < hw).then_some((ts, exact, epoch)))
        }
        ts if ts >= 0 => {
            let found = p
                .with_log(|l| l.offset_for_timestamp(ts))
                .map_err(|e| e.code())?
                .map_err(|_| ResponseError::UnknownServerError.code())?;
            let Some((_, batch)) = found else {
                return Ok(None);
            };
            let epoch = batch_epoch(&batch).unwrap_or(current);
            let log_start = p.log_start_offset();
            Ok(records_of_first_batch(batch)
                .into_iter()
                .find(|(o, t)| *t >= ts && *o >= log_start)
                .filter(|(o, _)| *o < hw)
                .map(|(o, t)| (t, o, epoch)))
        }
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}

/// The partition leader epoch a batch was written in (bytes 12..16 of its
/// header).
fn batch_epoch(batch: &Bytes) -> Option<i32> {
    let b = batch.get(12..16)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// (offset, timestamp) of every record of the first batch in `bytes`.
fn records_of_first_batch(mut bytes: Bytes) -> Vec<(i64, i64)> {
    match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => set
            .records
            .iter()
            .map(|r| (r.offset, r.timestamp))
            .collect(),
        Err(e) => {
            warn_limited!(error = %e, "could not decode a stored batch for ListOffsets");
            Vec::new()
        }
    }
}
