//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, v7+), or the first
//! offset whose timestamp is at least the one asked for.
//!
//! v0 (old clients) asks differently and gets a list of offsets back (see
//! [`handle_v0`]).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use sluice_protocol::list_offsets_v0::{
    ListOffsetsV0Request, ListOffsetsV0Response, ResponsePartition, ResponseTopic,
};
use sluice_storage::log::SegmentInfo;

use super::RequestContext;
use crate::partition::Partition;
use crate::security::acl::AclOperation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    // isolation_level arrived with v2.
    let read_committed = ctx.version >= 2 && req.isolation_level == 1;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !ctx.authorize_topic(AclOperation::Describe, t.name.0.as_str());
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
                let partition = topic.as_ref().and_then(|t| t.partition(lp.partition_index));
                let found = match partition {
                    _ if denied => Err(ResponseError::TopicAuthorizationFailed.code()),
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(p) => p
                        .check_leader_epoch(lp.current_leader_epoch)
                        .and_then(|()| lookup(p, lp.timestamp, read_committed)),
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

/// ListOffsets v0, as Kafka answered it before removing it in 4.0: for each
/// partition up to `max_num_offsets` offsets, descending, taken from the
/// list of segment base offsets followed by the log end offset; -1 (latest)
/// starts the list at the log end, -2 (earliest) at the first segment, a
/// timestamp at the last entry whose time is at most the timestamp (a
/// segment's time is its newest record's, the log end's is now). Nothing
/// above the high watermark is listed: where the log end is past it, the
/// high watermark takes its place, as Kafka answers consumers.
pub async fn handle_v0(ctx: &RequestContext, req: ListOffsetsV0Request) -> ListOffsetsV0Response {
    let now = ctx.broker.now_ms();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let denied = !ctx.authorize_topic(AclOperation::Describe, t.name.as_str());
            let topic = ctx.broker.topic(t.name.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|lp| {
                    let partition = topic.as_ref().and_then(|t| t.partition(lp.partition_index));
                    let found = match partition {
                        _ if denied => Err(ResponseError::TopicAuthorizationFailed.code()),
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                        Some(p) => p
                            .with_log(|l| LogShape {
                                segments: l.segments(),
                                log_start: l.log_start_offset(),
                                log_end: l.log_end_offset(),
                            })
                            .map(|shape| {
                                shape.offsets_before(
                                    p.high_watermark(),
                                    now,
                                    lp.timestamp,
                                    lp.max_num_offsets,
                                )
                            })
                            .map_err(|e| e.code()),
                    };
                    let (error_code, old_style_offsets) = match found {
                        Ok(offsets) => (0, offsets),
                        Err(code) => (code, Vec::new()),
                    };
                    ResponsePartition {
                        partition_index: lp.partition_index,
                        error_code,
                        old_style_offsets,
                    }
                })
                .collect();
            ResponseTopic {
                name: t.name,
                partitions,
            }
        })
        .collect();
    ListOffsetsV0Response { topics }
}

/// What a v0 answer is computed from.
struct LogShape {
    segments: Vec<SegmentInfo>,
    log_start: i64,
    log_end: i64,
}

impl LogShape {
    /// The v0 offsets list (see [`handle_v0`]); empty when nothing
    /// qualifies or `max` is not positive.
    fn offsets_before(&self, high_watermark: i64, now: i64, timestamp: i64, max: i32) -> Vec<i64> {
        // (offset, time): every segment, then the log end unless the last
        // segment is empty (its base already is the log end). A segment's
        // time is its newest record's; one without timestamps (empty, or
        // records without any) counts from its creation.
        let mut entries: Vec<(i64, i64)> = self
            .segments
            .iter()
            .map(|s| {
                let time = if s.size_bytes > 0 && s.max_timestamp >= 0 {
                    s.max_timestamp
                } else {
                    s.created_ms
                };
                (s.base_offset.max(self.log_start), time)
            })
            .collect();
        if self.segments.last().is_none_or(|s| s.size_bytes > 0) {
            entries.push((self.log_end, now));
        }
        let start = match timestamp {
            LATEST => entries.len().checked_sub(1),
            EARLIEST => (!entries.is_empty()).then_some(0),
            ts => entries.iter().rposition(|&(_, time)| time <= ts),
        };
        let Some(start) = start else {
            return Vec::new();
        };
        let take = usize::try_from(max).unwrap_or(0).min(start + 1);
        let mut offsets: Vec<i64> = entries[..=start]
            .iter()
            .rev()
            .take(take)
            .map(|&(o, _)| o)
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        if offsets.first().is_some_and(|&o| o > high_watermark) {
            offsets.retain(|&o| o <= high_watermark);
            offsets.insert(0, high_watermark);
            offsets.truncate(take);
        }
        offsets
    }
}

