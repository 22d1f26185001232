//! Finding and administering groups: FindCoordinator (one key before v4, a
//! batch from v4; groups and transactional ids), DescribeGroups, ListGroups, DeleteGroups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsRequest,
    ListGroupsResponse,
};

use super::RequestContext;
use super::offsets::group_id;
use super::str_bytes;
use crate::group::classic::GroupState;

/// FindCoordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// (error, node, host, port, message) for one key.
async fn locate(
    ctx: &RequestContext,
    key: &str,
    key_type: i8,
) -> (i16, i32, String, i32, Option<String>) {
    let none =
        |code: ResponseError, msg: &str| (code.code(), -1, String::new(), -1, Some(msg.to_owned()));
    if key_type == TRANSACTION {
        if key.is_empty() {
            return none(ResponseError::InvalidRequest, "empty transactional id");
        }
        return match ctx
            .broker
            .txns
            .txn_partition_anywhere(&ctx.broker, key)
            .await
        {
            Err(code) => (
                code,
                -1,
                String::new(),
                -1,
                Some("transaction coordinator unavailable".into()),
            ),
            Ok(p) => leader_of(
                ctx,
                &p,
                "the transactional id's partition has no leader right now",
            ),
        };
    }
    if key_type != GROUP {
        warn_limited!(key, key_type, "FindCoordinator with an unknown key type");
        return none(
            ResponseError::InvalidRequest,
            "unknown coordinator key type (share groups are not served)",
        );
    }
    if key.is_empty() {
        return none(ResponseError::InvalidRequest, "empty group id");
    }
    let p = match ctx
        .broker
        .groups
        .offsets_partition_anywhere(&ctx.broker, key)
        .await
    {
        Ok(p) => p,
        Err(code) => {
            return (
                code,
                -1,
                String::new(),
                -1,
                Some("group coordinator unavailable".into()),
            );
        }
    };
    // The coordinator is the leader of the group's partition.
    leader_of(ctx, &p, "the group's partition has no leader right now")
}

/// The leader of a coordinator's partition, as FindCoordinator answers it.
fn leader_of(
    ctx: &RequestContext,
    p: &crate::partition::Partition,
    unavailable: &str,
) -> (i16, i32, String, i32, Option<String>) {
    let leader = p.leader(ctx.broker.node_id()).0;
    match leader.and_then(|id| Some((id, ctx.broker.broker_address_on(&ctx.session.listener, id)?)))
    {
        Some((id, (host, port))) => (0, id, host, port, None),
        None => (
            ResponseError::CoordinatorNotAvailable.code(),
            -1,
            String::new(),
            -1,
            Some(unavailable.to_owned()),
        ),
    }
}

pub async fn find_coordinator(
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let v = ctx.version;
    let key_type = if v >= 1 { req.key_type } else { GROUP };
    if v >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in &req.coordinator_keys {
            let (code, node, host, port, msg) = locate(ctx, key.as_str(), key_type).await;
            coordinators.push(
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(msg.map(str_bytes)),
            );
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, node, host, port, msg) = locate(ctx, req.key.as_str(), key_type).await;
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(host))
        .with_port(port);
    if v >= 1 {
        resp.error_message = msg.map(str_bytes);
    }
    resp
}

pub async fn describe(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let v = ctx.version;
    let mut coordinated = Vec::with_capacity(req.groups.len());
    for id in &req.groups {
        coordinated.push(if id.0.is_empty() {
            Ok(())
        } else {
            ctx.broker
                .groups
                .coordinates(&ctx.broker, id.0.as_str())
                .await
        });
    }
    let groups = req
        .groups
        .into_iter()
        .zip(coordinated)
        .map(|(id, coordinated)| {
            let out = DescribedGroup::default().with_group_id(id.clone());
            if id.0.is_empty() {
                return out.with_error_code(ResponseError::InvalidGroupId.code());
            }
            if let Err(code) = coordinated {
                return out.with_error_code(code);
            }
            match ctx.broker.groups.describe(id.0.as_str()) {
                None => out
                    .with_group_state(str_bytes(GroupState::Dead.name()))
                    .with_protocol_type(str_bytes("")),
                Some(d) => out
                    .with_group_state(str_bytes(d.state.name()))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let mut r = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if v >= 4 {
                                    r.group_instance_id = m.instance_id.map(str_bytes);
                                }
                                r
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn list(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.version;
    let states: Vec<String> = if v >= 4 {
        req.states_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if v >= 5 {
        req.types_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let groups = ctx
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.kind))
        .map(|g| {
            let mut out = ListedGroup::default()
                .with_group_id(group_id(&g.id))
                .with_protocol_type(str_bytes(g.protocol_type));
            if v >= 4 {
                out.group_state = str_bytes(g.state);
            }
            if v >= 5 {
                out.group_type = str_bytes(g.kind);
            }
            out
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn delete(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let code = if id.0.is_empty() {
            ResponseError::InvalidGroupId.code()
        } else {
            ctx.broker
                .groups
                .delete_group(&ctx.broker, id.0.as_str())
                .await
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
