//! Fetch: whole batches below the high watermark, long-polling up to max_wait_ms
//! for min_bytes.
//!
//! Fetch sessions (KIP-227, [`super::fetch_session`]): a full fetch at epoch 0
//! opens one; later fetches name only what changed and are answered with only
//! the partitions that have something new. Epoch -1 fetches without a session.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};

use super::fetch_session::{Answered, Context, FetchPart, TopicKey};
use super::{RequestContext, str_bytes};
use crate::error::BrokerError;
use crate::security::acl::AclOperation;
use sluice_storage::open_files::OpenFile;

pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> FetchResponse {
    handle_sourced(ctx, req).await.0
}

/// A record set of the answer and the segment file it lies in.
pub type Source = (bytes::Bytes, OpenFile);

/// The answer, and where in the segment files its record sets lie.
pub async fn handle_sourced(
    ctx: &RequestContext,
    req: FetchRequest,
) -> (FetchResponse, Vec<Source>) {
    let by_id = ctx.version >= 13;
    let (parts, session, incremental) = match ctx.broker.fetch_sessions.context(&req, by_id) {
        Ok(Context::Full { parts, new_session }) => (parts, new_session, false),
        Ok(Context::Incremental { session, parts }) => (parts, session, true),
        Err(code) => {
            tracing::debug!(
                session = req.session_id,
                epoch = req.session_epoch,
                code,
                "fetch session refused"
            );
            return (FetchResponse::default().with_error_code(code), Vec::new());
        }
    };
    // READ on each topic, as Kafka checks it (an unknown topic id stays
    // UNKNOWN_TOPIC_ID).
    let denied: Vec<bool> = if ctx.broker.authorizer_enabled() {
        let mut seen = std::collections::HashMap::new();
        parts
            .iter()
            .map(|fp| {
                *seen.entry(fp.topic.clone()).or_insert_with(|| {
                    let name = match &fp.topic {
                        TopicKey::Id(id) => ctx.broker.topic_by_id(*id).map(|t| t.name.clone()),
                        TopicKey::Name(n) => Some(n.clone()),
                    };
                    name.is_some_and(|n| !ctx.authorize_topic(AclOperation::Read, &n))
                })
            })
            .collect()
    } else {
        vec![false; parts.len()]
    };
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = Instant::now() + max_wait;
    let (mut reading, mut waiting) = (Duration::ZERO, Duration::ZERO);
    loop {
        let notified = ctx.broker.data_available.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let read_at = Instant::now();
        let (answers, sources, bytes, errors) = collect(ctx, &req, &parts, &denied);
        let now = Instant::now();
        reading += now - read_at;
        // Nothing to wait for when no partition is asked for (a consumer
        // closing its session): answered at once, as Kafka does.
        if errors || parts.is_empty() || bytes >= req.min_bytes.max(0) as usize || now >= deadline {
            count(ctx, &parts, &answers, reading, waiting);
            return (respond(ctx, session, incremental, &parts, answers), sources);
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
        waiting += now.elapsed();
    }
}

/// The metrics of an answered fetch: bytes out and failures per partition,
/// time reading and waiting.
fn count(
    ctx: &RequestContext,
    parts: &[FetchPart],
    answers: &[PartitionData],
    reading: Duration,
    waiting: Duration,
) {
    let metrics = &ctx.broker.metrics;
    for (p, a) in parts.iter().zip(answers) {
        let bytes = a.records.as_ref().map_or(0, |r| r.len() as u64);
        if bytes == 0 && a.error_code == 0 {
            continue;
        }
        let topic = match &p.topic {
            TopicKey::Id(id) => ctx.broker.topic_by_id(*id),
            TopicKey::Name(n) => ctx.broker.topic(n),
        };
        let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
            if a.error_code != 0 {
                crate::metrics::fetch_failed_unknown(&metrics.totals);
            }
            continue;
        };
        if a.error_code != 0 {
            partition.stats.fetch_failed(&metrics.totals);
        } else {
            partition.stats.fetched(&metrics.totals, bytes);
        }
    }
    metrics.observe_stage("Fetch", crate::metrics::STAGE_LOCAL, reading);
    metrics.observe_stage("Fetch", crate::metrics::STAGE_WAIT, waiting);
}

