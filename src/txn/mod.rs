//! The transaction coordinator (KIP-98, KIP-447): transactional ids, their
//! producer ids and epochs, the partitions of each open transaction, and the
//! two-phase commit that ends it with markers on every partition.
//!
//! A transactional id lives on partition `abs(javaHashCode(id)) % N` of the
//! compacted topic `__transaction_state` (`transaction.state.log.*`), as in
//! Kafka; every change of its state is one record there, in Kafka's layout
//! (`records.rs`), and is durable before the request that caused it is
//! answered. At start the topic is replayed; a transaction caught between
//! its PrepareCommit/PrepareAbort record and its markers is completed by the
//! timer, and one left open is aborted once past its timeout.
//!
//! Ending a transaction: EndTxn stores PrepareCommit (or PrepareAbort),
//! writes a COMMIT (ABORT) marker on each partition of the transaction
//! ([`crate::partition::Partition::append_marker`]; for `__consumer_offsets`
//! partitions the group coordinator then makes the transaction's offsets
//! visible or drops them), waits for them to be durable, stores
//! CompleteCommit (CompleteAbort) and answers. A crash anywhere in between
//! leaves PrepareX in the log, and the markers are written again at start.
//!
//! Locking: the coordinator's mutex is held only for short, non-blocking
//! steps; it may append to a `__transaction_state` partition under it. A data
//! partition asks the coordinator to verify a transactional batch under its
//! own lock (KIP-890 part 1), so a partition lock may be taken before the
//! coordinator's, never after: markers are written without the coordinator's
//! lock.

mod markers;
pub mod partition;
mod peers;
pub mod records;
mod timers;
mod verify;

pub use timers::run_timers;
pub use verify::TxnCheck;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use sluice_storage::batch::{BuildOptions, RecordSpec, build};

use crate::broker::{Broker, Topic};
use crate::error::BrokerError;
use crate::partition::{AppendResult, Partition};

pub const TXN_TOPIC: &str = "__transaction_state";

/// How long a coordinator waits for its own records to become durable.
const PERSIST_WAIT: Duration = Duration::from_secs(30);

type Code = i16;

fn code(e: ResponseError) -> Code {
    e.code()
}

/// A transaction's state, with Kafka's numbering (the value's status byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_i8(v: i8) -> Result<Self, String> {
        Ok(match v {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            4 => Self::CompleteCommit,
            5 => Self::CompleteAbort,
            6 => Self::Dead,
            7 => Self::PrepareEpochFence,
            other => return Err(format!("unknown transaction state {other}")),
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
            Self::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        (0..=7)
            .filter_map(|v| Self::from_i8(v).ok())
            .find(|s| s.name() == name)
    }

    fn preparing(self) -> bool {
        matches!(
            self,
            Self::PrepareCommit | Self::PrepareAbort | Self::PrepareEpochFence
        )
    }
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The producer id before the last rotation (-1: none): a retried
    /// EndTxn of the transaction that used the epochs up names it.
    pub prev_producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partition) of the transaction under way.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the transaction under way began (-1: none).
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transaction version the client uses (2: KIP-890 part 2, an
    /// epoch bump per transaction; 0: not known to be 2).
    pub client_version: i16,
    /// The offset of the last record written for this id (-1: none since
    /// start): an answer that writes nothing waits for it to be durable.
    pub written: i64,
}

/// The broker settings the coordinator runs with (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    pub max_timeout_ms: i32,
    pub id_expiration_ms: i64,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub min_isr: i32,
    pub segment_bytes: u64,
}

impl TxnConfig {
    pub fn from(c: &crate::config::Config) -> Self {
        Self {
            max_timeout_ms: c.transaction_max_timeout_ms,
            id_expiration_ms: c.transactional_id_expiration_ms,
            num_partitions: c.transaction_state_log_num_partitions.max(1),
            replication_factor: c.transaction_state_log_replication_factor,
            min_isr: c.transaction_state_log_min_isr,
            segment_bytes: c.transaction_state_log_segment_bytes,
        }
    }
}

