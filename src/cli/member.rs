//! `sluice consume --group` as a member of the group (KIP-848,
//! ConsumerGroupHeartbeat): the coordinator assigns the partitions and the
//! CLI reads only those.
//!
//! - Joins with member epoch 0 and the one topic subscribed to, then
//!   heartbeats at the interval the coordinator answers.
//! - Each assignment in an answer (topic ids, mapped to the topic through
//!   Metadata) is followed at once: partitions dropped from it are
//!   committed and forgotten, then released by the next heartbeat (sent
//!   right away); new ones start at the group's committed offset, or where
//!   the start flags say when there is none.
//! - Offsets are committed as the member (member id, member epoch) every
//!   [`COMMIT_EVERY`] and at the end, before leaving (epoch -1).
//! - NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE: the coordinator is looked
//!   up again; FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID: the partitions are
//!   dropped uncommitted and the member joins again with epoch 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;
use tokio::time::Instant;

use super::Admin;
use super::admin::{Node, str_bytes, topic_name};
use super::offsets::{self, Tp};
use super::output::{CliError, kafka_error};
use crate::client;
use uuid::Uuid;

/// How often read offsets are committed while reading.
pub const COMMIT_EVERY: Duration = Duration::from_secs(5);
/// How long the member may take to release partitions (Kafka's
/// max.poll.interval.ms plays this part for the Java client).
const REBALANCE_TIMEOUT_MS: i32 = 60_000;

const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const NOT_COORDINATOR: i16 = 16;
const JOIN: i32 = 0;
const LEAVE: i32 = -1;

/// Partition → next offset to read.
pub type Positions = BTreeMap<i32, i64>;

/// What one heartbeat brought.
enum Beat {
    /// Nothing new to follow.
    Same,
    /// The partitions of the topic the member owns from now on.
    Assigned(BTreeSet<i32>),
    /// Fenced or unknown: its partitions are no longer its own.
    Lost(i16),
}

pub struct Member {
    group: String,
    topic: String,
    topic_id: Option<Uuid>,
    coordinator: Node,
    member_id: String,
    epoch: i32,
    interval: Duration,
    next_beat: Instant,
    next_commit: Instant,
    /// The partitions followed (those in the last assignment).
    owned: BTreeSet<i32>,
    /// The owned partitions last told to the coordinator (None: to be told).
    reported: Option<BTreeSet<i32>>,
    /// Whether an assignment came since the last join.
    assigned: bool,
    /// The positions last committed.
    committed: Positions,
}

impl Member {
    /// A member of `group` that will read `topic`; it joins on the first
    /// [`Member::tick`].
    pub fn new(group: &str, topic: &str, coordinator: Node) -> Self {
        // A member id of the client's own making (v1 asks for one), in
        // the form of Kafka's: a UUID as URL-safe base64.
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        let now = Instant::now();
        Self {
            group: group.to_owned(),
            topic: topic.to_owned(),
            topic_id: None,
            coordinator,
            member_id: id,
            epoch: JOIN,
            interval: Duration::from_secs(1),
            next_beat: now,
            next_commit: now + COMMIT_EVERY,
            owned: BTreeSet::new(),
            reported: None,
            assigned: false,
            committed: BTreeMap::new(),
        }
    }

    /// When the next heartbeat is due.
    pub fn next_beat(&self) -> Instant {
        self.next_beat
    }

    /// Whether the coordinator has answered with an assignment yet.
    pub fn has_assignment(&self) -> bool {
        self.assigned
    }

