//! KIP-848 consumer groups (`group.protocol=consumer`) as a pure state machine:
//! the broker computes the assignment and hands it out through heartbeats.
//!
//! - Any change of membership, subscription or partition count bumps the
//!   *group epoch*; the *target assignment* is recomputed by the group's
//!   server-side assignor for that epoch.
//! - Each member converges on its target on its own heartbeats: partitions it
//!   must give up are removed from its assignment first (it keeps its epoch
//!   until it reports them released), then it gets the target epoch, and
//!   partitions still held by another member are added once that member has
//!   released them. No partition is ever owned by two members at once.
//! - A member that stops heartbeating for `group.consumer.session.timeout.ms`,
//!   or does not release partitions within its rebalance timeout, is removed.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

use super::assignor::{self, Assignment, MemberSpec};

mod classic_members;
mod migration;

pub use migration::{MigrationPolicy, NotConvertible};

/// Member epoch meaning "join"; -1 leaves, -2 leaves as a static member.
pub const JOIN: i32 = 0;
pub const LEAVE: i32 = -1;
pub const LEAVE_STATIC: i32 = -2;

#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    /// Topics subscribed to by name.
    pub subscribed: BTreeSet<String>,
    /// A regular-expression subscription (KIP-848 v1), matched against whole
    /// topic names; internal topics never match.
    pub regex: Option<String>,
    compiled: Option<regex::Regex>,
    /// With an authorizer: the topics the regular expression matched at the
    /// member's last heartbeat that its principal may describe (Kafka
    /// resolves a regex with the rights of the member that sent it). None:
    /// every match (no authorizer, or not resolved since a restart).
    regex_allowed: Option<BTreeSet<String>>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// What the member was last told it owns.
    pub assigned: Assignment,
    /// Given up in the assignment sent, not yet reported released.
    pub revoking: Assignment,
    deadline: i64,
    revoke_deadline: i64,
    /// The member's epoch before its last move (-1: none): a commit the
    /// client sent before hearing of the move still counts for partitions it
    /// holds.
    previous_epoch: i32,
    /// The assignment changed since it was last sent.
    send_assignment: bool,
    /// Set for a member that still speaks the classic protocol (JoinGroup,
    /// SyncGroup, Heartbeat) inside this group (KIP-848 online migration).
    pub classic: Option<ClassicMember>,
}

impl ConsumerMember {
    /// A member that has just joined: subscribed to nothing, owning nothing.
    pub(crate) fn new(id: String) -> Self {
        Self {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            subscribed: BTreeSet::new(),
            regex: None,
            compiled: None,
            regex_allowed: None,
            assignor: None,
            rebalance_timeout_ms: 0,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            deadline: 0,
            revoke_deadline: 0,
            previous_epoch: -1,
            send_assignment: false,
            classic: None,
        }
    }
}

/// What a member using the classic protocol joined with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicMember {
    pub session_timeout_ms: i32,
    /// (protocol name, ConsumerProtocolSubscription) in its order of preference.
    pub protocols: Vec<(String, bytes::Bytes)>,
}

/// A ConsumerGroupHeartbeat, with topic ids already turned into names.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub subscribed: Option<BTreeSet<String>>,
    /// None: unchanged; an empty string drops the regular expression.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// What the member owns now; None: unchanged.
    pub owned: Option<Assignment>,
    /// With an authorizer: whether the sender may describe a topic (a
    /// regular expression only brings in those).
    pub may_describe: Option<DescribeFilter>,
}

