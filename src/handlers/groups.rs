//! Group membership (classic protocol): JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup. The rules live in `group::classic`; this maps wire fields to it,
//! setting only the fields each version has.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, str_bytes};
use crate::group::classic::{JoinRequest, SyncRequest};
use crate::security::acl::AclOperation;

fn opt(s: &Option<StrBytes>) -> Option<&str> {
    s.as_ref().map(|s| s.as_str())
}

fn invalid_group(group: &str) -> bool {
    if group.is_empty() {
        warn_limited!("group request with an empty group id");
        return true;
    }
    false
}

pub async fn join(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version;
    let group = req.group_id.0.as_str().to_owned();
    let mut resp = JoinGroupResponse::default()
        .with_generation_id(-1)
        .with_member_id(req.member_id.clone());
    // Nullable from v7: null until a protocol is chosen.
    resp.protocol_name = (v < 7).then(StrBytes::default);
    if !ctx.authorize_group(AclOperation::Read, &group) {
        return resp.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if invalid_group(&group) {
        return resp.with_error_code(ResponseError::InvalidGroupId.code());
    }
    let client_id = ctx.header.client_id.as_deref().unwrap_or("").to_owned();
    let instance_id = if v >= 5 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let prefix = instance_id.clone().unwrap_or_else(|| client_id.clone());
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id,
        client_id,
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: v >= 4,
        new_member_id: format!("{prefix}-{}", uuid::Uuid::new_v4()),
    };
    let out = ctx.broker.groups.join(&ctx.broker, &group, join).await;
    if out.error != 0 {
        tracing::debug!(group = %group, code = out.error, "JoinGroup answered with an error");
    }
    resp.error_code = out.error;
    resp.generation_id = out.generation;
    resp.member_id = str_bytes(out.member_id);
    resp.leader = str_bytes(out.leader);
    if v >= 7 {
        resp.protocol_type = out.protocol_type.map(str_bytes);
        resp.protocol_name = out.protocol.map(str_bytes);
    } else {
        resp.protocol_name = Some(str_bytes(out.protocol.unwrap_or_default()));
    }
    resp.members = out
        .members
        .into_iter()
        .map(|m| {
            let mut r = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_metadata(m.metadata);
            if v >= 5 {
                r.group_instance_id = m.instance_id.map(str_bytes);
            }
            r
        })
        .collect();
    resp
}

pub async fn sync(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let v = ctx.version;
    let group = req.group_id.0.as_str().to_owned();
    let resp = SyncGroupResponse::default();
    if !ctx.authorize_group(AclOperation::Read, &group) {
        return resp.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if invalid_group(&group) {
        return resp.with_error_code(ResponseError::InvalidGroupId.code());
    }
    let owned = |s: &Option<StrBytes>| s.as_ref().map(|s| s.to_string());
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        instance_id: if v >= 3 {
            owned(&req.group_instance_id)
        } else {
            None
        },
        generation: req.generation_id,
        protocol_type: if v >= 5 {
            owned(&req.protocol_type)
        } else {
            None
        },
        protocol: if v >= 5 {
            owned(&req.protocol_name)
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let out = ctx.broker.groups.sync(&ctx.broker, &group, sync).await;
    let mut resp = resp
        .with_error_code(out.error)
        .with_assignment(out.assignment);
    if v >= 5 && out.error == 0 {
        resp.protocol_type = out.protocol_type.map(str_bytes);
        resp.protocol_name = out.protocol.map(str_bytes);
    }
    resp
}

pub async fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.as_str();
    if !ctx.authorize_group(AclOperation::Read, group) {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if invalid_group(group) {
        return HeartbeatResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let instance = if ctx.version >= 3 {
        opt(&req.group_instance_id)
    } else {
        None
    };
    if let Err(code) = ctx.broker.groups.coordinates(&ctx.broker, group).await {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let code = ctx.broker.groups.heartbeat(
        &ctx.broker,
        group,
        req.member_id.as_str(),
        instance,
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub async fn leave(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let v = ctx.version;
    let group = req.group_id.0.as_str();
    if !ctx.authorize_group(AclOperation::Read, group) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if invalid_group(group) {
        return LeaveGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let codes = match ctx.broker.groups.leave(&ctx.broker, group, &members).await {
        Ok(codes) => codes,
        Err(c) => vec![c; members.len()],
    };
    if v < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    LeaveGroupResponse::default().with_members(
        members
            .into_iter()
            .zip(codes)
            .map(|((id, instance), code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(id))
                    .with_group_instance_id(instance.map(str_bytes))
                    .with_error_code(code)
            })
            .collect(),
    )
}
