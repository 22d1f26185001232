//! ApiVersions: the advertised ranges, straight from the handler table, and
//! from v3 the features Sluice honours (KIP-584), which admin clients'
//! describeFeatures shows and clients read to pick protocols.

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// (feature, lowest supported, highest supported = finalized level).
/// metadata.version 7..27 (3.3-IV3 to 4.1-IV1) is what the APIs served here
/// match; kraft.version 0: the controller quorum is a static voter set;
/// group.version 1: KIP-848 consumer groups; transaction.version 2:
/// KIP-890 part 2 (the epoch bumped with every transaction, partitions
/// added by the brokers), as a new Kafka 4 cluster finalizes it; clients that
/// do not know it use version 1.
pub const FEATURES: &[(&str, i16, i16)] = &[
    ("metadata.version", 7, 27),
    ("kraft.version", 0, 0),
    ("group.version", 0, 1),
    ("transaction.version", 0, 2),
];

/// The finalized transaction.version.
pub fn transaction_version() -> i16 {
    FEATURES
        .iter()
        .find(|f| f.0 == "transaction.version")
        .map_or(0, |f| f.2)
}

/// librdkafka before 2.2.0 (Debian's kcat has 2.0.2) cannot skip tagged
/// fields in an ApiVersions answer: it gets none.
fn skips_tagged_fields(req: &ApiVersionsRequest) -> bool {
    if req.client_software_name.as_str() != "librdkafka" {
        return true;
    }
    let mut parts = req
        .client_software_version
        .as_str()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 2)
}

pub async fn handle(ctx: &RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        tracing::debug!(
            software = %req.client_software_name,
            software_version = %req.client_software_version,
            "client identified itself"
        );
    }
    let mut resp = ctx.broker.versions.api_versions_response(ctx.version).0;
    if ctx.version >= 3 && skips_tagged_fields(&req) {
        resp.supported_features = FEATURES
            .iter()
            .map(|&(name, min, max)| {
                SupportedFeatureKey::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
        // Finalized levels never change: one epoch. Level 0 means off and
        // is not listed, as Kafka does.
        resp.finalized_features_epoch = 1;
        resp.finalized_features = FEATURES
            .iter()
            .filter(|&&(_, _, level)| level > 0)
            .map(|&(name, _, level)| {
                FinalizedFeatureKey::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_min_version_level(level)
                    .with_max_version_level(level)
            })
            .collect();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(name: &'static str, version: &'static str) -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(name))
            .with_client_software_version(StrBytes::from_static_str(version))
    }

    #[test]
    fn old_librdkafka_gets_no_tagged_fields() {
        assert!(!skips_tagged_fields(&from("librdkafka", "2.0.2")));
        assert!(!skips_tagged_fields(&from("librdkafka", "1.9.0")));
        assert!(skips_tagged_fields(&from("librdkafka", "2.2.0")));
        assert!(skips_tagged_fields(&from("librdkafka", "2.15.0-RC1")));
        assert!(skips_tagged_fields(&from("apache-kafka-java", "4.3.1")));
    }
}