/// A check of DESCRIBE on a topic, for the principal of one request.
#[derive(Clone)]
pub struct DescribeFilter(pub std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for DescribeFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DescribeFilter")
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeartbeatOutcome {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub epoch: i32,
    /// Sent only when it changed (and always after a join).
    pub assignment: Option<Assignment>,
}

impl HeartbeatOutcome {
    fn error(e: ResponseError, message: &str) -> Self {
        Self {
            error: e.code(),
            message: Some(message.to_owned()),
            epoch: -1,
            ..Self::default()
        }
    }
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    config: ConsumerGroupConfig,
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    target: BTreeMap<String, Assignment>,
    assignor: String,
    /// Partition counts the target was computed with.
    partitions_seen: BTreeMap<String, i32>,
    /// Changed since the last [`ConsumerGroup::take_dirty`]: to be stored.
    dirty: bool,
}

/// What `__consumer_offsets` keeps of a consumer group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumerGroupSnapshot {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub partitions_seen: BTreeMap<String, i32>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberSnapshot {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub subscribed: BTreeSet<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub assigned: Assignment,
    pub revoking: Assignment,
    pub target: Assignment,
    pub classic: Option<ClassicMember>,
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

fn union_into(a: &mut Assignment, b: &Assignment) {
    for (t, ps) in b {
        a.entry(t.clone()).or_default().extend(ps);
    }
}

fn is_empty(a: &Assignment) -> bool {
    a.values().all(BTreeSet::is_empty)
}

impl ConsumerGroup {
    /// The group's settings (its GROUP config overrides over the broker's
    /// defaults): a changed session timeout counts from each member's next
    /// heartbeat.
    pub fn set_config(&mut self, config: ConsumerGroupConfig) {
        self.config = config;
    }

    pub fn new(id: impl Into<String>, config: ConsumerGroupConfig) -> Self {
        Self {
            id: id.into(),
            config,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_owned(),
            partitions_seen: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Whether the group changed since the last call (and so must be stored).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn snapshot(&self) -> ConsumerGroupSnapshot {
        ConsumerGroupSnapshot {
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            partitions_seen: self.partitions_seen.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: m.epoch,
                    subscribed: m.subscribed.clone(),
                    regex: m.regex.clone(),
                    assignor: m.assignor.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.clone(),
                    target: self.target(&m.id),
                    classic: m.classic.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a stored group. Members keep epoch and assignment and have
    /// one session timeout from `now` to heartbeat again.
    pub fn restore(
        id: &str,
        config: ConsumerGroupConfig,
        snap: ConsumerGroupSnapshot,
        now: i64,
    ) -> Self {
        let mut g = Self::new(id, config);
        g.epoch = snap.epoch;
        g.assignment_epoch = snap.assignment_epoch;
        g.assignor = snap.assignor;
        g.partitions_seen = snap.partitions_seen;
        for m in snap.members {
            g.target.insert(m.id.clone(), m.target);
            let session = m
                .classic
                .as_ref()
                .map_or(config.session_timeout_ms, |c| c.session_timeout_ms);
            g.members.insert(
                m.id.clone(),
                ConsumerMember {
                    id: m.id,
                    instance_id: m.instance_id,
                    rack_id: m.rack_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    epoch: m.epoch,
                    subscribed: m.subscribed,
                    compiled: m.regex.as_deref().and_then(|r| compile(r).ok()),
                    regex_allowed: None,
                    regex: m.regex,
                    assignor: m.assignor,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assigned: m.assigned,
                    revoking: m.revoking,
                    deadline: now + session as i64,
                    revoke_deadline: now + m.rebalance_timeout_ms.max(0) as i64,
                    previous_epoch: -1,
                    send_assignment: false,
                    classic: m.classic,
                },
            );
        }
        g
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn assignor(&self) -> &str {
        &self.assignor
    }

    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    pub fn target(&self, member: &str) -> Assignment {
        self.target.get(member).cloned().unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn heartbeat_interval_ms(&self) -> i32 {
        self.config.heartbeat_interval_ms
    }

    /// Kafka's names: Empty, Assigning, Reconciling, Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !is_empty(&m.revoking)
                || m.assigned != self.target(&m.id)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Whether a member subscribes to `topic`, by name or by its regular
    /// expression (which never matches an internal topic).
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| {
            m.subscribed.contains(topic)
                || (!topic.starts_with("__") && Self::regex_brings(m, topic))
        })
    }

    /// Whether a member's regular expression brings in `topic` (matched,
    /// and allowed to its principal).
    fn regex_brings(m: &ConsumerMember, topic: &str) -> bool {
        m.compiled.as_ref().is_some_and(|re| re.is_match(topic))
            && m.regex_allowed.as_ref().is_none_or(|a| a.contains(topic))
    }

    /// What a member subscribes to among `topics`: its names, and the topics
    /// its regular expression matches.
    fn effective(m: &ConsumerMember, topics: &BTreeMap<String, i32>) -> BTreeSet<String> {
        let mut out = m.subscribed.clone();
        out.extend(topics.keys().filter(|t| Self::regex_brings(m, t)).cloned());
        out
    }

    /// Serves one heartbeat. `partitions` holds the partition count of every
    /// existing (non-internal) topic; subscriptions, by name or regular
    /// expression, are resolved against it.
    pub fn heartbeat(
        &mut self,
        mut req: HeartbeatRequest,
        partitions: &BTreeMap<String, i32>,
        now: i64,
    ) -> HeartbeatOutcome {
        if let Some(a) = &req.assignor
            && !assignor::is_known(a)
        {
            return HeartbeatOutcome::error(
                ResponseError::UnsupportedAssignor,
                &format!("server assignor '{a}' is not one of uniform, range"),
            );
        }
        // A bad pattern is refused before anything changes.
        let regex = match req.regex.take() {
            None => None,
            Some(r) if r.is_empty() => Some((None, None)),
            Some(r) => match compile(&r) {
                Ok(c) => Some((Some(r), Some(c))),
                Err(e) => {
                    return HeartbeatOutcome::error(ResponseError::InvalidRegularExpression, &e);
                }
            },
        };
        match req.epoch {
            JOIN => {
                if req.subscribed.is_none() && regex.is_none() {
                    return HeartbeatOutcome::error(
                        ResponseError::InvalidRequest,
                        "a joining member must name its subscribed topics or a regular expression",
                    );
                }
                let subscribed = req.subscribed.clone().unwrap_or_default();
                let id = req.member_id.clone();
                let new = !self.members.contains_key(&id);
                let m = self
                    .members
                    .entry(id.clone())
                    .or_insert_with(|| ConsumerMember::new(id.clone()));
                // A rejoin after a lost answer gets its whole assignment again.
                m.send_assignment = true;
                if new {
                    m.subscribed = subscribed;
                    self.epoch += 1;
                    self.dirty = true;
                    tracing::info!(group = %self.id, member = %id, epoch = self.epoch, "member joined");
                }
            }
            LEAVE | LEAVE_STATIC => {
                if !self.remove_member(&req.member_id) {
                    return HeartbeatOutcome::error(
                        ResponseError::UnknownMemberId,
                        "unknown member id",
                    );
                }
                tracing::info!(group = %self.id, member = %req.member_id, epoch = self.epoch, "member left");
                return HeartbeatOutcome {
                    member_id: req.member_id,
                    epoch: req.epoch,
                    ..HeartbeatOutcome::default()
                };
            }
            e => {
                let Some(m) = self.members.get(&req.member_id) else {
                    return HeartbeatOutcome::error(
                        ResponseError::UnknownMemberId,
                        "unknown member id",
                    );
                };
                if e != m.epoch {
                    return HeartbeatOutcome::error(
                        ResponseError::FencedMemberEpoch,
                        &format!("member epoch {e} is not the current {}", m.epoch),
                    );
                }
            }
        }
        let m = self.members.get_mut(&req.member_id).expect("present");
        m.deadline = now + self.config.session_timeout_ms as i64;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        // -1 and null mean "unchanged since the last heartbeat" (KIP-848).
        if req.instance_id.is_some() {
            m.instance_id = req.instance_id;
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id;
        }
        if req.rebalance_timeout_ms != -1 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.assignor.is_some() {
            m.assignor = req.assignor;
        }
        if let Some(s) = req.subscribed
            && s != m.subscribed
        {
            m.subscribed = s;
            self.epoch += 1;
            self.dirty = true;
        }
        if let Some((source, compiled)) = regex
            && source != m.regex
        {
            m.regex = source;
            m.compiled = compiled;
            self.epoch += 1;
            self.dirty = true;
        }
        if let Some(may) = &req.may_describe {
            let allowed = m.compiled.as_ref().map(|re| {
                partitions
                    .keys()
                    .filter(|t| re.is_match(t) && (may.0)(t))
                    .cloned()
                    .collect::<BTreeSet<_>>()
            });
            if allowed != m.regex_allowed {
                m.regex_allowed = allowed;
                self.epoch += 1;
            }
        }
        let m = self.members.get_mut(&req.member_id).expect("present");
        if let Some(owned) = &req.owned {
            // Whatever it no longer reports is released.
            let still = self::intersect(&m.revoking, owned);
            if still != m.revoking {
                m.revoking = still;
                self.dirty = true;
            }
        }
        self.maybe_assign(partitions);
        self.reconcile(&req.member_id, now);
        let m = self.members.get_mut(&req.member_id).expect("present");
        let assignment = std::mem::take(&mut m.send_assignment).then(|| m.assigned.clone());
        HeartbeatOutcome {
            error: 0,
            message: None,
            member_id: m.id.clone(),
            epoch: m.epoch,
            assignment,
        }
    }

    /// Recomputes the target assignment when the group epoch moved on or a
    /// subscribed topic's partition count changed.
    fn maybe_assign(&mut self, partitions: &BTreeMap<String, i32>) {
        let effective: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), Self::effective(m, partitions)))
            .collect();
        let relevant: BTreeMap<String, i32> = partitions
            .iter()
            .filter(|(t, _)| effective.values().any(|e| e.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        if relevant != self.partitions_seen {
            self.partitions_seen = relevant;
            if self.assignment_epoch == self.epoch {
                self.epoch += 1;
            }
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        self.assignor = self
            .members
            .values()
            .find_map(|m| m.assignor.clone())
            .unwrap_or_else(|| assignor::UNIFORM.to_owned());
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| MemberSpec {
                id: &m.id,
                subscribed: &effective[&m.id],
                current: &m.assigned,
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &specs, &self.partitions_seen);
        self.assignment_epoch = self.epoch;
        self.dirty = true;
        tracing::info!(group = %self.id, epoch = self.epoch, members = self.members.len(), assignor = %self.assignor, "target assignment computed");
    }

    /// Moves one member toward its target, never giving it a partition that
    /// another member still owns.
    fn reconcile(&mut self, id: &str, now: i64) {
        let target = self.target(id);
        let held_by_others: Assignment = {
            let mut h = Assignment::new();
            for o in self.members.values().filter(|o| o.id != id) {
                union_into(&mut h, &o.assigned);
                union_into(&mut h, &o.revoking);
            }
            h
        };
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("present");
        let before = (m.epoch, m.assigned.clone(), m.revoking.clone());
        let revoke = minus(&m.assigned, &target);
        if !is_empty(&revoke) {
            m.assigned = intersect(&m.assigned, &target);
            union_into(&mut m.revoking, &revoke);
            m.revoke_deadline = now + m.rebalance_timeout_ms.max(0) as i64;
            m.send_assignment = true;
        }
        if is_empty(&m.revoking) {
            let add = minus(&minus(&target, &m.assigned), &held_by_others);
            if !is_empty(&add) {
                union_into(&mut m.assigned, &add);
                m.send_assignment = true;
            }
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
            }
        }
        if before != (m.epoch, m.assigned.clone(), m.revoking.clone()) {
            self.dirty = true;
        }
    }

    /// Removes members whose session expired or who kept partitions past
    /// their rebalance timeout.
    pub fn tick(&mut self, now: i64) {
        for id in self.expired(now) {
            tracing::info!(group = %self.id, member = %id, "member session expired (or it held revoked partitions too long); removed");
            self.remove_member(&id);
        }
    }

    /// Members whose session expired or who kept partitions past their
    /// rebalance timeout: the next [`ConsumerGroup::tick`] removes them.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.deadline <= now || (!is_empty(&m.revoking) && m.revoke_deadline <= now))
            .map(|m| m.id.clone())
            .collect()
    }

    /// Removes a member (false: unknown); the group epoch moves on.
    fn remove_member(&mut self, id: &str) -> bool {
        if self.members.remove(id).is_none() {
            return false;
        }
        self.target.remove(id);
        self.epoch += 1;
        self.dirty = true;
        true
    }

    /// OffsetCommit from a member at `epoch` for `partitions` (Kafka's rules
    /// for consumer groups, relaxed as KIP-1251 does): the member's current
    /// epoch, or the one before its last move for partitions it still holds
    /// (the commit crossed the heartbeat that moved it on).
    pub fn validate_commit<'a>(
        &self,
        member_id: &str,
        epoch: i32,
        mut partitions: impl Iterator<Item = (&'a str, i32)>,
    ) -> Result<(), i16> {
        if member_id.is_empty() && epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        // A classic member commits with its generation, which is its epoch.
        if m.classic.is_some() {
            return match epoch == m.epoch {
                true => Ok(()),
                false => Err(ResponseError::IllegalGeneration.code()),
            };
        }
        let holds = |t: &str, p: i32| {
            m.assigned.get(t).is_some_and(|ps| ps.contains(&p))
                || m.revoking.get(t).is_some_and(|ps| ps.contains(&p))
        };
        if epoch == m.epoch
            || (epoch > 0 && epoch == m.previous_epoch && partitions.all(|(t, p)| holds(t, p)))
        {
            return Ok(());
        }
        Err(ResponseError::StaleMemberEpoch.code())
    }
}

/// A KIP-848 subscription pattern, matched against whole topic names (as
/// Java's `Pattern.matches` does).
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(bs) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(bs).copied().collect();
            if !both.is_empty() {
                out.insert(t.clone(), both);
            }
        }
    }
    out
}

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;