/// What an EndTxn found to do.
enum Decided {
    /// PrepareCommit / PrepareAbort stored: wait for it, then the markers.
    Prepared(AppendResult),
    /// Transaction version 2: only the epoch bumped (an empty abort).
    Bumped(AppendResult),
    /// Prepared earlier; the markers are outstanding.
    Complete,
    /// A retry of an EndTxn carried out: its record is at this offset.
    Done(i64),
}

/// A transaction as ListTransactions reports it.
#[derive(Debug, Clone)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
    pub start_ms: i64,
}

#[derive(Default)]
struct Inner {
    txns: HashMap<String, TxnMeta>,
    /// In a cluster: the Raft term in which each `__transaction_state`
    /// partition led here was loaded.
    loaded_terms: HashMap<i32, u64>,
    /// The epoch a transactional id had before the coordinator fenced it on
    /// a timeout (KIP-588: its producer may then claim the bumped epoch).
    fenced_from: HashMap<String, i16>,
}

pub struct TxnCoordinator {
    config: TxnConfig,
    inner: Mutex<Inner>,
    /// Connections to other brokers (markers, verification).
    peers: peers::Peers,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
            peers: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    // ------------------------------------------------------------ the log

    /// The `__transaction_state` partition of a transactional id, wherever
    /// it is led, creating the topic on first use (FindCoordinator).
    pub async fn txn_partition_anywhere(
        &self,
        broker: &Broker,
        transactional_id: &str,
    ) -> Result<Arc<Partition>, Code> {
        let topic = match broker.topic(TXN_TOPIC) {
            Some(t) => t,
            None => self.create_topic(broker).await?,
        };
        let i = crate::group::partition_for(transactional_id, topic.partitions.len() as i32);
        topic
            .partitions
            .get(i as usize)
            .cloned()
            .ok_or(code(ResponseError::CoordinatorNotAvailable))
    }

    /// The `__transaction_state` partition of a transactional id when this
    /// broker coordinates it: it leads the partition and has loaded what
    /// the partition holds since it became leader. NOT_COORDINATOR sends
    /// the client to FindCoordinator.
    pub async fn txn_partition(
        &self,
        broker: &Broker,
        transactional_id: &str,
    ) -> Result<Arc<Partition>, Code> {
        let p = self
            .txn_partition_anywhere(broker, transactional_id)
            .await?;
        if let Some(term) = p.coordinator_term()? {
            let loaded = self.lock().loaded_terms.get(&p.index) == Some(&term);
            if !loaded {
                self.load_led_partition(broker, &p, term).await?;
            }
        }
        Ok(p)
    }

    /// Whether this broker coordinates the id now (for the timers and
    /// ListTransactions: no waiting, no loading).
    fn leads_locked(&self, inner: &Inner, broker: &Broker, transactional_id: &str) -> bool {
        let Some(topic) = broker.topic(TXN_TOPIC) else {
            return false;
        };
        let i = crate::group::partition_for(transactional_id, topic.partitions.len() as i32);
        let Some(p) = topic.partitions.get(i as usize) else {
            return false;
        };
        p.check_serving().is_ok()
            && (!p.is_replicated() || inner.loaded_terms.get(&p.index) == Some(&p.status().term))
    }

