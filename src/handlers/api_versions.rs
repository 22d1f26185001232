//! ApiVersions: the advertised ranges, straight from the handler table.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        tracing::debug!(
            software = %req.client_software_name,
            software_version = %req.client_software_version,
            "client identified itself"
        );
    }
    ctx.broker.versions.api_versions_response(ctx.version).0
}
