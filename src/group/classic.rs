//! The classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) as a pure state machine: every call takes `now` (milliseconds),
//! nothing sleeps, nothing does I/O.
//!
//! States and transitions follow Kafka's group coordinator:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                  ▲        │ (no members left)                 │ leader's SyncGroup
//!   └──────────────────┼────────┘                                   ▼
//!                      └──── join of a new member, leave, expiry ── Stable
//! ```
//!
//! A request that has to wait (a JoinGroup until the rebalance completes, a
//! follower's SyncGroup until the leader's) gets [`Reply::Parked`]; its answer
//! comes later as an [`Effect`], which the caller routes to the waiting request.
//! [`Effect::Persist`] asks the caller to write the group's metadata to
//! `__consumer_offsets` before it delivers the effects that follow it.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

pub use super::types::{
    Effect, GroupConfig, GroupSnapshot, GroupState, JoinOutcome, JoinRequest, JoinedMember, Member,
    MemberSnapshot, Reply, SyncOutcome, SyncRequest,
};

const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order: the first member becomes leader when there is none.
    members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined → expiry.
    pending: HashMap<String, i64>,
    join_deadline: i64,
    /// In the group.initial.rebalance.delay.ms phase of a new group's first join.
    initial_delay: bool,
    initial_delay_limit: i64,
    sync_deadline: i64,
    state_since: i64,
    effects: Vec<Effect>,
}

impl Group {
    pub fn new(id: impl Into<String>, config: GroupConfig, now: i64) -> Self {
        Self {
            id: id.into(),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashMap::new(),
            join_deadline: 0,
            initial_delay: false,
            initial_delay_limit: 0,
            sync_deadline: 0,
            state_since: now,
            effects: Vec::new(),
        }
    }

    /// Rebuilds a group from its stored metadata. Members keep their
    /// assignment and have one session timeout from `now` to show up.
    pub fn restore(id: &str, config: GroupConfig, snap: GroupSnapshot, now: i64) -> Self {
        let mut g = Self::new(id, config, now);
        g.generation = snap.generation;
        g.protocol_type = (!snap.protocol_type.is_empty()).then_some(snap.protocol_type);
        g.protocol = snap.protocol.clone();
        g.leader = snap.leader;
        g.members = snap
            .members
            .into_iter()
            .map(|m| Member {
                protocols: vec![(snap.protocol.clone().unwrap_or_default(), m.subscription)],
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                assignment: m.assignment,
                awaiting_join: false,
                awaiting_sync: false,
                deadline: now + m.session_timeout_ms as i64,
            })
            .collect();
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if snap.state_timestamp > 0 {
            g.state_since = snap.state_timestamp;
        }
        // Members without a leader: stored in the middle of a rebalance (an
        // online downgrade, see [`Group::downgraded`]); it starts over.
        if g.leader.is_none() && !g.members.is_empty() {
            g.prepare_rebalance(now);
        }
        g
    }

