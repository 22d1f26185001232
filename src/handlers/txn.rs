//! The transaction APIs: AddPartitionsToTxn (a client's one transaction up
//! to v3, a broker's batch with verify_only from v4), AddOffsetsToTxn,
//! EndTxn, TxnOffsetCommit, WriteTxnMarkers, DescribeTransactions and
//! ListTransactions. The state lives in [`crate::txn::TxnCoordinator`].

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use super::{RequestContext, str_bytes};
use crate::group::{CommitItem, OFFSETS_TOPIC, TxnCommit};
use crate::security::acl::{AclOperation, ResourceType};
use crate::txn::TxnState;
use crate::txn::partition::Marker;

/// PRODUCER_FENCED arrived with KIP-588; older versions of each API get
/// INVALID_PRODUCER_EPOCH instead, as Kafka answers them.
pub fn fenced_for(code: i16, version: i16, first_fenced_version: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() && version < first_fenced_version {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// (topic, partition) pairs of the request, and the codes of those that do
/// not exist: UNKNOWN_TOPIC_OR_PARTITION for them and OPERATION_NOT_ATTEMPTED
/// for the others, as Kafka answers (nothing is added then).
fn partitions_of(
    ctx: &RequestContext,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> (Vec<(String, i32)>, bool) {
    let mut all = Vec::new();
    let mut unknown = false;
    for t in topics {
        let name = t.name.0.as_str();
        let topic = ctx.broker.topic(name);
        for &p in &t.partitions {
            let exists = topic
                .as_ref()
                .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
            // Only the coordinator adds `__consumer_offsets` (AddOffsetsToTxn);
            // a group coordinator may verify it.
            let internal = (name == OFFSETS_TOPIC && !verify_only) || name == crate::txn::TXN_TOPIC;
            unknown |= !exists || internal;
            all.push((name.to_owned(), p));
        }
    }
    (all, unknown)
}

fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    codes: impl Fn(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(codes(t.name.0.as_str(), p))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// One transaction's partitions: a code for each.
async fn add_one(
    ctx: &RequestContext,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    // WRITE on the transactional id, then on every topic; when any is
    // refused, the rest is not attempted.
    if !ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        transactional_id,
    ) {
        return topic_results(topics, |_, _| {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        });
    }
    let denied: std::collections::HashSet<&str> = topics
        .iter()
        .map(|t| t.name.0.as_str())
        .filter(|t| !ctx.authorize_topic(AclOperation::Write, t))
        .collect();
    if !denied.is_empty() {
        return topic_results(topics, |t, _| {
            if denied.contains(t) {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    let (wanted, unknown) = partitions_of(ctx, topics, verify_only);
    if unknown {
        let broker = &ctx.broker;
        return topic_results(topics, |t, p| {
            let exists = (t != OFFSETS_TOPIC || verify_only)
                && t != crate::txn::TXN_TOPIC
                && broker
                    .topic(t)
                    .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
            if exists {
                ResponseError::OperationNotAttempted.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            }
        });
    }
    let outcome = ctx
        .broker
        .txns
        .add_partitions(
            &ctx.broker,
            transactional_id,
            producer_id,
            epoch,
            &wanted,
            verify_only,
        )
        .await;
    let codes: std::collections::HashMap<(String, i32), i16> = match outcome {
        Ok(codes) => wanted.iter().cloned().zip(codes).collect(),
        Err(c) => {
            let c = fenced_for(c, ctx.version, 2);
            if c != ResponseError::ConcurrentTransactions.code() {
                warn_limited!(transactional_id, code = c, "AddPartitionsToTxn refused");
            }
            wanted.iter().cloned().map(|k| (k, c)).collect()
        }
    };
    topic_results(topics, |t, p| {
        codes.get(&(t.to_owned(), p)).copied().unwrap_or(0)
    })
}

pub async fn add_partitions(
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_one(
            ctx,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            ctx,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

pub async fn add_offsets(
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let group = req.group_id.0.as_str();
    let resp = AddOffsetsToTxnResponse::default();
    if !ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.0.as_str(),
    ) {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !ctx.authorize_group(AclOperation::Read, group) {
        return resp.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if group.is_empty() {
        return resp.with_error_code(ResponseError::InvalidGroupId.code());
    }
    // The group's partition of `__consumer_offsets` joins the transaction
    // (creating the topic first, as FindCoordinator would).
    let p = match ctx
        .broker
        .groups
        .offsets_partition_anywhere(&ctx.broker, group)
        .await
    {
        Ok(p) => p,
        Err(c) => return resp.with_error_code(c),
    };
    let partition = (OFFSETS_TOPIC.to_owned(), p.index);
    match ctx
        .broker
        .txns
        .add_partitions(
            &ctx.broker,
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            &[partition],
            false,
        )
        .await
    {
        Ok(_) => resp,
        Err(c) => {
            let c = fenced_for(c, ctx.version, 2);
            warn_limited!(transactional_id = %req.transactional_id.0, code = c, "AddOffsetsToTxn refused");
            resp.with_error_code(c)
        }
    }
}

pub async fn end_txn(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let resp = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if !ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.0.as_str(),
    ) {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match ctx
        .broker
        .txns
        .end_txn(
            &ctx.broker,
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            // v5: transaction version 2 (KIP-890 part 2).
            ctx.version >= 5,
        )
        .await
    {
        Ok((id, epoch)) if ctx.version >= 5 => resp
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Ok(_) => resp,
        Err(c) => resp.with_error_code(fenced_for(c, ctx.version, 2)),
    }
}

pub async fn txn_offset_commit(
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.as_str();
    let items: Vec<CommitItem> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitItem {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    // WRITE on the transactional id, READ on the group, READ on each topic.
    let refused: Vec<i16> = if !ctx.authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        req.transactional_id.0.as_str(),
    ) {
        vec![ResponseError::TransactionalIdAuthorizationFailed.code(); items.len()]
    } else if !ctx.authorize_group(AclOperation::Read, group) {
        vec![ResponseError::GroupAuthorizationFailed.code(); items.len()]
    } else {
        let mut readable = std::collections::HashMap::new();
        items
            .iter()
            .map(|i| {
                if *readable
                    .entry(i.topic.clone())
                    .or_insert_with(|| ctx.authorize_topic(AclOperation::Read, &i.topic))
                {
                    0
                } else {
                    ResponseError::TopicAuthorizationFailed.code()
                }
            })
            .collect()
    };
    let items: Vec<CommitItem> = items
        .into_iter()
        .zip(&refused)
        .filter(|(_, c)| **c == 0)
        .map(|(i, _)| i)
        .collect();
    let codes = if items.is_empty() {
        Vec::new()
    } else if group.is_empty() {
        vec![ResponseError::InvalidGroupId.code(); items.len()]
    } else {
        let member_id = req.member_id.as_str();
        let commit = TxnCommit {
            transactional_id: req.transactional_id.0.as_str(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            member_id: if ctx.version >= 3 { member_id } else { "" },
            instance_id: if ctx.version >= 3 {
                req.group_instance_id.as_deref()
            } else {
                None
            },
            generation: if ctx.version >= 3 {
                req.generation_id
            } else {
                -1
            },
            add: ctx.version >= 5,
        };
        ctx.broker
            .groups
            .txn_commit(&ctx.broker, group, &commit, &items)
            .await
            .into_iter()
            .map(|c| fenced_for(c, ctx.version, 3))
            .collect()
    };
    let mut passed = codes.into_iter();
    let mut codes = refused.into_iter().map(|c| {
        if c == 0 {
            passed.next().unwrap_or(0)
        } else {
            c
        }
    });
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// WriteTxnMarkers: what a transaction coordinator sends the leaders of its
/// partitions. Each marker is appended and answered once durable.
pub async fn write_txn_markers(
    ctx: &RequestContext,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    // Only the cluster itself writes markers (CLUSTER_ACTION).
    let allowed = ctx.authorize_cluster(AclOperation::ClusterAction);
    let mut out = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let marker = if m.transaction_result {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &index in &t.partition_indexes {
                let code = match ctx.broker.partition(t.name.0.as_str(), index) {
                    _ if !allowed => ResponseError::ClusterAuthorizationFailed.code(),
                    None => ResponseError::UnknownTopicOrPartition.code(),
                    Some(p) => {
                        match p.append_marker(
                            m.producer_id.0,
                            m.producer_epoch,
                            marker,
                            m.coordinator_epoch,
                        ) {
                            Ok(None) => 0,
                            Ok(Some(r)) => match p.wait_acked(&r, Duration::from_secs(30)).await {
                                Ok(()) => {
                                    if &*p.topic == OFFSETS_TOPIC {
                                        ctx.broker.groups.complete_txn(
                                            p.index,
                                            m.producer_id.0,
                                            m.transaction_result,
                                        );
                                    }
                                    0
                                }
                                Err(e) => e.code(),
                            },
                            Err(e) => {
                                warn_limited!(partition = ?p, producer_id = m.producer_id.0, error = %e, "transaction marker refused");
                                e.code()
                            }
                        }
                    }
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        out.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(out)
}

pub async fn describe_transactions(
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let out = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(str_bytes(""))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        if !ctx.authorize(
            AclOperation::Describe,
            ResourceType::TransactionalId,
            id.0.as_str(),
        ) {
            states.push(
                out.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            );
            continue;
        }
        states.push(
            match ctx.broker.txns.describe(&ctx.broker, id.0.as_str()).await {
                Err(c) => out.with_error_code(c),
                Ok(m) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (t, p) in &m.partitions {
                        match topics.last_mut() {
                            Some(last) if last.topic.0.as_str() == t => last.partitions.push(*p),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(t.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    out.with_transaction_state(str_bytes(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.epoch)
                        .with_topics(topics)
                }
            },
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub async fn list_transactions(
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for f in &req.state_filters {
        match TxnState::from_name(f.as_str()) {
            Some(s) => states.push(s),
            None => unknown.push(f.clone()),
        }
    }
    let resp = ListTransactionsResponse::default().with_unknown_state_filters(unknown);
    let pattern = match req
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                warn_limited!(pattern = %p, error = %e, "ListTransactions with an invalid pattern");
                return resp.with_error_code(ResponseError::InvalidRegularExpression.code());
            }
        },
    };
    let now = ctx.broker.now_ms();
    let listed = ctx
        .broker
        .txns
        .list(&ctx.broker)
        .into_iter()
        .filter(|t| states.is_empty() || states.contains(&t.state))
        .filter(|t| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == t.producer_id)
        })
        // Only transactions running for at least the filter (v1).
        .filter(|t| {
            req.duration_filter < 0 || (t.start_ms >= 0 && now - t.start_ms >= req.duration_filter)
        })
        .filter(|t| {
            pattern
                .as_ref()
                .is_none_or(|r| r.is_match(&t.transactional_id))
        })
        // Only the ids this principal may describe.
        .filter(|t| {
            ctx.authorize(
                AclOperation::Describe,
                ResourceType::TransactionalId,
                &t.transactional_id,
            )
        })
        .map(|t| {
            ListedState::default()
                .with_transactional_id(TransactionalId(str_bytes(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(str_bytes(t.state.name()))
        })
        .collect();
    resp.with_transaction_states(listed)
}
