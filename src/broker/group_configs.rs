//! Group configs (ConfigResource type GROUP): a group's overrides, stored
//! durably in the metadata image next to the topics' (the same file, written
//! the same atomic way), so they survive restarts.
//!
//! In a cluster the controller quorum's image would be their home, as it is
//! for topic configs; it has no record for them yet, so a cluster refuses to
//! change them (INVALID_REQUEST, saying why) and describes the defaults.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{Broker, TopicError};
use crate::topic_config::group;

impl Broker {
    /// The group config overrides of `group` (empty when it has none; a
    /// group need not exist to have configs, as in Kafka).
    pub fn group_config_overrides(&self, group: &str) -> BTreeMap<String, String> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .group_configs
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Every group's config overrides.
    pub fn all_group_configs(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .group_configs
            .clone()
    }

    /// The KIP-848 settings `group` should run with: its overrides of
    /// consumer.session.timeout.ms and consumer.heartbeat.interval.ms over
    /// the broker's defaults; the coordinator asks at every heartbeat.
    pub fn consumer_group_config(
        &self,
        group: &str,
    ) -> crate::group::consumer::ConsumerGroupConfig {
        let (session_timeout_ms, heartbeat_interval_ms) =
            group::consumer_settings(&self.config, &self.group_config_overrides(group));
        crate::group::consumer::ConsumerGroupConfig {
            session_timeout_ms,
            heartbeat_interval_ms,
        }
    }

    /// Replaces `group`'s config overrides (AlterConfigs and
    /// IncrementalAlterConfigs): validated as Kafka does (INVALID_CONFIG
    /// naming the problem), then stored durably before the answer.
    pub async fn alter_group_config(
        &self,
        group_id: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        if group_id.is_empty() {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                "Default group resources are not allowed.",
            ));
        }
        group::validate(&self.config, &overrides)
            .map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
        if validate_only {
            return Ok(());
        }
        if self.cluster.is_some() {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                "group configs cannot be changed in a cluster yet: the controller quorum \
                 has no record for them",
            ));
        }
        let _guard = self.admin.lock().await;
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(|img| {
                if overrides.is_empty() {
                    img.group_configs.remove(group_id);
                } else {
                    img.group_configs
                        .insert(group_id.to_owned(), overrides.clone());
                }
            })
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        tracing::info!(group = %group_id, "group config changed");
        Ok(())
    }
}
