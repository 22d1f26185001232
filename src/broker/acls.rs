//! The ACLs and the authorizer's decisions. The bindings live in the
//! metadata image: alone in `cluster-metadata.json` (with a copy in memory
//! for the checks, replaced on every change), in a cluster in the controller
//! quorum's image (`CreateAcls` / `DeleteAcls` records), so every broker
//! applies the same ACLs.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::{Broker, TopicError};
use crate::replication::metadata::MetadataRecord;
use crate::security::Session;
use crate::security::acl::{
    AclBinding, AclFilter, AclOperation, Authorizer, ResourceType, operations_bitfield,
};

/// The authorizer's settings and, alone, the ACLs in memory.
#[derive(Debug, Default)]
pub struct AclState {
    authorizer: Authorizer,
    local: RwLock<Arc<BTreeSet<AclBinding>>>,
}

impl AclState {
    pub fn new(authorizer: Authorizer, acls: BTreeSet<AclBinding>) -> Self {
        Self {
            authorizer,
            local: RwLock::new(Arc::new(acls)),
        }
    }
}

/// How long a change waits for the controller quorum.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

impl Broker {
    /// True when `authorizer.class.name` turned authorization on.
    pub fn authorizer_enabled(&self) -> bool {
        self.acl.authorizer.enabled
    }

    /// The ACLs as they stand.
    pub fn acls(&self) -> Arc<BTreeSet<AclBinding>> {
        if let Some(c) = &self.cluster {
            return c.with_image(|img| img.acls.clone());
        }
        self.acl
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// May `session` perform `op` on the resource `(kind, name)`? Always
    /// yes without an authorizer and for other brokers' connections.
    pub fn authorize(
        &self,
        session: &Session,
        op: AclOperation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        if !self.acl.authorizer.enabled || session.inter_broker {
            return true;
        }
        let acls = self.acls();
        self.acl.authorizer.authorize(
            acls.iter(),
            &session.principal,
            session.client_host,
            op,
            kind,
            name,
        )
    }

    /// May `session` perform `op` on some resource of type `kind`?
    pub fn authorize_any(&self, session: &Session, op: AclOperation, kind: ResourceType) -> bool {
        if !self.acl.authorizer.enabled || session.inter_broker {
            return true;
        }
        let acls = self.acls();
        self.acl.authorizer.authorize_any(
            acls.iter(),
            &session.principal,
            session.client_host,
            op,
            kind,
        )
    }

    /// KIP-430: the bitfield of the operations `session` may perform on the
    /// resource (every operation of its type without an authorizer).
    pub fn authorized_operations(&self, session: &Session, kind: ResourceType, name: &str) -> i32 {
        // Nothing is reported on a resource the principal may not describe.
        if !self.authorize(session, AclOperation::Describe, kind, name) {
            return 0;
        }
        operations_bitfield(
            kind.operations()
                .iter()
                .copied()
                .filter(|&op| self.authorize(session, op, kind, name)),
        )
    }

    /// Adds `bindings` (validated by the caller) durably, or in a cluster
    /// through the controller quorum, before the answer.
    pub async fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<(), TopicError> {
        if bindings.is_empty() {
            return Ok(());
        }
        if let Some(c) = &self.cluster {
            let record = MetadataRecord::CreateAcls {
                acls: bindings.clone(),
            };
            c.propose_until(&record, COMMIT_WAIT, |img| {
                bindings.iter().all(|b| img.acls.contains(b))
            })
            .await
            .map_err(|_| timed_out())?;
        } else {
            self.update_local_acls(|set| {
                for b in &bindings {
                    set.insert(b.clone());
                }
            })
            .await?;
        }
        for b in &bindings {
            tracing::info!(acl = ?b, "ACL created");
        }
        Ok(())
    }

    /// Removes the bindings each filter matches; returns them, filter by
    /// filter.
    pub async fn delete_acls(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, TopicError> {
        let current = self.acls();
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| current.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let gone: BTreeSet<AclBinding> = matched.iter().flatten().cloned().collect();
        if gone.is_empty() {
            return Ok(matched);
        }
        if let Some(c) = &self.cluster {
            let record = MetadataRecord::DeleteAcls {
                acls: gone.iter().cloned().collect(),
            };
            c.propose_until(&record, COMMIT_WAIT, |img| {
                gone.iter().all(|b| !img.acls.contains(b))
            })
            .await
            .map_err(|_| timed_out())?;
        } else {
            self.update_local_acls(|set| {
                for b in &gone {
                    set.remove(b);
                }
            })
            .await?;
        }
        for b in &gone {
            tracing::info!(acl = ?b, "ACL deleted");
        }
        Ok(matched)
    }

    /// Alone: changes the ACLs in the metadata file, then the copy the
    /// checks read.
    async fn update_local_acls(
        &self,
        change: impl FnOnce(&mut BTreeSet<AclBinding>),
    ) -> Result<(), TopicError> {
        let _guard = self.admin.lock().await;
        let acls = self
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(|img| {
                change(&mut img.acls);
                img.acls.clone()
            })
            .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
        *self.acl.local.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(acls);
        Ok(())
    }
}

fn timed_out() -> TopicError {
    TopicError::new(
        ResponseError::RequestTimedOut,
        "the controller quorum did not commit the ACL change in time",
    )
}
