//! The group coordinator: consumer groups and their committed offsets.
//!
//! - [`classic`]: the classic rebalance protocol as a pure state machine.
//! - [`records`]: the record layouts of `__consumer_offsets` (Kafka's own).
//!
//! Offsets and group metadata live in the internal compacted topic
//! `__consumer_offsets` (`offsets.topic.num.partitions` partitions, 50 by
//! default); a group belongs to partition `abs(java_hash(group)) % N`, as in
//! Kafka. The coordinator of a group is the leader of that partition — on one
//! node, this broker. Every change is appended to that partition and answered
//! only once it is durable (the high watermark passed it), so an acknowledged
//! commit survives a crash; at startup the coordinator replays the topic.
//!
//! The state machines sit behind one std mutex: every call on them is short and
//! never waits. Requests that must wait (a JoinGroup until the rebalance
//! completes, a SyncGroup until the leader's) park a oneshot sender keyed by
//! (group, member) and await it without the lock. A timer task ticks every
//! group every [`TICK`] to expire sessions and end rebalance phases.

pub mod assignor;
pub mod classic;
pub mod consumer;
mod consumer_api;
pub mod consumer_protocol;
mod migration;
mod offsets;
pub mod records;
mod txn_offsets;
pub mod types;

pub use txn_offsets::TxnCommit;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use sluice_storage::batch::{BuildOptions, RecordSpec};
use tokio::sync::{oneshot, watch};

use crate::broker::{Broker, Topic};
use crate::partition::{AppendResult, Partition};
use classic::{
    Effect, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest, Reply, SyncOutcome,
    SyncRequest,
};
use consumer::{ConsumerGroup, ConsumerGroupConfig};
use offsets::committed;
use records::Entry;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often sessions and rebalance deadlines are checked.
pub const TICK: Duration = Duration::from_millis(100);

/// Kafka's `offset.metadata.max.bytes`.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// Extra time a parked request waits past its own deadline before it is
/// answered with an error (the state machine answers well before).
const PARK_GRACE: Duration = Duration::from_secs(5);

/// A committed offset, and where its record sits in `__consumer_offsets`
/// (a later record always wins, whatever order the writes became durable in).
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    record_offset: i64,
}