    /// A consumer group gone back to the classic protocol (KIP-848 online
    /// downgrade): generation = the group epoch, the members with their
    /// protocols and assignments, the first one leader, and a rebalance
    /// started at once so that every member rejoins. Its snapshot has no
    /// leader, so that a restart before the rebalance ends starts it again.
    pub fn downgraded(
        id: &str,
        config: GroupConfig,
        generation: i32,
        members: Vec<Member>,
        now: i64,
    ) -> Self {
        let mut g = Self::new(id, config, now);
        g.generation = generation;
        g.protocol_type = Some(super::consumer_protocol::PROTOCOL_TYPE.to_owned());
        g.leader = members.first().map(|m| m.id.clone());
        g.members = members;
        g.protocol = g.select_protocol();
        g.state = GroupState::Stable;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
        } else {
            g.prepare_rebalance(now);
        }
        g
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol.clone().unwrap_or_default();
        // Stored as Stable or Empty, except after a downgrade (see
        // [`Group::restore`]): then without the leader.
        let rebalancing = self.state == GroupState::PreparingRebalance;
        GroupSnapshot {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone().filter(|_| !rebalancing),
            state_timestamp: self.state_since,
            members: self
                .members
                .iter()
                .map(|m| MemberSnapshot {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// When the group entered its current state (ms).
    pub fn state_since(&self) -> i64 {
        self.state_since
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Empty, with no member id handed out and not yet used.
    pub fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.pending.is_empty()
    }

    /// Marks the group deleted; it answers COORDINATOR_NOT_AVAILABLE from now on.
    pub fn mark_dead(&mut self, now: i64) {
        self.transition(GroupState::Dead, now);
    }

    /// Effects produced since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn by_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// FENCED_INSTANCE_ID when `instance` belongs to another member id.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.by_instance(i))
            .is_some_and(|m| m.id != member_id)
    }

    fn transition(&mut self, to: GroupState, now: i64) {
        tracing::debug!(group = %self.id, from = self.state.name(), to = to.name(), generation = self.generation, "group state");
        self.state = to;
        self.state_since = now;
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports, in the first member's order.
    fn candidates(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidates();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Each member votes for its most preferred common protocol; most votes win
    /// (ties go to the earlier one in the first member's order).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes = vec![0usize; candidates.len()];
        for m in &self.members {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let i = votes.iter().position(|&v| v == best)?;
        candidates.get(i).cloned()
    }

    // ---------------------------------------------------------------- JoinGroup

    pub fn join(&mut self, req: JoinRequest, now: i64) -> Reply<JoinOutcome> {
        let err = |e: ResponseError| Reply::Now(JoinOutcome::error(code(e), &req.member_id));
        if self.state == GroupState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return err(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty()
            || req.protocols.is_empty()
            || (self.state != GroupState::Empty
                && !self.supports(&req.protocol_type, &req.protocols))
        {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone()
                && let Some(old) = self.by_instance(&instance).map(|m| m.id.clone())
            {
                return self.replace_static_member(&old, req, now);
            }
            if req.require_known_member_id && req.instance_id.is_none() {
                let id = req.new_member_id.clone();
                self.pending
                    .insert(id.clone(), now + req.session_timeout_ms as i64);
                return Reply::Now(JoinOutcome::error(
                    code(ResponseError::MemberIdRequired),
                    &id,
                ));
            }
            let id = req.new_member_id.clone();
            return self.add_member(id, req, now);
        }
        if self.fenced(&req.member_id, req.instance_id.as_deref()) {
            return err(ResponseError::FencedInstanceId);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member(id, req, now);
        }
        if self.member(&req.member_id).is_none() {
            return err(ResponseError::UnknownMemberId);
        }
        self.rejoin(req, now)
    }

    fn add_member(&mut self, id: String, req: JoinRequest, now: i64) -> Reply<JoinOutcome> {
        if self.state == GroupState::Empty || self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.push(Member {
            id: id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            deadline: now + req.session_timeout_ms as i64,
        });
        match self.state {
            GroupState::PreparingRebalance if self.initial_delay => {
                // Each newcomer during the initial delay waits a little longer for
                // the others, up to the longest rebalance timeout.
                self.join_deadline =
                    (now + self.config.initial_rebalance_delay_ms).min(self.initial_delay_limit);
            }
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(now),
        }
        self.maybe_complete_join(now);
        Reply::Parked { member_id: id }
    }

    fn rejoin(&mut self, req: JoinRequest, now: i64) -> Reply<JoinOutcome> {
        let state = self.state;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        let m = self.member_mut(&req.member_id).expect("checked by caller");
        let unchanged = m.protocols == req.protocols;
        m.deadline = now + req.session_timeout_ms as i64;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        match state {
            GroupState::Stable | GroupState::CompletingRebalance
                if unchanged && !(state == GroupState::Stable && is_leader) =>
            {
                // Nothing changed: the member gets the current generation again.
                Reply::Now(self.join_outcome_for(&req.member_id, is_leader))
            }
            GroupState::PreparingRebalance => {
                self.member_mut(&req.member_id)
                    .expect("present")
                    .awaiting_join = true;
                self.maybe_complete_join(now);
                Reply::Parked {
                    member_id: req.member_id,
                }
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.member_mut(&req.member_id)
                    .expect("present")
                    .awaiting_join = true;
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
                Reply::Parked {
                    member_id: req.member_id,
                }
            }
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinOutcome::error(
                code(ResponseError::UnknownMemberId),
                &req.member_id,
            )),
        }
    }

    /// A static member came back with no member id: it takes over its old
    /// entry under a new id (the old id is fenced), and a stable group with an
    /// unchanged protocol does not rebalance.
    fn replace_static_member(
        &mut self,
        old: &str,
        req: JoinRequest,
        now: i64,
    ) -> Reply<JoinOutcome> {
        let new_id = req.new_member_id.clone();
        let fenced_join = JoinOutcome::error(code(ResponseError::FencedInstanceId), old);
        let state = self.state;
        let m = self.member_mut(old).expect("found by instance id");
        if m.awaiting_join {
            self.effects.push(Effect::Join {
                member_id: old.to_owned(),
                outcome: fenced_join,
            });
        }
        let m = self.member_mut(old).expect("found by instance id");
        if m.awaiting_sync {
            m.awaiting_sync = false;
            self.effects.push(Effect::Sync {
                member_id: old.to_owned(),
                outcome: SyncOutcome::error(code(ResponseError::FencedInstanceId)),
            });
        }
        let selected = self.protocol.clone();
        let m = self.member_mut(old).expect("found by instance id");
        let m_protocols_before = m.protocols.clone();
        m.id = new_id.clone();
        m.awaiting_join = false;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.protocols = req.protocols;
        m.deadline = now + req.session_timeout_ms as i64;
        let unchanged = m_protocols_before == m.protocols;
        let leader_before = self.leader.clone();
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(group = %self.id, old = %old, new = %new_id, "static member rejoined under a new member id");
        match state {
            GroupState::Stable if unchanged && selected == self.select_protocol() => {
                self.effects.push(Effect::Persist);
                // Answered with the leader id from before the swap: a returning
                // leader then does not see itself as leader and computes no
                // assignment a stable group would not hand out anyway.
                let mut out = self.join_outcome_for(&new_id, false);
                out.leader = leader_before.unwrap_or_default();
                Reply::Now(out)
            }
            GroupState::PreparingRebalance => {
                self.member_mut(&new_id).expect("present").awaiting_join = true;
                self.maybe_complete_join(now);
                Reply::Parked { member_id: new_id }
            }
            _ => {
                self.member_mut(&new_id).expect("present").awaiting_join = true;
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
                Reply::Parked { member_id: new_id }
            }
        }
    }

    fn join_outcome_for(&self, member_id: &str, with_members: bool) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.members
                    .iter()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn prepare_rebalance(&mut self, now: i64) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    self.effects.push(Effect::Sync {
                        member_id: m.id.clone(),
                        outcome: SyncOutcome::error(code(ResponseError::RebalanceInProgress)),
                    });
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, now);
        if was_empty && self.config.initial_rebalance_delay_ms > 0 {
            self.initial_delay = true;
            self.join_deadline = now + self.config.initial_rebalance_delay_ms;
            self.initial_delay_limit = now + self.max_rebalance_timeout();
        } else {
            self.initial_delay = false;
            self.join_deadline = now + self.max_rebalance_timeout();
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join)
    }

    fn maybe_complete_join(&mut self, now: i64) {
        if self.state == GroupState::PreparingRebalance && !self.initial_delay && self.all_joined()
        {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: i64) {
        let (joined, gone): (Vec<Member>, Vec<Member>) = std::mem::take(&mut self.members)
            .into_iter()
            .partition(|m| m.awaiting_join);
        for m in &gone {
            tracing::info!(group = %self.id, member = %m.id, "member did not rejoin in time; removed");
        }
        self.members = joined;
        self.initial_delay = false;
        self.generation += 1;
        if self
            .leader
            .as_deref()
            .is_some_and(|l| self.member(l).is_none())
        {
            self.leader = None;
        }
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now);
            self.effects.push(Effect::Persist);
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.is_none() {
            self.leader = Some(self.members[0].id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now);
        self.sync_deadline = now + self.max_rebalance_timeout();
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let outcome = self.join_outcome_for(&id, id == leader);
            let m = self.member_mut(&id).expect("present");
            m.awaiting_join = false;
            m.deadline = now + m.session_timeout_ms as i64;
            self.effects.push(Effect::Join {
                member_id: id,
                outcome,
            });
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol, "rebalance: join complete");
    }

    // ---------------------------------------------------------------- SyncGroup

    pub fn sync(&mut self, req: SyncRequest, now: i64) -> Reply<SyncOutcome> {
        let err = |e: ResponseError| Reply::Now(SyncOutcome::error(code(e)));
        let SyncRequest {
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol,
            assignments,
        } = req;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let (protocol_type, protocol) = (protocol_type.as_deref(), protocol.as_deref());
        if self.state == GroupState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance_id) {
            return err(ResponseError::FencedInstanceId);
        }
        if self.member(member_id).is_none() {
            return err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return err(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return err(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => err(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let m = self.member_mut(member_id).expect("present");
                m.deadline = now + m.session_timeout_ms as i64;
                let assignment = m.assignment.clone();
                Reply::Now(SyncOutcome {
                    error: NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment,
                })
            }
            GroupState::CompletingRebalance => {
                let m = self.member_mut(member_id).expect("present");
                m.awaiting_sync = true;
                m.deadline = now + m.session_timeout_ms as i64;
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in &mut self.members {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now);
                    self.effects.push(Effect::Persist);
                    for m in &mut self.members {
                        if m.awaiting_sync {
                            m.awaiting_sync = false;
                            self.effects.push(Effect::Sync {
                                member_id: m.id.clone(),
                                outcome: SyncOutcome {
                                    error: NONE,
                                    protocol_type: self.protocol_type.clone(),
                                    protocol: self.protocol.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            });
                        }
                    }
                    tracing::info!(group = %self.id, generation = self.generation, "rebalance complete: group is stable");
                }
                Reply::Parked {
                    member_id: member_id.to_owned(),
                }
            }
        }
    }

    // ---------------------------------------------------------------- Heartbeat

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        match self.state {
            GroupState::Dead => return code(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return code(ResponseError::UnknownMemberId),
            _ => {}
        }
        if self.fenced(member_id, instance_id) {
            return code(ResponseError::FencedInstanceId);
        }
        let current = self.generation;
        let state = self.state;
        let Some(m) = self.member_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return code(ResponseError::IllegalGeneration);
        }
        m.deadline = now + m.session_timeout_ms as i64;
        if state == GroupState::PreparingRebalance {
            code(ResponseError::RebalanceInProgress)
        } else {
            NONE
        }
    }

    // --------------------------------------------------------------- LeaveGroup

    /// Removes members given as (member id, group instance id); one code each.
    pub fn leave(&mut self, members: &[(String, Option<String>)], now: i64) -> Vec<i16> {
        if self.state == GroupState::Dead {
            return vec![code(ResponseError::CoordinatorNotAvailable); members.len()];
        }
        let mut removed = false;
        let codes = members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance.as_deref() {
                    Some(i) => match self.by_instance(i) {
                        None => return code(ResponseError::UnknownMemberId),
                        Some(m) if !member_id.is_empty() && m.id != *member_id => {
                            return code(ResponseError::FencedInstanceId);
                        }
                        Some(m) => m.id.clone(),
                    },
                    None => {
                        if self.pending.remove(member_id).is_some() {
                            return NONE;
                        }
                        if self.member(member_id).is_none() {
                            return code(ResponseError::UnknownMemberId);
                        }
                        member_id.clone()
                    }
                };
                tracing::info!(group = %self.id, member = %id, "member left the group");
                self.remove_member(&id);
                removed = true;
                NONE
            })
            .collect();
        if removed {
            self.after_removal(now);
        }
        codes
    }