    /// Heartbeats when one is due and follows what it brings: commits and
    /// drops revoked partitions from `positions`; the partitions newly
    /// assigned, which the caller gives a position. Commits every
    /// [`COMMIT_EVERY`] too.
    pub async fn tick(
        &mut self,
        admin: &mut Admin,
        positions: &mut Positions,
    ) -> Result<Vec<i32>, CliError> {
        let mut added: BTreeSet<i32> = BTreeSet::new();
        // Bounded: after an assignment is acknowledged, the next answer
        // normally brings nothing new.
        for _ in 0..8 {
            if Instant::now() < self.next_beat {
                break;
            }
            match self.heartbeat(admin).await? {
                Beat::Same => {}
                Beat::Lost(code) => {
                    eprintln!(
                        "note: group {}: {} (error {code}); its partitions are dropped uncommitted and the member joins again",
                        self.group,
                        client::error_name(code)
                    );
                    positions.clear();
                    added.clear();
                    self.owned.clear();
                    self.committed.clear();
                    self.epoch = JOIN;
                    self.assigned = false;
                    self.reported = None;
                    self.next_beat = Instant::now();
                }
                Beat::Assigned(new) => {
                    let revoked: Vec<i32> = self.owned.difference(&new).copied().collect();
                    if !revoked.is_empty() {
                        // Committed before they are released.
                        self.commit(admin, positions, Some(&revoked)).await;
                        for p in &revoked {
                            positions.remove(p);
                            added.remove(p);
                            self.committed.remove(p);
                        }
                    }
                    added.extend(new.difference(&self.owned));
                    self.owned = new;
                    if self.reported.as_ref() != Some(&self.owned) {
                        // Acknowledged by the next heartbeat, now.
                        self.next_beat = Instant::now();
                    }
                }
            }
        }
        // After the heartbeat: a member fenced meanwhile has nothing to commit.
        if Instant::now() >= self.next_commit {
            self.commit(admin, positions, None).await;
            self.next_commit = Instant::now() + COMMIT_EVERY;
        }
        Ok(added.into_iter().collect())
    }

    /// The group's committed offset of each of `parts` that has one.
    pub async fn committed(
        &mut self,
        admin: &mut Admin,
        parts: &[i32],
    ) -> Result<Positions, CliError> {
        let all = offsets::committed(admin, self.coordinator, &self.group).await?;
        Ok(all
            .into_iter()
            .filter(|((t, p), _)| *t == self.topic && parts.contains(p))
            .map(|((_, p), o)| (p, o))
            .collect())
    }

    /// Commits the positions (of `only`, or all) that moved since the last
    /// commit; a failure is reported on stderr, the next commit tries again.
    async fn commit(&mut self, admin: &mut Admin, positions: &Positions, only: Option<&[i32]>) {
        if let Err(e) = self.try_commit(admin, positions, only).await {
            eprintln!("warning: {e}");
        }
    }

    async fn try_commit(
        &mut self,
        admin: &mut Admin,
        positions: &Positions,
        only: Option<&[i32]>,
    ) -> Result<(), CliError> {
        if self.epoch <= 0 {
            return Ok(());
        }
        let todo: BTreeMap<Tp, i64> = positions
            .iter()
            .filter(|(p, o)| {
                only.is_none_or(|ps| ps.contains(p)) && self.committed.get(p) != Some(o)
            })
            .map(|(p, o)| ((self.topic.clone(), *p), *o))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let member = (self.member_id.as_str(), self.epoch);
        match offsets::commit_as(admin, self.coordinator, &self.group, member, &todo).await {
            Ok(()) => {
                for ((_, p), o) in todo {
                    self.committed.insert(p, o);
                }
                Ok(())
            }
            Err(e) => {
                // The coordinator may have moved.
                if let Ok(c) = admin.coordinator(&self.group).await {
                    self.coordinator = c;
                }
                Err(e)
            }
        }
    }

    /// The end: commits what was read, then leaves the group.
    pub async fn close(&mut self, admin: &mut Admin, positions: &Positions) {
        if let Err(e) = self.try_commit(admin, positions, None).await {
            // The member epoch may have moved on (STALE_MEMBER_EPOCH): once
            // more with the one a heartbeat answers.
            match self.heartbeat(admin).await {
                Ok(Beat::Same | Beat::Assigned(_)) => self.commit(admin, positions, None).await,
                _ => eprintln!("warning: {e}"),
            }
        }
        if self.epoch == JOIN && !self.assigned {
            // Never joined.
            return;
        }
        self.epoch = LEAVE;
        let r = self.send(admin).await;
        match r {
            Ok((r, _)) if r.error_code != 0 && r.error_code != UNKNOWN_MEMBER_ID => {
                eprintln!(
                    "warning: {}",
                    kafka_error(
                        &format!("cannot leave group {}", self.group),
                        r.error_code,
                        r.error_message.as_deref()
                    )
                );
            }
            Err(e) => eprintln!("warning: cannot leave group {}: {e}", self.group),
            Ok(_) => {}
        }
    }

