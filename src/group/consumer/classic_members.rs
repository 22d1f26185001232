//! Members of a consumer group that still use the classic protocol (after an
//! online upgrade, or classic consumers joining a consumer group): the
//! coordinator answers their JoinGroup, SyncGroup, Heartbeat and LeaveGroup
//! on behalf of the consumer group, as Kafka does.
//!
//! - JoinGroup updates the member (subscription and owned partitions from its
//!   ConsumerProtocolSubscription), recomputes the target when the group epoch
//!   moved, reconciles the member and answers at once with generation = its
//!   member epoch; it is never the leader.
//! - Partitions the member must give up and no longer reports owned are
//!   released at once (eager members give everything up before they rejoin);
//!   partitions it still owns keep it at its epoch until it rejoins without
//!   them.
//! - SyncGroup hands out its assignment as a ConsumerProtocolAssignment.
//! - Heartbeat answers REBALANCE_IN_PROGRESS when the member must rejoin: the
//!   group epoch moved past its epoch, it has partitions to give up, or
//!   partitions it waits for were released.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{ClassicMember, ConsumerGroup, ConsumerMember, intersect, is_empty, minus};
use crate::group::assignor::Assignment;
use crate::group::classic::{JoinOutcome, JoinRequest, SyncOutcome, SyncRequest};
use crate::group::consumer_protocol::{self, PROTOCOL_TYPE};

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl ConsumerGroup {
    /// Whether a classic JoinGroup with these protocols may join: the
    /// consumer protocol type, and a protocol every classic member supports.
    fn supports_classic(&self, protocol_type: &str, protocols: &[(String, bytes::Bytes)]) -> bool {
        if protocol_type != PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        let classic: Vec<&ClassicMember> = self
            .members
            .values()
            .filter_map(|m| m.classic.as_ref())
            .collect();
        classic.is_empty()
            || protocols.iter().any(|(n, _)| {
                classic
                    .iter()
                    .all(|c| c.protocols.iter().any(|(p, _)| p == n))
            })
    }

    /// The member `instance` belongs to, when another id holds it.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance.is_some_and(|i| {
            self.members
                .values()
                .any(|m| m.instance_id.as_deref() == Some(i) && m.id != member_id)
        })
    }

    /// A JoinGroup from a classic member (the session timeout is checked by
    /// the caller, against the broker's bounds).
    pub fn classic_join(
        &mut self,
        req: JoinRequest,
        partitions: &BTreeMap<String, i32>,
        now: i64,
    ) -> JoinOutcome {
        let err = |e: ResponseError, id: &str| JoinOutcome::error(code(e), id);
        if !self.supports_classic(&req.protocol_type, &req.protocols) {
            return err(ResponseError::InconsistentGroupProtocol, &req.member_id);
        }
        let mut id = req.member_id.clone();
        if id.is_empty() {
            // A static member coming back takes its old entry over.
            let old = req.instance_id.as_deref().and_then(|i| {
                self.members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(i))
                    .map(|m| m.id.clone())
            });
            id = req.new_member_id.clone();
            match old {
                Some(old) => {
                    let mut m = self.members.remove(&old).expect("found");
                    let target = self.target.remove(&old).unwrap_or_default();
                    tracing::info!(group = %self.id, old = %old, new = %id, "static member rejoined under a new member id");
                    m.id = id.clone();
                    self.members.insert(id.clone(), m);
                    self.target.insert(id.clone(), target);
                    self.dirty = true;
                }
                None if req.require_known_member_id && req.instance_id.is_none() => {
                    return err(ResponseError::MemberIdRequired, &id);
                }
                None => {}
            }
        } else if self.fenced(&id, req.instance_id.as_deref()) {
            return err(ResponseError::FencedInstanceId, &id);
        }
        let Some((name, metadata)) = req.protocols.first().cloned() else {
            return err(ResponseError::InconsistentGroupProtocol, &id);
        };
        let sub = match consumer_protocol::decode_subscription(&metadata) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(group = %self.id, member = %id, error = %e, "JoinGroup with a malformed subscription");
                return err(ResponseError::InconsistentGroupProtocol, &id);
            }
        };
        let new = !self.members.contains_key(&id);
        let m = self
            .members
            .entry(id.clone())
            .or_insert_with(|| ConsumerMember::new(id.clone()));
        let classic = ClassicMember {
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols,
        };
        if m.classic.as_ref() != Some(&classic) {
            m.classic = Some(classic);
            self.dirty = true;
        }
        m.deadline = now + req.session_timeout_ms as i64;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        if req.instance_id.is_some() {
            m.instance_id = req.instance_id;
        }
        if sub.rack_id.is_some() {
            m.rack_id = sub.rack_id;
        }
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        if new || m.subscribed != sub.topics {
            m.subscribed = sub.topics;
            self.epoch += 1;
            self.dirty = true;
            tracing::info!(group = %self.id, member = %id, epoch = self.epoch, "classic member joined");
        }
        self.maybe_assign(partitions);
        // What it no longer owns is released, before and after it is moved on.
        self.release_unowned(&id, &sub.owned);
        self.reconcile(&id, now);
        if self.release_unowned(&id, &sub.owned) {
            self.reconcile(&id, now);
        }
        let m = &self.members[&id];
        JoinOutcome {
            error: 0,
            generation: m.epoch,
            protocol_type: Some(PROTOCOL_TYPE.to_owned()),
            protocol: Some(name),
            leader: String::new(),
            member_id: id,
            members: Vec::new(),
        }
    }

    /// Drops from the member's partitions being revoked those it does not own.
    fn release_unowned(&mut self, id: &str, owned: &Assignment) -> bool {
        let m = self.members.get_mut(id).expect("present");
        let still = intersect(&m.revoking, owned);
        if still == m.revoking {
            return false;
        }
        m.revoking = still;
        self.dirty = true;
        true
    }

    /// The classic member `member_id`, checked as Kafka does.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, ResponseError> {
        if self.fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        match self.members.get(member_id) {
            Some(m) if m.classic.is_some() => Ok(m),
            _ => Err(ResponseError::UnknownMemberId),
        }
    }

    pub fn classic_sync(&mut self, req: SyncRequest, now: i64) -> SyncOutcome {
        let m = match self.classic_member(&req.member_id, req.instance_id.as_deref()) {
            Ok(m) => m,
            Err(e) => return SyncOutcome::error(code(e)),
        };
        if req.generation != m.epoch {
            return SyncOutcome::error(code(ResponseError::IllegalGeneration));
        }
        let c = m.classic.as_ref().expect("a classic member");
        let first = c.protocols.first().map(|(n, _)| n.as_str());
        if req
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != PROTOCOL_TYPE)
            || req.protocol.as_deref().is_some_and(|p| Some(p) != first)
        {
            return SyncOutcome::error(code(ResponseError::InconsistentGroupProtocol));
        }
        // A member behind the group epoch rejoins first, unless it is still
        // giving partitions up (its next join moves it on).
        if self.epoch > m.epoch && is_empty(&m.revoking) {
            return SyncOutcome::error(code(ResponseError::RebalanceInProgress));
        }
        let version = c
            .protocols
            .first()
            .map_or(0, |(_, meta)| consumer_protocol::version(meta));
        let out = SyncOutcome {
            error: 0,
            protocol_type: Some(PROTOCOL_TYPE.to_owned()),
            protocol: first.map(str::to_owned),
            assignment: consumer_protocol::encode_assignment(&m.assigned, version),
        };
        let session = c.session_timeout_ms as i64;
        self.members
            .get_mut(&req.member_id)
            .expect("present")
            .deadline = now + session;
        out
    }

    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        let m = match self.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(e) => return code(e),
        };
        if generation != m.epoch {
            return code(ResponseError::IllegalGeneration);
        }
        let pending = minus(&self.target(member_id), &m.assigned);
        let released = !is_empty(&pending) && {
            let mut held = Assignment::new();
            for o in self.members.values().filter(|o| o.id != member_id) {
                super::union_into(&mut held, &o.assigned);
                super::union_into(&mut held, &o.revoking);
            }
            is_empty(&intersect(&pending, &held))
        };
        let rejoin = m.epoch < self.epoch || !is_empty(&m.revoking) || released;
        let session = m.classic.as_ref().map_or(0, |c| c.session_timeout_ms) as i64;
        self.members.get_mut(member_id).expect("present").deadline = now + session;
        if rejoin {
            code(ResponseError::RebalanceInProgress)
        } else {
            0
        }
    }

    /// LeaveGroup of classic members, given as (member id, instance id);
    /// one code each.
    pub fn classic_leave(&mut self, members: &[(String, Option<String>)]) -> Vec<i16> {
        members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance.as_deref() {
                    Some(i) => match self
                        .members
                        .values()
                        .find(|m| m.instance_id.as_deref() == Some(i))
                    {
                        None => return code(ResponseError::UnknownMemberId),
                        Some(m) if !member_id.is_empty() && m.id != *member_id => {
                            return code(ResponseError::FencedInstanceId);
                        }
                        Some(m) => m.id.clone(),
                    },
                    None => member_id.clone(),
                };
                if self.members.get(&id).is_none_or(|m| m.classic.is_none()) {
                    return code(ResponseError::UnknownMemberId);
                }
                self.remove_member(&id);
                tracing::info!(group = %self.id, member = %id, epoch = self.epoch, "classic member left");
                0
            })
            .collect()
    }
}