/// A topic's partitions with their committed offsets (None: nothing stored).
pub type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitItem {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A group as the metrics show it.
#[derive(Debug, Clone)]
pub struct GroupStats {
    pub id: String,
    pub state: &'static str,
    pub members: usize,
    /// Rebalances since the group was created: its generation (classic) or
    /// group epoch (consumer protocol).
    pub rebalances: u64,
    /// (topic, partition, committed offset).
    pub offsets: Vec<(String, i32, i64)>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (ListGroups v5 group type).
    pub kind: &'static str,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    /// KIP-848 groups; a group id is either classic or consumer, never both.
    consumers: HashMap<String, ConsumerGroup>,
    offsets: HashMap<String, BTreeMap<(String, i32), Committed>>,
    join_waiters: HashMap<(String, String), oneshot::Sender<JoinOutcome>>,
    sync_waiters: HashMap<(String, String), oneshot::Sender<SyncOutcome>>,
    /// In a cluster: the Raft term in which each `__consumer_offsets`
    /// partition led here was loaded.
    loaded_terms: HashMap<i32, u64>,
    /// Offsets of open transactions, by producer id.
    txn_offsets: HashMap<i64, txn_offsets::Pending>,
}

/// What replaying partitions of `__consumer_offsets` found.
#[derive(Default)]
struct Loaded {
    offsets: HashMap<String, BTreeMap<(String, i32), Committed>>,
    snapshots: HashMap<String, Option<classic::GroupSnapshot>>,
    consumer_snapshots: HashMap<String, Option<consumer::ConsumerGroupSnapshot>>,
    /// Offsets of transactions with no marker yet, by producer id.
    pending: HashMap<i64, txn_offsets::Pending>,
    records: usize,
}

/// Answers to parked requests, to send once `durable` (if any) is reached.
#[derive(Default)]
struct Deliveries {
    joins: Vec<(oneshot::Sender<JoinOutcome>, JoinOutcome)>,
    syncs: Vec<(oneshot::Sender<SyncOutcome>, SyncOutcome)>,
    durable: Option<(Arc<Partition>, AppendResult)>,
}

impl Deliveries {
    async fn deliver(self) {
        if let Some((p, offset)) = self.durable
            && let Err(e) = p.wait_acked(&offset, Duration::from_secs(30)).await
        {
            tracing::error!(partition = ?p, error = %e, "group metadata did not become durable");
        }
        for (tx, outcome) in self.joins {
            let _ = tx.send(outcome);
        }
        for (tx, outcome) in self.syncs {
            let _ = tx.send(outcome);
        }
    }
}

pub struct GroupCoordinator {
    config: GroupConfig,
    consumer_config: ConsumerGroupConfig,
    num_partitions: i32,
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

/// Java's `String.hashCode` over UTF-16 units, so groups land on the same
/// partition as in Kafka.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of a group.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl GroupCoordinator {
    pub fn new(
        config: GroupConfig,
        consumer_config: ConsumerGroupConfig,
        num_partitions: i32,
        segment_bytes: u64,
    ) -> Self {
        Self {
            config,
            consumer_config,
            num_partitions: num_partitions.max(1),
            segment_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ok when this broker coordinates `group` and has its state loaded
    /// (always alone; in a cluster, see [`Self::offsets_partition`]). For
    /// requests that only read the coordinator's state (OffsetFetch).
    pub async fn coordinates(&self, broker: &Broker, group: &str) -> Result<(), i16> {
        if broker.cluster().is_none() {
            return Ok(());
        }
        self.offsets_partition(broker, group).await.map(drop)
    }

    /// The group's partition when this broker coordinates the group: it
    /// leads the partition, and has loaded what the partition holds since
    /// it became leader. NOT_COORDINATOR sends the client to FindCoordinator.
    pub async fn offsets_partition(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Arc<Partition>, i16> {
        let p = self.offsets_partition_anywhere(broker, group).await?;
        if let Some(term) = p.coordinator_term()? {
            let loaded = self.lock().loaded_terms.get(&p.index) == Some(&term);
            if !loaded {
                self.load_led_partition(broker, &p, term).await?;
            }
        }
        Ok(p)
    }

    /// A new leader of a `__consumer_offsets` partition replays it once the
    /// entries of earlier terms are committed (its log holds every entry
    /// that may have been acknowledged; the high watermark catches up when
    /// its first entry commits), replacing the groups of that partition.
    async fn load_led_partition(
        &self,
        broker: &Broker,
        p: &Arc<Partition>,
        term: u64,
    ) -> Result<(), i16> {
        if !p.caught_up_as_leader().await {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        let mut loaded = Loaded::default();
        read_partition(p, &mut loaded).map_err(|e| {
            tracing::error!(partition = ?p, error = %e, "could not load {OFFSETS_TOPIC}");
            code(ResponseError::CoordinatorLoadInProgress)
        })?;
        let n = broker
            .topic(OFFSETS_TOPIC)
            .map_or(1, |t| t.partitions.len() as i32);
        let index = p.index;
        self.install(loaded, broker.now_ms(), |g| partition_for(g, n) == index);
        self.lock().loaded_terms.insert(index, term);
        tracing::info!(partition = ?p, term, "now coordinating the groups of this partition");
        Ok(())
    }

    /// The group's partition of `__consumer_offsets` wherever it is led,
    /// creating the topic on first use (as Kafka does on the first
    /// FindCoordinator).
    pub async fn offsets_partition_anywhere(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Arc<Partition>, i16> {
        let topic = match broker.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => self.create_offsets_topic(broker).await?,
        };
        let i = partition_for(group, topic.partitions.len() as i32);
        topic
            .partitions
            .get(i as usize)
            .cloned()
            .ok_or(code(ResponseError::CoordinatorNotAvailable))
    }

    async fn create_offsets_topic(&self, broker: &Broker) -> Result<Arc<Topic>, i16> {
        let configs = BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("segment.bytes".to_owned(), self.segment_bytes.to_string()),
        ]);
        broker
            .create_internal_topic(
                OFFSETS_TOPIC,
                self.num_partitions,
                broker.config.offsets_topic_replication_factor,
                configs,
            )
            .await
    }

    /// Replays `__consumer_offsets`: committed offsets, and groups with their
    /// members and assignments (members then have one session to show up).
    pub fn load(&self, topic: &Topic, now: i64) -> Result<(), crate::error::BrokerError> {
        let mut loaded = Loaded::default();
        for p in &topic.partitions {
            read_partition(p, &mut loaded)?;
        }
        self.install(loaded, now, |_| true);
        Ok(())
    }

    /// Replaces the groups `owned` says are being loaded with what was read.
    fn install(&self, loaded: Loaded, now: i64, owned: impl Fn(&str) -> bool) {
        let Loaded {
            mut offsets,
            snapshots,
            consumer_snapshots,
            pending,
            records,
        } = loaded;
        let mut inner = self.lock();
        offsets.retain(|_, m| !m.is_empty());
        let (n_offsets, n_groups) = (offsets.len(), snapshots.len());
        for p in inner.txn_offsets.values_mut() {
            p.retain(|g, _| !owned(g));
        }
        for (pid, groups) in pending {
            inner.txn_offsets.entry(pid).or_default().extend(groups);
        }
        inner.offsets.retain(|g, _| !owned(g));
        inner.groups.retain(|g, _| !owned(g));
        inner.consumers.retain(|g, _| !owned(g));
        inner.offsets.extend(offsets);
        for (id, snap) in snapshots {
            if let Some(snap) = snap {
                inner
                    .groups
                    .insert(id.clone(), Group::restore(&id, self.config, snap, now));
            }
        }
        for (id, snap) in consumer_snapshots {
            if let Some(snap) = snap {
                inner.groups.remove(&id);
                inner.consumers.insert(
                    id.clone(),
                    ConsumerGroup::restore(&id, self.consumer_config, snap, now),
                );
            }
        }
        tracing::info!(
            records,
            groups = n_groups,
            groups_with_offsets = n_offsets,
            "loaded {OFFSETS_TOPIC}"
        );
    }

    /// Routes effects to parked requests; writes group metadata when asked.
    /// Runs under the lock; the returned deliveries are sent without it.
    fn route(&self, broker: &Broker, inner: &mut Inner, group: &str) -> Deliveries {
        let Some(g) = inner.groups.get_mut(group) else {
            return Deliveries::default();
        };
        let effects = g.take_effects();
        let mut d = Deliveries::default();
        for e in effects {
            match e {
                Effect::Join { member_id, outcome } => {
                    if let Some(tx) = inner.join_waiters.remove(&(group.to_owned(), member_id)) {
                        d.joins.push((tx, outcome));
                    }
                }
                Effect::Sync { member_id, outcome } => {
                    if let Some(tx) = inner.sync_waiters.remove(&(group.to_owned(), member_id)) {
                        d.syncs.push((tx, outcome));
                    }
                }
                Effect::Persist => {
                    let Some(g) = inner.groups.get(group) else {
                        continue;
                    };
                    let value = records::group_value(&g.snapshot());
                    match self.append(broker, group, &[(records::group_key(group), Some(value))]) {
                        Ok(written) => d.durable = Some(written),
                        Err(e) => {
                            tracing::error!(group, code = e, "could not store group metadata")
                        }
                    }
                }
            }
        }
        d
    }

    /// Appends records to the group's partition (which exists: every caller
    /// went through [`Self::offsets_partition`] first). Returns the partition
    /// and the last offset written.
    fn append(
        &self,
        broker: &Broker,
        group: &str,
        recs: &[(Bytes, Option<Bytes>)],
    ) -> Result<(Arc<Partition>, AppendResult), i16> {
        let topic = broker
            .topic(OFFSETS_TOPIC)
            .ok_or(code(ResponseError::CoordinatorNotAvailable))?;
        let p = topic
            .partitions
            .get(partition_for(group, topic.partitions.len() as i32) as usize)
            .cloned()
            .ok_or(code(ResponseError::CoordinatorNotAvailable))?;
        let now = broker.now_ms();
        let specs: Vec<RecordSpec<'_>> = recs
            .iter()
            .map(|(k, v)| RecordSpec {
                key: Some(k),
                value: v.as_deref(),
                timestamp: now,
            })
            .collect();
        let batch = Bytes::from(sluice_storage::batch::build(
            &specs,
            BuildOptions::default(),
        ));
        match p.append(&batch) {
            Ok(r) => Ok((p, r)),
            Err(e) => {
                tracing::error!(group, error = %e, "append to {OFFSETS_TOPIC} failed");
                Err(code(ResponseError::CoordinatorNotAvailable))
            }
        }
    }

    // ---------------------------------------------------------------- membership

    pub async fn join(&self, broker: &Broker, group: &str, req: JoinRequest) -> JoinOutcome {
        if let Err(c) = self.offsets_partition(broker, group).await {
            return error_join(c, &req.member_id);
        }
        let wait = Duration::from_millis(
            req.rebalance_timeout_ms.max(req.session_timeout_ms).max(0) as u64,
        ) + Duration::from_millis(self.config.initial_rebalance_delay_ms.max(0) as u64)
            + PARK_GRACE;
        let now = broker.now_ms();
        let member_id = req.member_id.clone();
        // A classic member of a consumer group (KIP-848 online migration).
        let mixed = {
            let mut inner = self.lock();
            Self::is_consumer_group(&inner, group)
                .then(|| self.consumer_group_join(broker, &mut inner, group, req.clone(), now))
        };
        if let Some((out, written)) = mixed {
            return match migration::durable(written).await {
                Ok(()) => out,
                Err(c) => error_join(c, &member_id),
            };
        }
        let (reply, deliveries) = {
            let mut inner = self.lock();
            if Self::is_consumer_group(&inner, group) {
                return error_join(code(ResponseError::RebalanceInProgress), &member_id);
            }
            // An empty consumer-protocol group becomes a classic one.
            inner.consumers.remove(group);
            let g = inner
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Group::new(group, self.config, now));
            let reply = match g.join(req, now) {
                Reply::Now(o) => Ok(o),
                Reply::Parked { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner.join_waiters.insert((group.to_owned(), member_id), tx);
                    Err(rx)
                }
            };
            (reply, self.route(broker, &mut inner, group))
        };
        deliveries.deliver().await;
        match reply {
            Ok(o) => o,
            Err(rx) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(o)) => o,
                _ => error_join(code(ResponseError::RebalanceInProgress), &member_id),
            },
        }
    }

    pub async fn sync(&self, broker: &Broker, group: &str, req: SyncRequest) -> SyncOutcome {
        let err = |c| SyncOutcome {
            error: c,
            ..SyncOutcome::default()
        };
        if let Err(c) = self.offsets_partition(broker, group).await {
            return err(c);
        }
        let now = broker.now_ms();
        let (reply, deliveries, wait) = {
            let mut inner = self.lock();
            if Self::is_consumer_group(&inner, group) {
                let g = inner.consumers.get_mut(group).expect("checked");
                return g.classic_sync(req, now);
            }
            let Some(g) = inner.groups.get_mut(group) else {
                return err(code(ResponseError::UnknownMemberId));
            };
            let wait = g
                .members()
                .iter()
                .map(|m| m.rebalance_timeout_ms.max(0) as u64)
                .max()
                .map(Duration::from_millis)
                .unwrap_or_default()
                + PARK_GRACE;
            let reply = match g.sync(req, now) {
                Reply::Now(o) => Ok(o),
                Reply::Parked { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner.sync_waiters.insert((group.to_owned(), member_id), tx);
                    Err(rx)
                }
            };
            (reply, self.route(broker, &mut inner, group), wait)
        };
        deliveries.deliver().await;
        match reply {
            Ok(o) => o,
            Err(rx) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(o)) => o,
                _ => err(code(ResponseError::RebalanceInProgress)),
            },
        }
    }

    pub fn heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let now = broker.now_ms();
        let mut inner = self.lock();
        if let Some(c) = inner.consumers.get_mut(group).filter(|c| !c.is_empty()) {
            return c.classic_heartbeat(member_id, instance_id, generation, now);
        }
        match inner.groups.get_mut(group) {
            Some(g) => g.heartbeat(member_id, instance_id, generation, now),
            None => code(ResponseError::UnknownMemberId),
        }
    }

    pub async fn leave(
        &self,
        broker: &Broker,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        self.coordinates(broker, group).await?;
        let now = broker.now_ms();
        let mixed = {
            let mut inner = self.lock();
            Self::is_consumer_group(&inner, group)
                .then(|| self.consumer_group_leave(broker, &mut inner, group, members))
        };
        if let Some((codes, written)) = mixed {
            migration::durable(written).await?;
            return Ok(codes);
        }
        let (codes, deliveries) = {
            let mut inner = self.lock();
            let Some(g) = inner.groups.get_mut(group) else {
                return Err(code(ResponseError::UnknownMemberId));
            };
            let codes = g.leave(members, now);
            (codes, self.route(broker, &mut inner, group))
        };
        deliveries.deliver().await;
        Ok(codes)
    }

    /// Expires sessions and rebalance phases of every group; forgets groups
    /// that are empty and hold no offsets.
    pub async fn tick(&self, broker: &Broker) {
        let now = broker.now_ms();
        let mut all = Vec::new();
        // In a cluster, only the groups whose partition is led here and was
        // loaded in the current term: a copy from an earlier term (the
        // leadership went away and came back) is stale, its deadlines
        // included, until a request loads the partition afresh.
        let offsets = broker.topic(OFFSETS_TOPIC);
        let loaded_terms = self.lock().loaded_terms.clone();
        let led = |group: &str| {
            offsets.as_ref().is_none_or(|t| {
                t.partitions
                    .get(partition_for(group, t.partitions.len() as i32) as usize)
                    .is_some_and(|p| match p.coordinator_term() {
                        Ok(Some(term)) => loaded_terms.get(&p.index) == Some(&term),
                        Ok(None) => true,
                        Err(_) => false,
                    })
            })
        };
        {
            let mut inner = self.lock();
            // Requests parked for a group this broker no longer coordinates
            // (its partition's leadership moved) are answered now, as Kafka
            // does, not when their rebalance timeout runs out: the members
            // go to the new coordinator.
            let lost: Vec<(String, String)> = inner
                .join_waiters
                .keys()
                .filter(|(g, _)| !led(g))
                .cloned()
                .collect();
            for key in lost {
                if let Some(tx) = inner.join_waiters.remove(&key) {
                    let _ = tx.send(error_join(code(ResponseError::NotCoordinator), &key.1));
                }
            }
            let lost: Vec<(String, String)> = inner
                .sync_waiters
                .keys()
                .filter(|(g, _)| !led(g))
                .cloned()
                .collect();
            for key in lost {
                if let Some(tx) = inner.sync_waiters.remove(&key) {
                    let _ = tx.send(SyncOutcome::error(code(ResponseError::NotCoordinator)));
                }
            }
            let ids: Vec<String> = inner.groups.keys().filter(|g| led(g)).cloned().collect();
            for id in ids {
                if let Some(g) = inner.groups.get_mut(&id) {
                    g.tick(now);
                }
                all.push(self.route(broker, &mut inner, &id));
                // An empty group with no offsets stays (Empty, deletable)
                // until the next offsets cleanup could have removed it, as in
                // Kafka: a DeleteGroups right after its last member left
                // finds it.
                let keep_ms = broker.config.offsets_retention_check_interval_ms as i64;
                let idle = inner
                    .groups
                    .get(&id)
                    .is_some_and(|g| g.is_idle() && now - g.state_since() >= keep_ms);
                if idle && !inner.offsets.contains_key(&id) {
                    inner.groups.remove(&id);
                }
            }
            let ids: Vec<String> = inner.consumers.keys().filter(|g| led(g)).cloned().collect();
            for id in ids {
                let Some(g) = inner.consumers.get_mut(&id) else {
                    continue;
                };
                let expired = g.expired(now);
                if !expired.is_empty()
                    && let Some(recs) =
                        self.downgrade_instead(broker, &mut inner, &id, &expired, now)
                {
                    if let Err(c) = self.append(broker, &id, &recs) {
                        tracing::error!(group = %id, code = c, "could not store the downgraded group");
                    }
                    continue;
                }
                let Some(g) = inner.consumers.get_mut(&id) else {
                    continue;
                };
                g.tick(now);
                if g.take_dirty() {
                    let record = self.consumer_group_record(&id, g);
                    if let Err(c) = self.append(broker, &id, &[record]) {
                        tracing::error!(group = %id, code = c, "could not store the consumer group");
                    }
                }
                if g.is_empty() && !inner.offsets.contains_key(&id) {
                    inner.consumers.remove(&id);
                }
            }
        }
        for d in all {
            d.deliver().await;
        }
    }

    // -------------------------------------------------------------------- admin

    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let inner = self.lock();
        match inner.groups.get(group) {
            Some(g) => {
                let stable = g.state() == GroupState::Stable;
                let protocol = g.protocol().unwrap_or_default().to_owned();
                Some(GroupDescription {
                    state: g.state(),
                    protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
                    protocol: if stable {
                        protocol.clone()
                    } else {
                        String::new()
                    },
                    members: g
                        .members()
                        .iter()
                        .map(|m| MemberDescription {
                            member_id: m.id.clone(),
                            instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: if stable {
                                m.metadata(&protocol)
                            } else {
                                Bytes::new()
                            },
                            assignment: if stable {
                                m.assignment.clone()
                            } else {
                                Bytes::new()
                            },
                        })
                        .collect(),
                })
            }
            // A consumer group is no classic group: Dead, as Kafka answers.
            None if Self::is_consumer_group(&inner, group) => None,
            None if inner.offsets.contains_key(group) => Some(GroupDescription {
                state: GroupState::Empty,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// What the metrics show of every group this broker coordinates.
    pub fn stats(&self) -> Vec<GroupStats> {
        let inner = self.lock();
        let mut out: BTreeMap<&str, GroupStats> = BTreeMap::new();
        let blank = |id: &str| GroupStats {
            id: id.to_owned(),
            state: GroupState::Empty.name(),
            members: 0,
            rebalances: 0,
            offsets: Vec::new(),
        };
        for (id, g) in &inner.groups {
            if g.state() == GroupState::Dead {
                continue;
            }
            out.insert(
                id,
                GroupStats {
                    state: g.state().name(),
                    members: g.members().len(),
                    rebalances: g.generation().max(0) as u64,
                    ..blank(id)
                },
            );
        }
        for (id, g) in &inner.consumers {
            out.insert(
                id,
                GroupStats {
                    state: g.state(),
                    members: g.members().count(),
                    rebalances: g.epoch().max(0) as u64,
                    ..blank(id)
                },
            );
        }
        for (id, offsets) in &inner.offsets {
            out.entry(id).or_insert_with(|| blank(id)).offsets = offsets
                .iter()
                .map(|((t, p), c)| (t.clone(), *p, c.offset))
                .collect();
        }
        out.into_values().collect()
    }

    /// Every group: classic ones, consumer-protocol ones, and groups that
    /// only hold committed offsets.
    pub fn list(&self) -> Vec<ListedGroup> {
        let inner = self.lock();
        let mut out: Vec<ListedGroup> = inner
            .groups
            .iter()
            .filter(|(_, g)| g.state() != GroupState::Dead)
            .map(|(id, g)| ListedGroup {
                id: id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
                state: g.state().name(),
                kind: "classic",
            })
            .collect();
        for (id, g) in &inner.consumers {
            out.push(ListedGroup {
                id: id.clone(),
                protocol_type: "consumer".into(),
                state: g.state(),
                kind: "consumer",
            });
        }
        for id in inner.offsets.keys() {
            if !inner.groups.contains_key(id) && !inner.consumers.contains_key(id) {
                out.push(ListedGroup {
                    id: id.clone(),
                    protocol_type: String::new(),
                    state: GroupState::Empty.name(),
                    kind: "classic",
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// DeleteGroups for one group: only an empty group can be deleted.
    pub async fn delete_group(&self, broker: &Broker, group: &str) -> i16 {
        if let Err(c) = self.offsets_partition(broker, group).await {
            return c;
        }
        let now = broker.now_ms();
        let written = {
            let mut inner = self.lock();
            let has_offsets = inner.offsets.contains_key(group);
            match inner.consumers.get(group) {
                Some(c) if !c.is_empty() => return code(ResponseError::NonEmptyGroup),
                Some(_) => {
                    inner.consumers.remove(group);
                }
                None => {}
            }
            match inner.groups.get_mut(group) {
                Some(g) if g.state() == GroupState::Dead => {
                    return code(ResponseError::GroupIdNotFound);
                }
                Some(g) if g.state() != GroupState::Empty => {
                    return code(ResponseError::NonEmptyGroup);
                }
                Some(g) => g.mark_dead(now),
                None if !has_offsets => return code(ResponseError::GroupIdNotFound),
                None => {}
            }
            let mut recs: Vec<(Bytes, Option<Bytes>)> = inner
                .offsets
                .remove(group)
                .unwrap_or_default()
                .into_keys()
                .map(|(t, p)| (records::offset_key(group, &t, p), None))
                .collect();
            recs.push((records::group_key(group), None));
            recs.push((records::consumer_group_key(group), None));
            inner.groups.remove(group);
            match self.append(broker, group, &recs) {
                Ok(w) => w,
                Err(c) => return c,
            }
        };
        let (p, last) = written;
        match p.wait_acked(&last, Duration::from_secs(30)).await {
            Ok(()) => {
                tracing::info!(group, "deleted group");
                0
            }
            Err(_) => code(ResponseError::RequestTimedOut),
        }
    }
}

fn error_join(c: i16, member_id: &str) -> JoinOutcome {
    JoinOutcome {
        error: c,
        generation: -1,
        member_id: member_id.to_owned(),
        ..JoinOutcome::default()
    }
}

/// Calls `f` with every record of a partition, up to its high watermark,
/// with its offset.
pub fn for_each_record(
    p: &Partition,
    mut f: impl FnMut(i64, &kafka_protocol::records::Record),
) -> Result<(), crate::error::BrokerError> {
    let mut offset = p.log_start_offset();
    let end = p.high_watermark();
    while offset < end {
        let mut chunk = p.read(offset, 8 << 20)?.records;
        if chunk.is_empty() {
            break;
        }
        let sets = RecordBatchDecoder::decode_all(&mut chunk)
            .map_err(|e| crate::error::BrokerError::CorruptMessage(format!("{p:?}: {e}")))?;
        let before = offset;
        for r in sets.into_iter().flat_map(|s| s.records) {
            offset = offset.max(r.offset + 1);
            f(r.offset, &r);
        }
        if offset == before {
            break;
        }
    }
    Ok(())
}

/// Reads one partition of `__consumer_offsets` into `loaded` (later records
/// win; a transaction's offsets count once its COMMIT marker is read).
fn read_partition(p: &Partition, loaded: &mut Loaded) -> Result<(), crate::error::BrokerError> {
    for_each_record(p, |offset, r| {
        if r.control {
            if r.transactional
                && let Some(groups) = loaded.pending.get_mut(&r.producer_id)
            {
                let commit = r.key.as_deref().is_some_and(|k| k.len() >= 4 && k[3] == 1);
                let here: Vec<String> = groups
                    .iter()
                    .filter(|(_, (i, _))| *i == p.index)
                    .map(|(g, _)| g.clone())
                    .collect();
                for group in here {
                    let (_, offsets) = groups.remove(&group).unwrap_or_default();
                    if !commit {
                        continue;
                    }
                    let map = loaded.offsets.entry(group).or_default();
                    for (key, c) in offsets {
                        if map
                            .get(&key)
                            .is_none_or(|old| old.record_offset < c.record_offset)
                        {
                            map.insert(key, c);
                        }
                    }
                }
            }
            return;
        }
        let Some(key) = r.key.as_deref() else {
            return;
        };
        loaded.records += 1;
        match records::decode(key, r.value.as_deref()) {
            Ok(Entry::Offset {
                group,
                topic,
                partition,
                value: Some(v),
            }) if r.transactional => {
                loaded
                    .pending
                    .entry(r.producer_id)
                    .or_default()
                    .entry(group)
                    .or_insert_with(|| (p.index, HashMap::new()))
                    .1
                    .insert((topic, partition), committed(v, offset));
            }
            Ok(Entry::Offset {
                group,
                topic,
                partition,
                value,
            }) => {
                let map = loaded.offsets.entry(group).or_default();
                match value {
                    Some(v) => {
                        map.insert((topic, partition), committed(v, offset));
                    }
                    None => {
                        map.remove(&(topic, partition));
                    }
                }
            }
            Ok(Entry::Group { group, value }) => {
                loaded.snapshots.insert(group, value);
            }
            Ok(Entry::ConsumerGroup { group, value }) => {
                loaded.consumer_snapshots.insert(group, value);
            }
            Err(e) => {
                tracing::warn!(partition = ?p, offset, error = %e, "skipped a record")
            }
        }
    })
}

/// Ticks the coordinator until the broker is gone or shutdown starts.
pub async fn run_timers(broker: Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(b) = broker.upgrade() else { return };
        b.groups.tick(&b).await;
        let check = Duration::from_millis(b.config.offsets_retention_check_interval_ms.max(100));
        if last_expiry.elapsed() >= check {
            last_expiry = std::time::Instant::now();
            let retention = b.config.offsets_retention_minutes.saturating_mul(60_000);
            b.groups.expire_offsets(&b, retention).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partition() {
        // Java's "...".hashCode() and Math.abs(h) % 50.
        assert_eq!(java_hash("my-group"), -1_906_497_762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(java_hash("\u{fc}-group"), 1_699_569_262);
        assert_eq!(partition_for("orders-service", 50), 17);
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        for g in ["", "a", "orders-service", "ü-group"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
        assert_eq!(partition_for("a", 50), 97 % 50);
    }
}
