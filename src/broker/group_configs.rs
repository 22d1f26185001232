//! Group configs (ConfigResource type GROUP): a group's overrides, stored
//! durably in the metadata image next to the topics' (the same file, written
//! the same atomic way), so they survive restarts. In a cluster they live in
//! the controller quorum's image (an `AlterGroupConfigs` record), as topic
//! configs do, so every broker, and so every group coordinator, sees them.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::{Broker, TopicError};
use crate::replication::metadata::MetadataRecord;
use crate::topic_config::group;

impl Broker {
    /// The group config overrides of `group` (empty when it has none; a
    /// group need not exist to have configs, as in Kafka).
    pub fn group_config_overrides(&self, group: &str) -> BTreeMap<String, String> {
        if let Some(c) = &self.cluster {
            return c.with_image(|img| img.group_configs.get(group).cloned().unwrap_or_default());
        }
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
        if let Some(c) = &self.cluster {
            return c.with_image(|img| img.group_configs.clone());
        }
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
        if let Some(c) = &self.cluster {
            // The controller quorum's image is their home in a cluster, as
            // for topic configs: every broker applies the same record.
            let record = MetadataRecord::AlterGroupConfigs {
                group: group_id.to_owned(),
                configs: overrides.clone(),
            };
            c.propose_until(&record, Duration::from_secs(30), |img| {
                img.group_configs.get(group_id).cloned().unwrap_or_default() == overrides
            })
            .await
            .map_err(|_| {
                TopicError::new(
                    ResponseError::RequestTimedOut,
                    "the controller quorum did not commit the group config in time",
                )
            })?;
            tracing::info!(group = %group_id, "group config changed");
            return Ok(());
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
