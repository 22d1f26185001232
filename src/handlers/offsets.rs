//! Committed offsets: OffsetCommit, OffsetFetch (one group before v8, several
//! from v8), OffsetDelete. Storage and the generation checks live in `group`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};

use super::{RequestContext, str_bytes, topic_name};
use crate::group::{CommitItem, Committed};

pub async fn commit(ctx: &RequestContext, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let v = ctx.version;
    let group = req.group_id.0.as_str();
    let items: Vec<CommitItem> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitItem {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    // Partitions that do not exist are refused before the group sees the
    // request, as Kafka does; the coordinator's answer covers the rest.
    let exists: Vec<bool> = items
        .iter()
        .map(|i| {
            ctx.broker
                .topic(&i.topic)
                .is_some_and(|t| i.partition >= 0 && (i.partition as usize) < t.partitions.len())
        })
        .collect();
    let known: Vec<CommitItem> = items
        .iter()
        .zip(&exists)
        .filter(|(_, e)| **e)
        .map(|(i, _)| i.clone())
        .collect();
    let known_codes = if known.is_empty() {
        Vec::new()
    } else if group.is_empty() {
        warn_limited!("OffsetCommit with an empty group id");
        vec![ResponseError::InvalidGroupId.code(); known.len()]
    } else {
        let instance = if v >= 7 {
            req.group_instance_id.as_ref().map(|s| s.as_str())
        } else {
            None
        };
        ctx.broker
            .groups
            .commit(
                &ctx.broker,
                group,
                req.member_id.as_str(),
                instance,
                req.generation_id_or_member_epoch,
                &known,
            )
            .await
    };
    let mut known_codes = known_codes.into_iter();
    let mut codes = exists.into_iter().map(|e| {
        if e {
            known_codes.next().unwrap_or(0)
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    });
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (offset, leader epoch, metadata) to report; -1 and "" when none is stored.
fn reported(c: Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

pub async fn fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    let groups = &ctx.broker.groups;
    // KIP-447 (v7+): an offset an open transaction is committing is
    // unstable; the consumer retries until the transaction ends.
    let require_stable = v >= 7 && req.require_stable;
    let unstable = |group: &str, t: &str, p: i32| require_stable && groups.has_pending(group, t, p);
    if v >= 8 {
        let mut errors = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            errors.push(groups.coordinates(&ctx.broker, g.group_id.0.as_str()).await);
        }
        let out = req
            .groups
            .into_iter()
            .zip(errors)
            .map(|(g, coordinated)| {
                if let Err(code) = coordinated {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code);
                }
                let wanted: Option<Vec<(String, Vec<i32>)>> = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let id = g.group_id.0.as_str();
                let topics = groups
                    .fetch(id, wanted.as_deref())
                    .into_iter()
                    .map(|(t, parts)| {
                        let partitions = parts
                            .into_iter()
                            .map(|(p, c)| {
                                if unstable(id, &t, p) {
                                    return OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_error_code(
                                            ResponseError::UnstableOffsetCommit.code(),
                                        );
                                }
                                let (offset, epoch, meta) = reported(c);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(str_bytes(meta)))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&t))
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(out);
    }
    let group = req.group_id.0.as_str();
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    if let Err(code) = groups.coordinates(&ctx.broker, group).await {
        if v >= 2 {
            return OffsetFetchResponse::default().with_error_code(code);
        }
        // v0-1 have errors per partition only.
        let topics = wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let topics = groups
        .fetch(group, wanted.as_deref())
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, c)| {
                            if unstable(group, &t, p) {
                                let mut r = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_error_code(ResponseError::UnstableOffsetCommit.code());
                                if v >= 5 {
                                    r.committed_leader_epoch = -1;
                                }
                                return r;
                            }
                            let (offset, epoch, meta) = reported(c);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(meta)));
                            if v >= 5 {
                                r.committed_leader_epoch = epoch;
                            }
                            r
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub async fn delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.as_str();
    let wanted: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    match ctx
        .broker
        .groups
        .delete_offsets(&ctx.broker, group, &wanted)
        .await
    {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(topics) => OffsetDeleteResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, code)| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

/// The generated type wants a `GroupId`; kept here so callers need not.
pub fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}
