//! The advertised API versions.
//!
//! The broker builds a [`VersionTable`] from its handler table: an API appears here
//! only when a handler serves it, and only with the versions that handler honours
//! and that the project's tests exercise.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// One advertised API with its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// Advertised versions, sorted by API key.
#[derive(Debug, Clone, Default)]
pub struct VersionTable {
    ranges: Vec<ApiRange>,
}

impl VersionTable {
    pub fn new(mut ranges: Vec<ApiRange>) -> Self {
        ranges.sort_by_key(|r| r.key as i16);
        Self { ranges }
    }

    pub fn get(&self, key: ApiKey) -> Option<ApiRange> {
        self.ranges.iter().copied().find(|r| r.key == key)
    }

    pub fn supports(&self, key: ApiKey, version: i16) -> bool {
        self.get(key)
            .is_some_and(|r| r.min <= version && version <= r.max)
    }

    pub fn ranges(&self) -> &[ApiRange] {
        &self.ranges
    }

    /// The ApiVersions answer for a request of `request_version`.
    ///
    /// Returns the response and the version to encode it with: a version the
    /// broker does not know gets UNSUPPORTED_VERSION in a v0 body that still lists
    /// every range, so the client can retry with the broker's maximum.
    pub fn api_versions_response(&self, request_version: i16) -> (ApiVersionsResponse, i16) {
        let api_keys = self
            .ranges
            .iter()
            .map(|r| {
                ApiVersion::default()
                    .with_api_key(r.key as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
            .collect();
        let mut response = ApiVersionsResponse::default().with_api_keys(api_keys);
        if self.supports(ApiKey::ApiVersions, request_version) {
            (response, request_version)
        } else {
            response.error_code = UNSUPPORTED_VERSION;
            (response, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> VersionTable {
        VersionTable::new(vec![
            ApiRange {
                key: ApiKey::Metadata,
                min: 0,
                max: 12,
            },
            ApiRange {
                key: ApiKey::ApiVersions,
                min: 0,
                max: 4,
            },
        ])
    }

    #[test]
    fn lists_ranges_sorted_by_key() {
        let (resp, v) = table().api_versions_response(3);
        assert_eq!(v, 3);
        assert_eq!(resp.error_code, 0);
        let keys: Vec<i16> = resp.api_keys.iter().map(|k| k.api_key).collect();
        assert_eq!(keys, vec![3, 18]);
    }

    #[test]
    fn unknown_version_gets_error_35_in_a_v0_body() {
        let (resp, v) = table().api_versions_response(9);
        assert_eq!(v, 0);
        assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
        assert_eq!(resp.api_keys.len(), 2);
    }

    #[test]
    fn supports_checks_both_bounds() {
        let t = table();
        assert!(t.supports(ApiKey::Metadata, 0));
        assert!(t.supports(ApiKey::Metadata, 12));
        assert!(!t.supports(ApiKey::Metadata, 13));
        assert!(!t.supports(ApiKey::Produce, 3));
    }
}
