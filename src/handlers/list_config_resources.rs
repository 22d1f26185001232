//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the
//! resources whose configs DescribeConfigs can show, by type: topics,
//! brokers, and groups (those that exist and those with configs, which may
//! not exist yet). Sluice has no client-metrics resources.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::describe_configs::{BROKER, GROUP, TOPIC};
use super::{RequestContext, str_bytes};
use crate::security::acl::AclOperation;

const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;

pub async fn handle(
    ctx: &RequestContext,
    req: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    let broker = &ctx.broker;
    // v0 lists client-metrics resources only; an empty list of types asks
    // for every type.
    let types: Vec<i8> = if ctx.version == 0 {
        vec![CLIENT_METRICS]
    } else if req.resource_types.is_empty() {
        vec![TOPIC, BROKER, CLIENT_METRICS, GROUP]
    } else {
        req.resource_types.clone()
    };
    if let Some(t) = types
        .iter()
        .find(|t| ![TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP].contains(t))
    {
        tracing::debug!(
            resource_type = t,
            "ListConfigResources for an unknown resource type"
        );
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    if !ctx.authorize_cluster(AclOperation::DescribeConfigs) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut out = Vec::new();
    let mut add = |name: String, kind: i8| {
        let mut r = ConfigResource::default().with_resource_name(str_bytes(name));
        if ctx.version >= 1 {
            r.resource_type = kind;
        }
        out.push(r);
    };
    for &t in &types {
        match t {
            TOPIC => {
                let mut names: Vec<String> =
                    broker.topics().iter().map(|t| t.name.clone()).collect();
                names.sort();
                names.into_iter().for_each(|n| add(n, TOPIC));
            }
            BROKER => broker
                .brokers()
                .into_iter()
                .for_each(|(id, _, _)| add(id.to_string(), BROKER)),
            GROUP => {
                let mut groups: BTreeSet<String> = broker.all_group_configs().into_keys().collect();
                groups.extend(broker.groups.list().into_iter().map(|g| g.id));
                groups.into_iter().for_each(|g| add(g, GROUP));
            }
            // No broker loggers or client-metrics subscriptions to list.
            _ => {}
        }
    }
    ListConfigResourcesResponse::default().with_config_resources(out)
}
