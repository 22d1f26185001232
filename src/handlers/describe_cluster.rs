//! DescribeCluster: the brokers (every registered one in a cluster), the
//! cluster id and the controller.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{RequestContext, str_bytes};
use crate::security::acl::{CLUSTER_NAME, ResourceType};

/// Endpoint types of DescribeCluster v1+.
const BROKERS: i8 = 1;

pub async fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = &ctx.broker;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.controller_id()));
    if ctx.version >= 1 {
        resp.endpoint_type = BROKERS;
        if req.endpoint_type != BROKERS {
            return resp
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes("only broker endpoints are served")));
        }
    }
    // KIP-430, when asked.
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations =
            ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME);
    }
    let mut racks = broker.broker_racks();
    let brokers = broker
        .brokers_on(&ctx.session.listener)
        .into_iter()
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_rack(racks.remove(&id).map(str_bytes))
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
        })
        .collect();
    resp.with_brokers(brokers)
}
