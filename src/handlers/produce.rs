//! Produce: validate each partition's batches, append them, and answer once the
//! requested acknowledgement holds (acks=0: no answer; acks=1: appended;
//! acks=all: committed — durable on one node, committed by the partition's Raft
//! group in a cluster).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{RequestContext, str_bytes};
use crate::error::BrokerError;
use crate::security::acl::{AclOperation, ResourceType};

/// What a Produce request gets back.
pub enum Answer {
    Response(ProduceResponse),
    /// acks=0 and every partition appended: no answer.
    Silent,
    /// acks=0 and a partition failed: as in Kafka, the connection is closed
    /// (the only way to tell the client, which then refreshes its metadata).
    Close(String),
}

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Answer {
    append_all(ctx, req).await.answer(ctx).await
}

/// A Produce request whose partitions were appended to, waiting for the
/// acknowledgements it asked for. A connection appends the requests it reads
/// in order and waits for their acknowledgements together (see
/// [`crate::connection`]), so several requests ride on one flush.
pub struct Appended {
    acks: i16,
    timeout: Duration,
    responses: Vec<TopicProduceResponse>,
    /// (topic index, partition index in response, partition, append).
    pending: Vec<(
        usize,
        usize,
        std::sync::Arc<crate::partition::Partition>,
        crate::partition::AppendResult,
    )>,
    appended_at: std::time::Instant,
}

