//! Users' SCRAM credentials: where they live and how they change.
//!
//! Alone, the broker keeps them in its metadata image
//! (`cluster-metadata.json`, written atomically like topics and group
//! configs). In a cluster they live in the controller quorum's image (an
//! `AlterScramCredentials` record), so every broker authenticates every
//! user alike; the local file then only carries the credentials `sluice
//! scram add` put there before a start, which the broker proposes with
//! `if_absent` once the quorum answers and then drops from the file. So a
//! cluster's first users can be added offline on each node before the
//! first start (the first proposal to commit wins; the others change
//! nothing), and a later `scram add` adds users but never replaces or
//! revives a credential that AlterUserScramCredentials set or removed.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::{Broker, TopicError};
use crate::replication::metadata::{MetadataRecord, ScramChange};
use crate::security::sasl::scram::{CredentialMap, ScramCredential, ScramMechanism};

impl Broker {
    /// Every user's credentials.
    pub fn scram_credentials(&self) -> CredentialMap {
        if let Some(c) = &self.cluster {
            return c.with_image(|img| img.scram_credentials.clone());
        }
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .scram_credentials
            .clone()
    }

    /// `user`'s credential for `mechanism`.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.scram_credentials_of(user)
            .into_iter()
            .find(|(m, _)| *m == mechanism)
            .map(|(_, c)| c)
    }

    /// All of `user`'s credentials.
    pub fn scram_credentials_of(&self, user: &str) -> Vec<(ScramMechanism, ScramCredential)> {
        let of = |map: &CredentialMap| {
            map.get(user)
                .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
                .unwrap_or_default()
        };
        if let Some(c) = &self.cluster {
            return c.with_image(|img| of(&img.scram_credentials));
        }
        of(&self
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .scram_credentials)
    }

    /// Applies `changes` at once, durably (alone) or through the controller
    /// quorum (in a cluster), before returning.
    pub async fn alter_scram_credentials(
        &self,
        changes: Vec<ScramChange>,
    ) -> Result<(), TopicError> {
        if changes.is_empty() {
            return Ok(());
        }
        if let Some(c) = &self.cluster {
            let record = MetadataRecord::AlterScramCredentials {
                changes: changes.clone(),
                if_absent: false,
            };
            c.propose_until(&record, Duration::from_secs(30), |img| {
                changes.iter().all(|ch| {
                    img.scram_credentials
                        .get(&ch.user)
                        .and_then(|m| m.get(&ch.mechanism))
                        == ch.credential.as_ref()
                })
            })
            .await
            .map_err(|_| {
                TopicError::new(
                    ResponseError::RequestTimedOut,
                    "the controller quorum did not commit the credentials in time",
                )
            })?;
        } else {
            let _guard = self.admin.lock().await;
            self.metadata
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(|img| apply_changes(&mut img.scram_credentials, &changes))
                .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        }
        for ch in &changes {
            let what = if ch.credential.is_some() {
                "set"
            } else {
                "removed"
            };
            tracing::info!(user = %ch.user, mechanism = %ch.mechanism, "SCRAM credential {what}");
        }
        Ok(())
    }

    /// In a cluster: proposes the credentials `sluice scram add` left in the
    /// local metadata file (each only where the user has none for that
    /// mechanism), then removes them from the file. Retries until the
    /// quorum answers.
    pub async fn bootstrap_scram_credentials(self: Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let local = self
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .scram_credentials
            .clone();
        if local.is_empty() {
            return;
        }
        let changes: Vec<ScramChange> = local
            .iter()
            .flat_map(|(user, mechs)| {
                mechs.iter().map(|(m, c)| ScramChange {
                    user: user.clone(),
                    mechanism: *m,
                    credential: Some(c.clone()),
                })
            })
            .collect();
        let record = MetadataRecord::AlterScramCredentials {
            changes: changes.clone(),
            if_absent: true,
        };
        loop {
            let done = cluster
                .propose_until(&record, Duration::from_secs(3600), |img| {
                    changes.iter().all(|ch| {
                        img.scram_credentials
                            .get(&ch.user)
                            .is_some_and(|m| m.contains_key(&ch.mechanism))
                    })
                })
                .await;
            if done.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cleared = self
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(|img| img.scram_credentials.clear());
        match cleared {
            Ok(()) => tracing::info!(
                credentials = changes.len(),
                "bootstrap SCRAM credentials handed to the controller quorum"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot clear the bootstrap SCRAM credentials"),
        }
    }
}

/// Applies credential changes to a credential map.
pub fn apply_changes(map: &mut CredentialMap, changes: &[ScramChange]) {
    for ch in changes {
        match &ch.credential {
            Some(c) => {
                map.entry(ch.user.clone())
                    .or_default()
                    .insert(ch.mechanism, c.clone());
            }
            None => {
                if let Some(m) = map.get_mut(&ch.user) {
                    m.remove(&ch.mechanism);
                    if m.is_empty() {
                        map.remove(&ch.user);
                    }
                }
            }
        }
    }
}