/// The answer: every partition read, or, in an incremental session, those
/// with something new; grouped by topic in the order read.
fn respond(
    ctx: &RequestContext,
    session: i32,
    incremental: bool,
    parts: &[FetchPart],
    answers: Vec<PartitionData>,
) -> FetchResponse {
    let keep = if session != 0 {
        let seen: Vec<((TopicKey, i32), Answered)> = parts
            .iter()
            .zip(&answers)
            .map(|(p, a)| {
                (
                    (p.topic.clone(), p.partition),
                    Answered {
                        high_watermark: a.high_watermark,
                        log_start_offset: a.log_start_offset,
                        has_records: a.records.as_ref().is_some_and(|r| !r.is_empty()),
                        error: a.error_code != 0,
                    },
                )
            })
            .collect();
        ctx.broker
            .fetch_sessions
            .answered(session, incremental, &seen)
    } else {
        vec![true; answers.len()]
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<&TopicKey> = None;
    for ((p, a), keep) in parts.iter().zip(answers).zip(keep) {
        if !keep {
            continue;
        }
        if last != Some(&p.topic) {
            let mut tr = FetchableTopicResponse::default();
            match &p.topic {
                TopicKey::Id(id) => tr.topic_id = *id,
                TopicKey::Name(n) => tr.topic = TopicName(str_bytes(n.clone())),
            }
            topics.push(tr);
            last = Some(&p.topic);
        }
        topics.last_mut().expect("pushed").partitions.push(a);
    }
    FetchResponse::default()
        .with_session_id(session)
        .with_responses(topics)
}

/// One pass over the partitions: each one's answer, where its record sets
/// lie, the record bytes, and whether any partition failed (which answers
/// at once).
fn collect(
    ctx: &RequestContext,
    req: &FetchRequest,
    parts: &[FetchPart],
    denied: &[bool],
) -> (Vec<PartitionData>, Vec<Source>, usize, bool) {
    let broker = &ctx.broker;
    let read_committed = req.isolation_level == 1;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut errors = false;
    let mut out = Vec::with_capacity(parts.len());
    let mut sources = Vec::new();
    for (i, fp) in parts.iter().enumerate() {
        if denied.get(i).copied().unwrap_or(false) {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_high_watermark(-1)
                .with_last_stable_offset(-1);
            if ctx.version >= 5 {
                pd.log_start_offset = -1;
            }
            errors = true;
            out.push(pd);
            continue;
        }
        let topic = match &fp.topic {
            TopicKey::Id(id) => broker.topic_by_id(*id),
            TopicKey::Name(n) => broker.topic(n),
        };
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
            pd.error_code = if matches!(fp.topic, TopicKey::Id(_)) && topic.is_none() {
                ResponseError::UnknownTopicId.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            errors = true;
            out.push(pd);
            continue;
        };
        if let Err(code) = p.check_leader_epoch(fp.current_leader_epoch) {
            pd.error_code = code;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            errors = true;
            out.push(pd);
            continue;
        }
        let remaining = max_bytes.saturating_sub(total);
        let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
        let read = if read_committed {
            p.read_committed(fp.fetch_offset, limit.max(1)).map(|r| {
                let aborted = r
                    .aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect();
                (r.fetch, r.last_stable_offset, Some(aborted))
            })
        } else {
            p.read(fp.fetch_offset, limit.max(1)).map(|r| {
                let hw = r.high_watermark;
                (r, hw, None)
            })
        };
        match read {
            Ok((r, lso, aborted)) => {
                pd.high_watermark = r.high_watermark;
                pd.last_stable_offset = lso;
                if aborted.is_some() {
                    pd.aborted_transactions = aborted;
                }
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
                if let Some(file) = r.file.filter(|_| !records.is_empty()) {
                    sources.push((records.clone(), file));
                }
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
        out.push(pd);
    }
    (out, sources, total, errors)
}