/// Phase one of a Produce: checks and appends every partition's batches.
pub async fn append_all(ctx: &RequestContext, req: ProduceRequest) -> Appended {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    if !valid_acks {
        warn_limited!(acks, "produce with invalid acks");
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index in response, partition, append) awaiting the commit.
    let mut pending = Vec::new();
    let metrics = &ctx.broker.metrics;
    let started = std::time::Instant::now();
    // Kafka's checks: WRITE on the transactional id (every partition fails
    // without it), then WRITE on each topic, before anything else is looked at.
    let txn_denied = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| !ctx.authorize(AclOperation::Write, ResourceType::TransactionalId, id));
    for topic in req.topic_data {
        let name = topic.name.0.as_str().to_owned();
        let topic_denied = !txn_denied && !ctx.authorize_topic(AclOperation::Write, &name);
        let t = ctx.broker.topic(&name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let mut r = PartitionProduceResponse::default().with_index(pd.index);
            let sent_bytes = pd.records.as_ref().map_or(0, |r| r.len() as u64);
            let sent = pd.records.clone();
            let partition = t
                .as_ref()
                .and_then(|t| {
                    usize::try_from(pd.index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                })
                .cloned();
            let outcome = if !valid_acks {
                Err(ResponseError::InvalidRequiredAcks.code())
            } else if txn_denied {
                Err(ResponseError::TransactionalIdAuthorizationFailed.code())
            } else if topic_denied {
                Err(ResponseError::TopicAuthorizationFailed.code())
            } else if name == crate::group::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC {
                // Only the group coordinator writes there, as in Kafka.
                warn_limited!(topic = %name, "produce to an internal topic refused");
                Err(ResponseError::InvalidTopicException.code())
            } else if req.transactional_id.is_none()
                && pd
                    .records
                    .as_ref()
                    .is_some_and(|r| any_batch(r, |a| a & 0x10 != 0))
            {
                // Kafka's answer to transactional records without a
                // transactional id.
                warn_limited!(topic = %name, "transactional batch without a transactional id");
                Err(ResponseError::TransactionalIdAuthorizationFailed.code())
            } else if ctx.version < 7 && pd.records.as_ref().is_some_and(uses_zstd) {
                // zstd arrived with Produce v7 (KIP-110); older clients may not read it.
                warn_limited!(topic = %name, version = ctx.version, "zstd batch in a produce request below v7");
                Err(ResponseError::UnsupportedCompressionType.code())
            } else if let Some(p) = partition.as_ref().filter(|p| {
                acks == -1
                    && p.check_serving().is_ok()
                    && (p.reachable_replicas() as i32) < p.config().min_insync_replicas
            }) {
                // Too few replicas can take the write: Kafka refuses rather
                // than write under-replicated.
                warn_limited!(topic = %name, partition = pd.index,
                    min_insync_replicas = p.config().min_insync_replicas,
                    reachable = p.reachable_replicas(),
                    "acks=all produce refused: not enough in-sync replicas");
                Err(BrokerError::NotEnoughReplicas.code())
            } else if let Some(p) = partition {
                match pd.records {
                    None => Err(BrokerError::InvalidRecord("null records".into()).code()),
                    Some(records) => match append(ctx, &req.transactional_id, &p, &records).await {
                        Ok(res) => {
                            let appended = (res.last_offset - res.base_offset + 1).max(0) as u64;
                            p.stats.produced(&metrics.totals, appended, sent_bytes);
                            r.base_offset = res.base_offset;
                            r.log_append_time_ms = res.log_append_time;
                            if ctx.version >= 5 {
                                r.log_start_offset = res.log_start_offset;
                            }
                            pending.push((responses.len(), partitions.len(), p.clone(), res));
                            Ok(())
                        }
                        Err(BrokerError::NotLeaderOrFollower) => {
                            tracing::debug!(topic = %name, partition = pd.index, "produce to a follower");
                            Err(BrokerError::NotLeaderOrFollower.code())
                        }
                        Err(e) => {
                            warn_limited!(topic = %name, partition = pd.index, error = %e, "produce rejected");
                            if ctx.version >= 8 {
                                r.error_message = Some(str_bytes(e.to_string()));
                                if let BrokerError::InvalidRecords(errors) = &e {
                                    r.record_errors = errors
                                        .iter()
                                        .map(|(i, m)| {
                                            BatchIndexAndErrorMessage::default()
                                                .with_batch_index(*i)
                                                .with_batch_index_error_message(Some(str_bytes(
                                                    m.clone(),
                                                )))
                                        })
                                        .collect();
                                }
                            }
                            Err(e.code())
                        }
                    },
                }
            } else {
                Err(ResponseError::UnknownTopicOrPartition.code())
            };
            if let Err(code) = outcome {
                r.error_code = code;
                r.base_offset = -1;
                let records = sent.as_ref().map_or(0, records_in);
                match t.as_ref().and_then(|t| t.partition(pd.index)) {
                    Some(p) => p.stats.rejected(&metrics.totals, records, sent_bytes),
                    None => crate::metrics::rejected_unknown(&metrics.totals, records, sent_bytes),
                }
            }
            partitions.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    let appended_at = std::time::Instant::now();
    metrics.observe_stage(
        "Produce",
        crate::metrics::STAGE_LOCAL,
        appended_at - started,
    );
    Appended {
        acks,
        timeout,
        responses,
        pending,
        appended_at,
    }
}

impl Appended {
    /// Phase two: waits for the acknowledgements and builds the answer.
    pub async fn answer(self, ctx: &RequestContext) -> Answer {
        let Self {
            acks,
            timeout,
            mut responses,
            pending,
            appended_at,
        } = self;
        let metrics = &ctx.broker.metrics;
        for (ti, pi, partition, appended) in pending {
            // acks=1: in the leader's log (at the offsets answered); acks=all:
            // committed.
            let outcome = match acks {
                -1 if partition.is_replicated() => {
                    let r = partition.wait_acked(&appended, timeout).await;
                    metrics
                        .raft_commit
                        .observe(appended_at.elapsed().as_secs_f64());
                    r
                }
                -1 => partition.wait_acked(&appended, timeout).await,
                1 => partition.confirm(&appended).await,
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                let r = &mut responses[ti].partition_responses[pi];
                r.error_code = e.code();
                r.base_offset = -1;
                if ctx.version >= 8 {
                    r.error_message = Some(str_bytes(e.to_string()));
                }
            }
        }
        metrics.observe_stage("Produce", crate::metrics::STAGE_WAIT, appended_at.elapsed());
        if acks == 0 {
            let failed = responses.iter().find_map(|t| {
                t.partition_responses
                    .iter()
                    .find(|p| p.error_code != 0)
                    .map(|p| (t.name.0.as_str().to_owned(), p.index, p.error_code))
            });
            return match failed {
                Some((topic, index, code)) => Answer::Close(format!(
                    "acks=0 produce to {topic}-{index} failed with {}",
                    ResponseError::try_from_code(code)
                        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
                )),
                None => Answer::Silent,
            };
        }
        Answer::Response(ProduceResponse::default().with_responses(responses))
    }
}

/// Appends one partition's records; transactional batches are checked
/// against the producer's transaction under the partition's lock (KIP-890
/// part 1: a partition not added to the transaction is refused).
async fn append(
    ctx: &RequestContext,
    transactional_id: &Option<kafka_protocol::messages::TransactionalId>,
    p: &crate::partition::Partition,
    records: &bytes::Bytes,
) -> Result<crate::partition::AppendResult, BrokerError> {
    let Some(txn) = transactional_id else {
        return p.append(records);
    };
    let Some((pid, epoch)) = first_transactional(records) else {
        return p.append(records);
    };
    let txns = &ctx.broker.txns;
    // Produce v12 from a producer on transaction version 2 (KIP-890 part
    // 2): the partition joins the transaction here.
    let add = ctx.version >= 12 && crate::handlers::api_versions::transaction_version() >= 2;
    let prepared = txns
        .prepare_check(&ctx.broker, p, txn.0.as_str(), (pid, epoch), add)
        .await?;
    let verify = |h: &sluice_storage::BatchHeader, t: &crate::txn::partition::PartitionTxns| {
        txns.check(prepared, txn.0.as_str(), h, t, &p.topic, p.index)
    };
    p.append_verified(records, &verify)
}

/// Records in the batches of a produce request's partition (what a
/// refused write counts as rejected).
fn records_in(records: &bytes::Bytes) -> u64 {
    let mut pos = 0usize;
    let mut n = 0u64;
    while pos + 61 <= records.len() {
        let Ok(h) = sluice_storage::BatchHeader::parse(&records[pos..]) else {
            break;
        };
        n += (h.last_offset_delta.max(0) as u64) + 1;
        pos += h.total_size();
    }
    n
}

/// The producer id and epoch of the first transactional batch, if any.
fn first_transactional(records: &bytes::Bytes) -> Option<(i64, i16)> {
    let mut pos = 0usize;
    while pos + 61 <= records.len() {
        let h = sluice_storage::BatchHeader::parse(&records[pos..]).ok()?;
        if h.is_transactional() {
            return Some((h.producer_id, h.producer_epoch));
        }
        pos += h.total_size();
    }
    None
}

/// Whether any v2 batch of a records field is zstd-compressed (attribute
/// codec 4). Reads only lengths and attributes; validation comes later.
fn uses_zstd(records: &bytes::Bytes) -> bool {
    any_batch(records, |attrs| attrs & 0x7 == 4)
}

/// Whether the attributes of any v2 batch of a records field match.
fn any_batch(records: &bytes::Bytes, matches: impl Fn(i16) -> bool) -> bool {
    let mut pos = 0usize;
    while pos + 23 <= records.len() {
        let len = i32::from_be_bytes([
            records[pos + 8],
            records[pos + 9],
            records[pos + 10],
            records[pos + 11],
        ]);
        let attrs = i16::from_be_bytes([records[pos + 21], records[pos + 22]]);
        if matches(attrs) {
            return true;
        }
        if len <= 0 {
            return false;
        }
        pos += 12 + len as usize;
    }
    false
}