    /// A new leader of a `__transaction_state` partition replays it once
    /// the entries of earlier terms are committed, replacing the ids of that
    /// partition. Transactions it finds prepared are completed by the timer;
    /// open ones are aborted when past their timeout.
    async fn load_led_partition(
        &self,
        broker: &Broker,
        p: &Arc<Partition>,
        term: u64,
    ) -> Result<(), Code> {
        if !p.caught_up_as_leader().await {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        let loaded = read_partition(p).map_err(|e| {
            tracing::error!(partition = ?p, error = %e, "could not load {TXN_TOPIC}");
            code(ResponseError::CoordinatorLoadInProgress)
        })?;
        let n = broker
            .topic(TXN_TOPIC)
            .map_or(1, |t| t.partitions.len() as i32);
        let index = p.index;
        let mut inner = self.lock();
        inner
            .txns
            .retain(|id, _| crate::group::partition_for(id, n) != index);
        let count = loaded.len();
        inner.txns.extend(loaded);
        inner.loaded_terms.insert(index, term);
        tracing::info!(partition = ?p, term, transactional_ids = count, "now coordinating the transactional ids of this partition");
        Ok(())
    }

    /// The coordinator epoch markers carry: the term of the id's
    /// `__transaction_state` partition (0 on a single broker), so a partition
    /// refuses markers from a coordinator that lost its place.
    fn coordinator_epoch(p: &Partition) -> i32 {
        p.leader_epoch()
    }

    async fn create_topic(&self, broker: &Broker) -> Result<Arc<Topic>, Code> {
        let rf = (self.config.replication_factor.max(1) as usize).min(broker.broker_count().max(1));
        let min_isr = self.config.min_isr.clamp(1, rf as i32);
        let configs = std::collections::BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            (
                "segment.bytes".to_owned(),
                self.config.segment_bytes.to_string(),
            ),
            ("min.insync.replicas".to_owned(), min_isr.to_string()),
        ]);
        broker
            .create_internal_topic(
                TXN_TOPIC,
                self.config.num_partitions,
                self.config.replication_factor,
                configs,
            )
            .await
    }

    /// Appends one id's record (None: its tombstone) to its partition.
    fn persist(
        &self,
        p: &Partition,
        transactional_id: &str,
        meta: Option<&TxnMeta>,
        now: i64,
    ) -> Result<AppendResult, Code> {
        let key = records::key(transactional_id);
        let value = meta.map(records::value);
        let batch = Bytes::from(build(
            &[RecordSpec {
                key: Some(&key),
                value: value.as_deref(),
                timestamp: now,
            }],
            BuildOptions::default(),
        ));
        p.append(&batch).map_err(|e| {
            tracing::error!(transactional_id, error = %e, "could not write to {TXN_TOPIC}");
            code(ResponseError::CoordinatorNotAvailable)
        })
    }

    /// Stores `meta` as the id's state (in memory at once, so later requests
    /// see it; their answers wait for their own, later, records).
    fn store(
        &self,
        inner: &mut Inner,
        p: &Partition,
        transactional_id: &str,
        mut meta: TxnMeta,
        now: i64,
    ) -> Result<AppendResult, Code> {
        meta.last_update_ms = now;
        let r = self.persist(p, transactional_id, Some(&meta), now)?;
        meta.written = r.last_offset;
        inner.txns.insert(transactional_id.to_owned(), meta);
        Ok(r)
    }

    async fn durable(p: &Partition, r: &AppendResult) -> Result<(), Code> {
        p.wait_acked(r, PERSIST_WAIT).await.map_err(|e| {
            tracing::error!(partition = ?p, error = %e, "a {TXN_TOPIC} record did not become durable");
            code(ResponseError::CoordinatorNotAvailable)
        })
    }

    async fn durable_at(p: &Partition, offset: i64) -> Result<(), Code> {
        if offset < 0 {
            return Ok(());
        }
        p.wait_durable(offset, PERSIST_WAIT)
            .await
            .map_err(|_| code(ResponseError::CoordinatorNotAvailable))
    }

    /// Replays `__transaction_state` (later records win, a null value
    /// removes the id).
    pub fn load(&self, topic: &Topic) -> Result<(), BrokerError> {
        let mut txns: HashMap<String, TxnMeta> = HashMap::new();
        for p in &topic.partitions {
            txns.extend(read_partition(p)?);
        }
        let pending = txns.values().filter(|m| m.state.preparing()).count();
        let open = txns
            .values()
            .filter(|m| m.state == TxnState::Ongoing)
            .count();
        tracing::info!(
            transactional_ids = txns.len(),
            open,
            completing = pending,
            "loaded {TXN_TOPIC}"
        );
        self.lock().txns = txns;
        Ok(())
    }

    // ------------------------------------------------------------ the APIs

    /// InitProducerId with a transactional id: the id's producer id with a
    /// new epoch (fencing any earlier incarnation), aborting a transaction
    /// the previous one left open. `expected` is the (producer id, epoch)
    /// a producer recovering from an error names (KIP-360), else None.
    pub async fn init_producer_id(
        &self,
        broker: &Broker,
        transactional_id: &str,
        timeout_ms: i32,
        mut expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), Code> {
        if transactional_id.is_empty() {
            return Err(code(ResponseError::InvalidRequest));
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(code(ResponseError::InvalidTransactionTimeout));
        }
        let p = self.txn_partition(broker, transactional_id).await?;
        // At most one abort of a transaction left open, then the bump.
        for _ in 0..2 {
            // Markers a previous coordinator left unwritten come first.
            let preparing = self
                .lock()
                .txns
                .get(transactional_id)
                .is_some_and(|m| m.state.preparing());
            if preparing {
                self.complete(broker, transactional_id)
                    .await
                    .map_err(|_| code(ResponseError::ConcurrentTransactions))?;
            }
            let now = broker.now_ms();
            let (r, result, abort) = {
                let mut inner = self.lock();
                let current = inner.txns.get(transactional_id).cloned();
                let fenced_from = inner.fenced_from.get(transactional_id).copied();
                match current {
                    None => {
                        if expected.is_some() {
                            return Err(code(ResponseError::InvalidProducerIdMapping));
                        }
                        let pid = broker.allocate_producer_id().map_err(|e| {
                            tracing::error!(error = %e, "could not allocate a producer id");
                            code(ResponseError::CoordinatorNotAvailable)
                        })?;
                        let meta = TxnMeta {
                            producer_id: pid,
                            prev_producer_id: -1,
                            epoch: 0,
                            timeout_ms,
                            state: TxnState::Empty,
                            partitions: BTreeSet::new(),
                            start_ms: -1,
                            last_update_ms: now,
                            client_version: 0,
                            written: -1,
                        };
                        let r = self.store(&mut inner, &p, transactional_id, meta, now)?;
                        (r, (pid, 0), false)
                    }
                    Some(m) => {
                        if let Some((pid, epoch)) = expected {
                            let valid = pid == m.producer_id
                                && (epoch == m.epoch || Some(epoch) == fenced_from);
                            if !valid {
                                return Err(code(ResponseError::ProducerFenced));
                            }
                        }
                        if m.state.preparing() {
                            return Err(code(ResponseError::ConcurrentTransactions));
                        }
                        if m.state == TxnState::Ongoing {
                            // Fence the previous incarnation and abort what
                            // it left open, then bump again below.
                            let mut next = m.clone();
                            next.epoch = m.epoch.saturating_add(1);
                            next.state = TxnState::PrepareAbort;
                            let r = self.store(&mut inner, &p, transactional_id, next, now)?;
                            (r, (m.producer_id, m.epoch), true)
                        } else {
                            let mut next = m.clone();
                            if m.epoch >= i16::MAX - 1 {
                                next.prev_producer_id = next.producer_id;
                                next.producer_id = broker.allocate_producer_id().map_err(|e| {
                                    tracing::error!(error = %e, "could not allocate a producer id");
                                    code(ResponseError::CoordinatorNotAvailable)
                                })?;
                                next.epoch = 0;
                            } else {
                                next.epoch = m.epoch + 1;
                            }
                            next.timeout_ms = timeout_ms;
                            next.state = TxnState::Empty;
                            next.partitions.clear();
                            next.start_ms = -1;
                            let result = (next.producer_id, next.epoch);
                            inner.fenced_from.remove(transactional_id);
                            let r = self.store(&mut inner, &p, transactional_id, next, now)?;
                            (r, result, false)
                        }
                    }
                }
            };
            Self::durable(&p, &r).await?;
            if !abort {
                tracing::info!(
                    transactional_id,
                    producer_id = result.0,
                    epoch = result.1,
                    "transactional producer initialised"
                );
                return Ok(result);
            }
            tracing::info!(
                transactional_id,
                "aborting the transaction a previous incarnation left open"
            );
            self.complete(broker, transactional_id).await?;
            // The producer named the epoch it had; the abort bumped it.
            expected = None;
        }
        Err(code(ResponseError::ConcurrentTransactions))
    }

    /// Checks a request's producer id and epoch against the id's state.
    fn check_producer(
        inner: &Inner,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TxnMeta, Code> {
        let Some(m) = inner.txns.get(transactional_id) else {
            return Err(code(ResponseError::InvalidProducerIdMapping));
        };
        if m.producer_id != producer_id {
            return Err(code(ResponseError::InvalidProducerIdMapping));
        }
        if m.epoch != epoch {
            return Err(code(ResponseError::ProducerFenced));
        }
        Ok(m.clone())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's
    /// `__consumer_offsets` partition). With `verify_only`, only tells
    /// whether each partition is in the transaction (KIP-890): one code per
    /// partition, in order.
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        verify_only: bool,
    ) -> Result<Vec<Code>, Code> {
        let p = self.txn_partition(broker, transactional_id).await?;
        let now = broker.now_ms();
        let r = {
            let mut inner = self.lock();
            let m = Self::check_producer(&inner, transactional_id, producer_id, epoch)?;
            if m.state.preparing() {
                return Err(code(ResponseError::ConcurrentTransactions));
            }
            if verify_only {
                let ongoing = m.state == TxnState::Ongoing;
                return Ok(partitions
                    .iter()
                    .map(|tp| {
                        if ongoing && m.partitions.contains(tp) {
                            0
                        } else {
                            code(ResponseError::InvalidTxnState)
                        }
                    })
                    .collect());
            }
            let mut next = m.clone();
            if m.state != TxnState::Ongoing {
                next.partitions.clear();
                next.start_ms = now;
                next.state = TxnState::Ongoing;
            }
            let before = next.partitions.len();
            next.partitions.extend(partitions.iter().cloned());
            if next.partitions.len() == before && m.state == TxnState::Ongoing {
                None
            } else {
                Some(self.store(&mut inner, &p, transactional_id, next, now)?)
            }
        };
        match r {
            Some(r) => Self::durable(&p, &r).await?,
            None => {
                let written = self
                    .lock()
                    .txns
                    .get(transactional_id)
                    .map_or(-1, |m| m.written);
                Self::durable_at(&p, written).await?;
            }
        }
        Ok(vec![0; partitions.len()])
    }

    /// EndTxn: commits or aborts the transaction under way.
    ///
    /// With `bump` (EndTxn v5, transaction version 2, KIP-890 part 2) the
    /// epoch goes up by one with every transaction: the markers carry the new
    /// epoch, which fences anything the producer still had in flight at the
    /// old one, and the answer tells the producer its (producer id, epoch)
    /// for the next transaction — a new producer id at epoch 0 once the
    /// epoch is used up. A retry of such an EndTxn comes with the epoch
    /// before the bump.
    pub async fn end_txn(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        bump: bool,
    ) -> Result<(i64, i16), Code> {
        let p = self.txn_partition(broker, transactional_id).await?;
        let now = broker.now_ms();
        let decided: Result<Decided, Code> = {
            let mut inner = self.lock();
            // A retry names the epoch before the bump, and the producer id
            // before a rotation if that bump used the epochs up.
            let retried = bump
                && inner.txns.get(transactional_id).is_some_and(|m| {
                    let same = m.producer_id == producer_id && m.epoch == epoch.wrapping_add(1);
                    let rotated =
                        m.prev_producer_id == producer_id && m.epoch == 0 && epoch == i16::MAX - 1;
                    (same || rotated)
                        && m.state
                            == if commit {
                                TxnState::CompleteCommit
                            } else {
                                TxnState::CompleteAbort
                            }
                });
            match Self::check_producer(&inner, transactional_id, producer_id, epoch) {
                Err(_) if retried => Ok(Decided::Done(
                    inner.txns.get(transactional_id).map_or(-1, |m| m.written),
                )),
                Err(c) => Err(c),
                Ok(m) => match (m.state, commit) {
                    (TxnState::Ongoing, _) => {
                        let mut next = m;
                        next.state = if commit {
                            TxnState::PrepareCommit
                        } else {
                            TxnState::PrepareAbort
                        };
                        if bump {
                            next.epoch = next.epoch.saturating_add(1);
                            next.client_version = 2;
                        }
                        self.store(&mut inner, &p, transactional_id, next, now)
                            .map(Decided::Prepared)
                    }
                    // Transaction version 2: aborting with nothing under way
                    // only bumps the epoch.
                    (
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort,
                        false,
                    ) if bump => {
                        let mut next = m;
                        next.state = TxnState::CompleteAbort;
                        next.client_version = 2;
                        if next.epoch >= i16::MAX - 1 {
                            next.prev_producer_id = next.producer_id;
                            next.producer_id = broker.allocate_producer_id().map_err(|e| {
                                tracing::error!(error = %e, "could not allocate a producer id");
                                code(ResponseError::CoordinatorNotAvailable)
                            })?;
                            next.epoch = 0;
                        } else {
                            next.epoch += 1;
                        }
                        self.store(&mut inner, &p, transactional_id, next, now)
                            .map(Decided::Bumped)
                    }
                    (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                        Ok(Decided::Done(m.written))
                    }
                    // A retry after the coordinator moved: the outcome is
                    // stored, the markers may not be; finish them now.
                    (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                        Ok(Decided::Complete)
                    }
                    (state, _) => {
                        warn_limited!(
                            transactional_id,
                            state = state.name(),
                            commit,
                            "EndTxn without a transaction under way"
                        );
                        Err(code(ResponseError::InvalidTxnState))
                    }
                },
            }
        };
        match decided? {
            Decided::Prepared(r) => {
                Self::durable(&p, &r).await?;
                // The outcome is decided; markers are the coordinator's to
                // finish. They are written before the answer, so the
                // producer's next transaction does not meet
                // CONCURRENT_TRANSACTIONS; if they fail the timer tries again.
                if let Err(c) = self.complete(broker, transactional_id).await {
                    tracing::warn!(
                        transactional_id,
                        code = c,
                        "markers not all written; will retry"
                    );
                }
            }
            Decided::Bumped(r) => Self::durable(&p, &r).await?,
            Decided::Complete => self
                .complete(broker, transactional_id)
                .await
                .map_err(|_| code(ResponseError::ConcurrentTransactions))?,
            Decided::Done(written) => Self::durable_at(&p, written).await?,
        }
        Ok(self
            .lock()
            .txns
            .get(transactional_id)
            .map_or((-1, -1), |m| (m.producer_id, m.epoch)))
    }

    // ------------------------------------------------------------ admin

    /// DescribeTransactions: the id's state, or TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe(&self, broker: &Broker, transactional_id: &str) -> Result<TxnMeta, Code> {
        self.txn_partition(broker, transactional_id).await?;
        self.lock()
            .txns
            .get(transactional_id)
            .cloned()
            .ok_or(code(ResponseError::TransactionalIdNotFound))
    }

    /// Every transactional id this broker coordinates.
    pub fn list(&self, broker: &Broker) -> Vec<ListedTxn> {
        let inner = self.lock();
        let mut out: Vec<ListedTxn> = inner
            .txns
            .iter()
            .filter(|(id, _)| self.leads_locked(&inner, broker, id))
            .map(|(id, m)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: m.producer_id,
                state: m.state,
                start_ms: m.start_ms,
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

/// The transactional ids one `__transaction_state` partition holds (later
/// records win, a null value removes the id).
fn read_partition(p: &Partition) -> Result<HashMap<String, TxnMeta>, BrokerError> {
    let mut txns: HashMap<String, TxnMeta> = HashMap::new();
    crate::group::for_each_record(p, |offset, r| {
        if r.control {
            return;
        }
        let Some(key) = r.key.as_deref() else {
            return;
        };
        let id = match records::decode_key(key) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(partition = ?p, offset, error = %e, "skipped a record");
                return;
            }
        };
        match r.value.as_deref().map(records::decode_value) {
            None => {
                txns.remove(&id);
            }
            Some(Ok(mut m)) => {
                m.written = offset;
                txns.insert(id, m);
            }
            Some(Err(e)) => {
                tracing::warn!(partition = ?p, offset, error = %e, "skipped a record")
            }
        }
    })?;
    Ok(txns)
}
