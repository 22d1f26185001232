//! CreateAcls, DescribeAcls and DeleteAcls, and the checks every handler
//! makes through [`RequestContext::authorize`].
//!
//! As in Kafka: the caller needs ALTER on the cluster to create or delete
//! ACLs and DESCRIBE to list them (CLUSTER_AUTHORIZATION_FAILED otherwise);
//! without an authorizer the three answer SECURITY_DISABLED; a binding or
//! filter with an invalid element is answered INVALID_REQUEST on its own.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::{RequestContext, str_bytes};
use crate::security::acl::{
    AclBinding, AclFilter, AclOperation, CLUSTER_NAME, PatternType, PermissionType, ResourceType,
};

impl RequestContext {
    /// May the request's session perform `op` on `(kind, name)`?
    pub fn authorize(&self, op: AclOperation, kind: ResourceType, name: &str) -> bool {
        self.broker.authorize(&self.session, op, kind, name)
    }

    /// May the request's session perform `op` on the cluster?
    pub fn authorize_cluster(&self, op: AclOperation) -> bool {
        self.authorize(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the session perform `op` on topic `name`?
    pub fn authorize_topic(&self, op: AclOperation, name: &str) -> bool {
        self.authorize(op, ResourceType::Topic, name)
    }

    /// May the session perform `op` on group `id`?
    pub fn authorize_group(&self, op: AclOperation, id: &str) -> bool {
        self.authorize(op, ResourceType::Group, id)
    }

    /// KIP-430's bitfield for `(kind, name)`.
    pub fn authorized_operations(&self, kind: ResourceType, name: &str) -> i32 {
        self.broker.authorized_operations(&self.session, kind, name)
    }
}

/// Kafka's check for a config resource (ConfigResource type codes): the
/// topic, the group, or the cluster for brokers, broker loggers and client
/// metrics; Err is the error to answer with.
pub fn config_access(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    op: AclOperation,
) -> Result<(), ResponseError> {
    let (allowed, error) = match resource_type {
        2 => (
            ctx.authorize_topic(op, name),
            ResponseError::TopicAuthorizationFailed,
        ),
        32 => (
            ctx.authorize_group(op, name),
            ResponseError::GroupAuthorizationFailed,
        ),
        4 | 8 | 16 => (
            ctx.authorize_cluster(op),
            ResponseError::ClusterAuthorizationFailed,
        ),
        _ => return Ok(()),
    };
    if allowed { Ok(()) } else { Err(error) }
}

fn message(
    e: ResponseError,
    text: impl Into<String>,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (e.code(), Some(str_bytes(text)))
}

pub async fn create(ctx: &RequestContext, req: CreateAclsRequest) -> CreateAclsResponse {
    let all_fail = |code: i16, msg: &str| {
        CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(msg)))
                })
                .collect(),
        )
    };
    if !ctx.authorize_cluster(AclOperation::Alter) {
        return all_fail(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.",
        );
    }
    if !ctx.broker.authorizer_enabled() {
        return all_fail(
            ResponseError::SecurityDisabled.code(),
            "No Authorizer is configured.",
        );
    }
    let mut results = Vec::with_capacity(req.creations.len());
    let mut valid = Vec::new();
    for (i, c) in req.creations.iter().enumerate() {
        let b = AclBinding {
            resource_type: ResourceType::from_code(c.resource_type),
            name: c.resource_name.to_string(),
            pattern_type: PatternType::from_code(c.resource_pattern_type),
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: AclOperation::from_code(c.operation),
            permission: PermissionType::from_code(c.permission_type),
        };
        match b.validate() {
            Ok(()) => {
                valid.push((i, b));
                results.push(AclCreationResult::default());
            }
            Err(m) => {
                let (code, msg) = message(ResponseError::InvalidRequest, m);
                results.push(
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(msg),
                );
            }
        }
    }
    let bindings = valid.iter().map(|(_, b)| b.clone()).collect();
    if let Err(e) = ctx.broker.create_acls(bindings).await {
        for (i, _) in &valid {
            results[*i] = AclCreationResult::default()
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message.clone())));
        }
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter_of(
    resource_type: i8,
    name: Option<&kafka_protocol::protocol::StrBytes>,
    pattern_type: i8,
    principal: Option<&kafka_protocol::protocol::StrBytes>,
    host: Option<&kafka_protocol::protocol::StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(resource_type),
        name: name.map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type),
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation: AclOperation::from_code(operation),
        permission: PermissionType::from_code(permission),
    }
}

pub async fn describe(ctx: &RequestContext, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let fail = |e: ResponseError, msg: &str| {
        DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
    };
    if !ctx.authorize_cluster(AclOperation::Describe) {
        return fail(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    if !ctx.broker.authorizer_enabled() {
        return fail(
            ResponseError::SecurityDisabled,
            "No Authorizer is configured.",
        );
    }
    let filter = filter_of(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    );
    if let Err(m) = filter.validate() {
        return fail(ResponseError::InvalidRequest, &m);
    }
    let acls = ctx.broker.acls();
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in acls.iter().filter(|b| filter.matches(b)) {
        by_resource
            .entry((b.resource_type, b.name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(b.principal.clone()))
                    .with_host(str_bytes(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((kind, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(kind.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(ctx: &RequestContext, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let all_fail = |e: ResponseError, msg: &str| {
        DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(e.code())
                        .with_error_message(Some(str_bytes(msg)))
                })
                .collect(),
        )
    };
    if !ctx.authorize_cluster(AclOperation::Alter) {
        return all_fail(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    if !ctx.broker.authorizer_enabled() {
        return all_fail(
            ResponseError::SecurityDisabled,
            "No Authorizer is configured.",
        );
    }
    let filters: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f: &DeleteAclsFilter| {
            let filter = filter_of(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            );
            filter.validate().map(|()| filter)
        })
        .collect();
    let valid: Vec<AclFilter> = filters.iter().filter_map(|f| f.clone().ok()).collect();
    let mut deleted = match ctx.broker.delete_acls(&valid).await {
        Ok(d) => d.into_iter(),
        Err(e) => {
            return DeleteAclsResponse::default().with_filter_results(
                filters
                    .iter()
                    .map(|_| {
                        DeleteAclsFilterResult::default()
                            .with_error_code(e.code)
                            .with_error_message(Some(str_bytes(e.message.clone())))
                    })
                    .collect(),
            );
        }
    };
    let results = filters
        .into_iter()
        .map(|f| match f {
            Err(m) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(m))),
            Ok(_) => {
                let matched = deleted.next().unwrap_or_default();
                DeleteAclsFilterResult::default().with_matching_acls(
                    matched
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(str_bytes(b.name))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(str_bytes(b.principal))
                                .with_host(str_bytes(b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
