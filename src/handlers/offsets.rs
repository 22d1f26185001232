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
use crate::security::acl::AclOperation;

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
    // As Kafka: READ on the group (else every partition fails), then READ
    // on each topic; partitions that do not exist are refused before the
    // group sees the request; the coordinator's answer covers the rest.
    let group_denied = !ctx.authorize_group(AclOperation::Read, group);
    let mut readable = std::collections::HashMap::new();
    let refused: Vec<i16> =
        items
            .iter()
            .map(|i| {
                if group_denied {
                    ResponseError::GroupAuthorizationFailed.code()
                } else if !*readable
                    .entry(i.topic.clone())
                    .or_insert_with(|| ctx.authorize_topic(AclOperation::Read, &i.topic))
                {
                    ResponseError::TopicAuthorizationFailed.code()
                } else if ctx.broker.topic(&i.topic).is_some_and(|t| {
                    i.partition >= 0 && (i.partition as usize) < t.partitions.len()
                }) {
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            })
            .collect();
    let known: Vec<CommitItem> = items
        .iter()
        .zip(&refused)
        .filter(|(_, e)| **e == 0)
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
    let mut codes = refused.into_iter().map(|e| {
        if e == 0 {
            known_codes.next().unwrap_or(0)
        } else {
            e
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
    // DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED), then on each
    // topic: a topic asked for fails with TOPIC_AUTHORIZATION_FAILED, and
    // one the principal may not describe is left out of "all topics".
    let authorized = |id: &str, wanted: Option<&[(String, Vec<i32>)]>| {
        let mut out = groups.fetch(id, wanted);
        if !ctx.broker.authorizer_enabled() {
            return (out, Vec::new());
        }
        let mut denied = Vec::new();
        out.retain(|(t, parts)| {
            if ctx.authorize_topic(AclOperation::Describe, t) {
                return true;
            }
            if wanted.is_some() {
                denied.push((
                    t.clone(),
                    parts.iter().map(|(p, _)| *p).collect::<Vec<i32>>(),
                ));
            }
            false
        });
        (out, denied)
    };
    if v >= 8 {
        let mut errors = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            let id = g.group_id.0.as_str();
            errors.push(if ctx.authorize_group(AclOperation::Describe, id) {
                groups.coordinates(&ctx.broker, id).await
            } else {
                Err(ResponseError::GroupAuthorizationFailed.code())
            });
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
                let (found, denied) = authorized(id, wanted.as_deref());
                let denied = denied.into_iter().map(|(t, parts)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        )
                                })
                                .collect(),
                        )
                });
                let topics = found
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
                    .chain(denied)
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
    let coordinated = if ctx.authorize_group(AclOperation::Describe, group) {
        groups.coordinates(&ctx.broker, group).await
    } else {
        Err(ResponseError::GroupAuthorizationFailed.code())
    };
    if let Err(code) = coordinated {
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
    let (found, denied) = authorized(group, wanted.as_deref());
    let denied = denied.into_iter().map(|(t, parts)| {
        OffsetFetchResponseTopic::default()
            .with_name(topic_name(&t))
            .with_partitions(
                parts
                    .into_iter()
                    .map(|p| {
                        let mut r = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                        if v >= 5 {
                            r.committed_leader_epoch = -1;
                        }
                        r
                    })
                    .collect(),
            )
    });
    let topics = found
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
        .chain(denied)
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
    // DELETE on the group, as Kafka checks it first.
    if !ctx.authorize_group(AclOperation::Delete, group) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
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