    /// The next heartbeat: everything on a join, then only what changed.
    fn request(&self) -> ConsumerGroupHeartbeatRequest {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_member_id(str_bytes(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(-1);
        match self.epoch {
            JOIN => req
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_subscribed_topic_names(Some(vec![topic_name(&self.topic)]))
                .with_topic_partitions(Some(Vec::new())),
            LEAVE => req,
            _ if self.reported.as_ref() != Some(&self.owned) => {
                let owned = match (self.topic_id, self.owned.is_empty()) {
                    (Some(id), false) => vec![
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(self.owned.iter().copied().collect()),
                    ],
                    _ => Vec::new(),
                };
                req.with_topic_partitions(Some(owned))
            }
            _ => req,
        }
    }

    /// Sends the next heartbeat (see [`Self::request`]) once.
    async fn send(
        &self,
        admin: &mut Admin,
    ) -> Result<(ConsumerGroupHeartbeatResponse, i16), CliError> {
        let req = self.request();
        admin
            .call(
                self.coordinator,
                ApiKey::ConsumerGroupHeartbeat,
                0..=1,
                |_| req,
            )
            .await
    }

    /// One heartbeat, retried at a new coordinator when it moved.
    async fn heartbeat(&mut self, admin: &mut Admin) -> Result<Beat, CliError> {
        let retry = client::Retry::new(
            format!("ConsumerGroupHeartbeat for group {}", self.group),
            Duration::from_millis(200),
        );
        let r = loop {
            let sent = self.send(admin).await;
            let code = match sent {
                Ok((r, _)) => match r.error_code {
                    0 => break r,
                    UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH => {
                        return Ok(Beat::Lost(r.error_code));
                    }
                    c if c == NOT_COORDINATOR || client::RETRIABLE.contains(&c) => c,
                    c => {
                        return Err(kafka_error(
                            &format!("cannot be a member of group {}", self.group),
                            c,
                            r.error_message.as_deref(),
                        ));
                    }
                },
                // The connection is gone: the coordinator may be too.
                Err(CliError::Unreachable(_)) => client::COORDINATOR_NOT_AVAILABLE,
                Err(e) => return Err(e),
            };
            let mut retriable = client::RETRIABLE.to_vec();
            retriable.push(NOT_COORDINATOR);
            retry
                .after(code, &retriable)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            if code != client::COORDINATOR_LOAD_IN_PROGRESS {
                self.coordinator = admin.coordinator(&self.group).await?;
            }
        };
        if self.request().topic_partitions.is_some() {
            self.reported = Some(self.owned.clone());
        }
        if let Some(id) = r.member_id.as_ref().filter(|id| !id.is_empty()) {
            self.member_id = id.to_string();
        }
        self.epoch = r.member_epoch;
        self.interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(50, 60_000) as u64);
        self.next_beat = Instant::now() + self.interval;
        let Some(a) = r.assignment else {
            return Ok(Beat::Same);
        };
        self.assigned = true;
        let mut parts = BTreeSet::new();
        for tp in a.topic_partitions {
            if self.topic_id.is_none() || self.topic_id != Some(tp.topic_id) {
                // First assignment, or the topic was made anew.
                self.topic_id = self.topic_id_now(admin).await?;
            }
            if self.topic_id == Some(tp.topic_id) {
                parts.extend(tp.partitions);
            }
        }
        Ok(Beat::Assigned(parts))
    }

    /// The topic's id, from Metadata.
    async fn topic_id_now(&self, admin: &mut Admin) -> Result<Option<Uuid>, CliError> {
        let m = admin
            .metadata(Some(std::slice::from_ref(&self.topic)))
            .await?;
        Ok(m.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == self.topic))
            .map(|t| t.topic_id)
            .filter(|id| !id.is_nil()))
    }
}