/// (timestamp, offset, leader epoch of that offset) for the query, `None`
/// when no record qualifies. A read_committed consumer's answers stop at
/// the last stable offset instead of the high watermark.
fn lookup(p: &Partition, query: i64, read_committed: bool) -> Result<Option<(i64, i64, i32)>, i16> {
    p.check_reads().map_err(|e| e.code())?;
    let hw = if read_committed {
        p.last_stable_offset().map_err(|e| e.code())?
    } else {
        p.high_watermark()
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: i64, next: i64, max_timestamp: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            first_entry: 1,
            next_offset: next,
            size_bytes: if next > base { 100 } else { 0 },
            max_timestamp,
            created_ms: 500,
        }
    }

    /// Three segments: 0..10 written by t=1000, 10..20 by 2000, 20..25 by 3000.
    fn shape() -> LogShape {
        LogShape {
            segments: vec![
                segment(0, 10, 1000),
                segment(10, 20, 2000),
                segment(20, 25, 3000),
            ],
            log_start: 0,
            log_end: 25,
        }
    }

    #[test]
    fn latest_and_earliest() {
        let s = shape();
        assert_eq!(s.offsets_before(25, 9000, LATEST, 1), vec![25]);
        assert_eq!(s.offsets_before(25, 9000, LATEST, 10), vec![25, 20, 10, 0]);
        assert_eq!(s.offsets_before(25, 9000, EARLIEST, 1), vec![0]);
        assert_eq!(s.offsets_before(25, 9000, EARLIEST, 10), vec![0]);
    }

    #[test]
    fn a_timestamp_lists_the_segments_written_before_it() {
        let s = shape();
        assert_eq!(s.offsets_before(25, 9000, 2500, 10), vec![10, 0]);
        assert_eq!(s.offsets_before(25, 9000, 2000, 1), vec![10]);
        assert_eq!(s.offsets_before(25, 9000, 999, 10), Vec::<i64>::new());
        assert_eq!(s.offsets_before(25, 9000, 9000, 2), vec![25, 20]);
    }

    #[test]
    fn an_empty_active_segment_counts_from_its_creation() {
        let mut s = shape();
        s.segments.push(SegmentInfo {
            created_ms: 5000,
            ..segment(25, 25, -1)
        });
        assert_eq!(s.offsets_before(25, 9000, 2500, 10), vec![10, 0]);
        assert_eq!(s.offsets_before(25, 9000, 6000, 10), vec![25, 20, 10, 0]);
        assert_eq!(s.offsets_before(25, 9000, LATEST, 2), vec![25, 20]);
    }

    #[test]
    fn the_high_watermark_caps_the_list() {
        let s = shape();
        assert_eq!(s.offsets_before(22, 9000, LATEST, 3), vec![22, 20, 10]);
        assert_eq!(s.offsets_before(15, 9000, LATEST, 10), vec![15, 10, 0]);
    }

    #[test]
    fn log_start_inside_the_first_segment_and_empty_logs() {
        let mut s = shape();
        s.log_start = 4;
        assert_eq!(s.offsets_before(25, 9000, EARLIEST, 1), vec![4]);
        let empty = LogShape {
            segments: vec![segment(0, 0, -1)],
            log_start: 0,
            log_end: 0,
        };
        assert_eq!(empty.offsets_before(0, 9000, LATEST, 1), vec![0]);
        assert_eq!(empty.offsets_before(0, 9000, EARLIEST, 1), vec![0]);
        assert_eq!(empty.offsets_before(0, 9000, LATEST, 0), Vec::<i64>::new());
        assert_eq!(empty.offsets_before(0, 9000, LATEST, -5), Vec::<i64>::new());
    }
}