    fn remove_member(&mut self, id: &str) {
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(i);
        if m.awaiting_join {
            self.effects.push(Effect::Join {
                member_id: m.id.clone(),
                outcome: JoinOutcome::error(code(ResponseError::UnknownMemberId), &m.id),
            });
        }
        if m.awaiting_sync {
            self.effects.push(Effect::Sync {
                member_id: m.id.clone(),
                outcome: SyncOutcome::error(code(ResponseError::UnknownMemberId)),
            });
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn after_removal(&mut self, now: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ------------------------------------------------------------- OffsetCommit

    /// Whether a commit from this member at this generation is accepted
    /// (Kafka's rules; a generation below 0 on an empty group is a standalone
    /// consumer or an admin tool).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.fenced(member_id, instance_id) {
            return Err(code(ResponseError::FencedInstanceId));
        }
        // Kafka's order: the member and its generation first, then the
        // state (a member with the current generation that commits before
        // its SyncGroup is told to wait).
        let current = self.generation;
        let completing = self.state == GroupState::CompletingRebalance;
        let Some(m) = self.member_mut(member_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        if generation != current {
            return Err(code(ResponseError::IllegalGeneration));
        }
        if completing {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        m.deadline = now + m.session_timeout_ms as i64;
        Ok(())
    }

    // ------------------------------------------------------------------- timers

    /// Expires sessions and ends rebalance phases whose time is up.
    pub fn tick(&mut self, now: i64) {
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired_pending {
            self.pending.remove(id);
        }
        let keep_alive = |m: &Member, state: GroupState| {
            (state == GroupState::PreparingRebalance && m.awaiting_join) || m.awaiting_sync
        };
        let state = self.state;
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.deadline <= now && !keep_alive(m, state))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired; removed");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(now);
        } else if !expired_pending.is_empty() {
            self.maybe_complete_join(now);
        }
        match self.state {
            GroupState::PreparingRebalance if now >= self.join_deadline => self.complete_join(now),
            GroupState::CompletingRebalance if now >= self.sync_deadline => {
                // The leader (or some member) never sent SyncGroup: drop the
                // members that did not and start over.
                let silent: Vec<String> = self
                    .members
                    .iter()
                    .filter(|m| !m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in &silent {
                    tracing::info!(group = %self.id, member = %id, "member did not sync in time; removed");
                    self.remove_member(id);
                }
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
