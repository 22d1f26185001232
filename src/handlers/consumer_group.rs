//! KIP-848 consumer groups: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//! Topic ids on the wire, topic names inside the coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as cgd, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as cgh, Assignment};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use uuid::Uuid;

use super::{RequestContext, str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::assignor;
use crate::group::consumer::{DescribeFilter, HeartbeatRequest, JOIN, LEAVE, LEAVE_STATIC};
use crate::security::acl::{AclOperation, ResourceType};

/// (topic id, partitions) pairs for the wire; topics that vanished are left out.
fn by_id(broker: &Broker, a: &assignor::Assignment) -> Vec<(Uuid, Vec<i32>)> {
    a.iter()
        .filter_map(|(t, ps)| {
            let topic = broker.topic(t)?;
            Some((topic.id, ps.iter().copied().collect()))
        })
        .collect()
}

/// The request checks Kafka makes before the group sees a heartbeat, in
/// Kafka's order. -1 and null fields mean "unchanged since the last
/// heartbeat"; a joining member must send what it has no previous value for.
fn validate(version: i16, req: &ConsumerGroupHeartbeatRequest) -> Result<(), &'static str> {
    let empty =
        |s: &Option<kafka_protocol::protocol::StrBytes>| s.as_ref().is_some_and(|s| s.is_empty());
    // From v1 the client makes its own member id.
    if version >= 1 && req.member_id.is_empty() {
        return Err("MemberId can't be empty.");
    }
    if empty(&req.instance_id) {
        return Err("InstanceId can't be empty.");
    }
    if empty(&req.rack_id) {
        return Err("RackId can't be empty.");
    }
    match req.member_epoch {
        e if e > 0 || e == LEAVE => {}
        JOIN => {
            if req.rebalance_timeout_ms == -1 {
                return Err("RebalanceTimeoutMs must be provided in first request.");
            }
            if req
                .topic_partitions
                .as_ref()
                .is_none_or(|tps| !tps.is_empty())
            {
                return Err("TopicPartitions must be empty when (re-)joining.");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return Err(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEAVE_STATIC => {
            if req.instance_id.is_none() {
                return Err("InstanceId can't be null.");
            }
        }
        _ => return Err("MemberEpoch is invalid."),
    }
    Ok(())
}

pub async fn heartbeat(
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let broker = &ctx.broker;
    let group = req.group_id.0.as_str().to_owned();
    let resp = ConsumerGroupHeartbeatResponse::default().with_member_epoch(-1);
    // READ on the group, then DESCRIBE on every topic subscribed by name.
    if !ctx.authorize_group(AclOperation::Read, &group) {
        return resp.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if let Some(names) = &req.subscribed_topic_names {
        let denied: Vec<&str> = names
            .iter()
            .map(|t| t.0.as_str())
            .filter(|t| !ctx.authorize_topic(AclOperation::Describe, t))
            .collect();
        if !denied.is_empty() {
            return resp
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_error_message(Some(str_bytes(format!(
                    "The following topics are not authorized: {}",
                    denied.join(", ")
                ))));
        }
    }
    if group.is_empty() {
        return resp.with_error_code(ResponseError::InvalidGroupId.code());
    }
    if let Err(message) = validate(ctx.version, &req) {
        tracing::debug!(group = %group, detail = %message, "ConsumerGroupHeartbeat refused");
        return resp
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(message.to_owned())));
    }
    let owned = req.topic_partitions.map(|tps| {
        let mut a = assignor::Assignment::new();
        for tp in tps {
            if let Some(t) = broker.topic_by_id(tp.topic_id) {
                a.entry(t.name.clone()).or_default().extend(tp.partitions);
            }
        }
        a
    });
    let hb = HeartbeatRequest {
        member_id: req.member_id.to_string(),
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.header.client_id.as_deref().unwrap_or("").to_owned(),
        client_host: format!("/{}", ctx.peer.ip()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        regex: if ctx.version >= 1 {
            req.subscribed_topic_regex.as_ref().map(|s| s.to_string())
        } else {
            None
        },
        assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        may_describe: broker.authorizer_enabled().then(|| {
            let (broker, session) = (broker.clone(), ctx.session.clone());
            DescribeFilter(Arc::new(move |topic: &str| {
                broker.authorize(&session, AclOperation::Describe, ResourceType::Topic, topic)
            }))
        }),
    };
    let out = broker.groups.consumer_heartbeat(broker, &group, hb).await;
    if out.error != 0 {
        tracing::debug!(group = %group, code = out.error, detail = ?out.message, "ConsumerGroupHeartbeat refused");
        return resp
            .with_error_code(out.error)
            .with_error_message(out.message.map(str_bytes));
    }
    resp.with_member_id(Some(str_bytes(out.member_id)))
        .with_member_epoch(out.epoch)
        .with_heartbeat_interval_ms(broker.consumer_group_config(&group).heartbeat_interval_ms)
        .with_assignment(out.assignment.map(|a| {
            Assignment::default().with_topic_partitions(
                by_id(broker, &a)
                    .into_iter()
                    .map(|(id, ps)| {
                        cgh::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        }))
}

fn describe_assignment(broker: &Broker, a: &assignor::Assignment) -> cgd::Assignment {
    let names: BTreeMap<Uuid, String> = a
        .keys()
        .filter_map(|t| broker.topic(t).map(|topic| (topic.id, t.clone())))
        .collect();
    cgd::Assignment::default().with_topic_partitions(
        by_id(broker, a)
            .into_iter()
            .map(|(id, ps)| {
                cgd::TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(topic_name(names.get(&id).map(String::as_str).unwrap_or("")))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub async fn describe(
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let broker = &ctx.broker;
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let out = DescribedGroup::default().with_group_id(id.clone());
            if !ctx.authorize_group(AclOperation::Describe, id.0.as_str()) {
                return out.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let out = if req.include_authorized_operations {
                out.with_authorized_operations(
                    ctx.authorized_operations(ResourceType::Group, id.0.as_str()),
                )
            } else {
                out
            };
            match broker.groups.consumer_describe(id.0.as_str()) {
                Err(code) => {
                    out.with_error_code(code)
                        .with_error_message(Some(str_bytes(format!(
                            "group '{}' is not a consumer group",
                            id.0
                        ))))
                }
                Ok(d) => out
                    .with_group_state(str_bytes(d.state))
                    .with_group_epoch(d.epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(str_bytes(d.assignor))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let mut r = cgd::Member::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_instance_id(m.instance_id.map(str_bytes))
                                    .with_rack_id(m.rack_id.map(str_bytes))
                                    .with_member_epoch(m.epoch)
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_subscribed_topic_regex(m.regex.map(str_bytes))
                                    .with_subscribed_topic_names(
                                        m.subscribed.iter().map(|t| topic_name(t)).collect(),
                                    )
                                    .with_assignment(describe_assignment(broker, &m.assignment))
                                    .with_target_assignment(describe_assignment(broker, &m.target));
                                if ctx.version >= 1 {
                                    // 0: a classic member, 1: a consumer-protocol one.
                                    r.member_type = if m.classic { 0 } else { 1 };
                                }
                                r
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
