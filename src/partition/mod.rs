//! One partition on this broker: its log, its idempotent-producer state and its
//! high watermark.
//!
//! Appends and reads run under a std mutex: both are short (a positional write
//! into the page cache, or slicing a memory map) and never wait on the disk. The
//! one slow operation, fsync, runs on the broker's flusher thread without the
//! lock, so appends go on while a sync is in flight and every append made
//! meanwhile rides on the next sync (group commit).
//!
//! The high watermark is the durable offset: consumers see, and acks=all waits
//! for, only what has reached the disk. On a single node that is the Raft commit
//! point of a quorum of one. The fsyncs of every partition of the broker run
//! together, in rounds on one flusher thread ([`flush`]). A topic that asks for
//! Kafka's flush policy (`flush.messages` above 1) has its writes acknowledged
//! and visible from memory, flushed later as `flush.messages`/`flush.ms` say.
//!
//! In a cluster a partition is a replica of its Raft group ([`raft`]): its log
//! lives in the Raft store, the host thread appends to it, and the high
//! watermark is the commit point. A partition assigned to other brokers only
//! is a placeholder that answers NOT_LEADER_OR_FOLLOWER.

mod flush;
mod raft;
mod txn;
pub use flush::Flusher;
pub use raft::ReplicaSpec;
pub use txn::{ReadCommitted, TxnGuard};

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use sluice_storage::{AppendOptions, BATCH_HEADER_LEN, BatchHeader, Clock, Log};
use tokio::sync::{Notify, watch};

use crate::error::BrokerError;
use crate::producer_state::{ActiveProducer, ProducerBatch, ProducerStateManager, SequenceCheck};
use crate::replication::host::GroupStatus;
use crate::replication::store::StoreLog;
use crate::topic_config::TopicConfig;
use crate::txn::partition::PartitionTxns;

pub use raft::Replicated;

/// Checks a transactional batch before it is appended, under the partition's
/// lock, with the partition's transactions at hand (see
/// [`Partition::append_verified`]).
pub type Verify<'a> = dyn Fn(&BatchHeader, &PartitionTxns) -> Result<(), BrokerError> + 'a;

/// Result of appending the batches of one produce request to one partition.
#[derive(Debug, Default)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// For a replicated partition, the Raft entry (index, term) of the last
    /// batch appended: acknowledged once committed with that term.
    pub entry: Option<(u64, u64)>,
    /// Proposals sent at predicted offsets whose outcome is still to come
    /// (see [`Partition::confirm`]).
    pub unconfirmed: Mutex<Vec<raft::Confirmation>>,
}

/// What a fetch of one partition returns.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Bytes,
    /// The segment file the records lie in (they may be sent from it).
    pub file: Option<sluice_storage::open_files::OpenFile>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

struct State {
    producers: ProducerStateManager,
    /// Open and aborted transactions (rebuilt with the producer state).
    txns: PartitionTxns,
    config: TopicConfig,
    /// The Raft term the producer state was rebuilt in (replicated only).
    producers_term: u64,
    /// Where the leader's next proposal lands (replicated only).
    next: Option<raft::Next>,
}

/// Where the partition's log lives.
enum Backing {
    /// A single broker's log.
    Local(Box<Mutex<Log>>),
    /// A replica of the partition's Raft group.
    Raft(Replicated),
    /// Not on this broker.
    Remote,
}

/// The log under its lock, wherever it lives.
pub enum LogGuard<'a> {
    Local(MutexGuard<'a, Log>),
    Raft(StoreLog<'a>),
}

impl Deref for LogGuard<'_> {
    type Target = Log;
    fn deref(&self) -> &Log {
        match self {
            LogGuard::Local(l) => l,
            LogGuard::Raft(l) => l,
        }
    }
}

impl DerefMut for LogGuard<'_> {
    fn deref_mut(&mut self) -> &mut Log {
        match self {
            LogGuard::Local(l) => l,
            LogGuard::Raft(l) => l,
        }
    }
}

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub dir: PathBuf,
    /// The assigned replicas (node ids, the preferred leader first; during a
    /// reassignment the target's, then those leaving); empty on a single
    /// broker. See [`Self::replicas`].
    replicas: Mutex<Vec<i32>>,
    /// The in-sync replicas its leader last published (a cluster), if it
    /// did in its current epoch.
    isr: Mutex<Option<Vec<i32>>>,
    state: Mutex<State>,
    backing: Backing,
    /// The Raft group as this broker sees it (replicated), or the preferred
    /// leader (remote).
    status: watch::Sender<GroupStatus>,
    high_watermark: watch::Sender<i64>,
    /// The broker's flusher (a partition stored alone) and this partition
    /// as it queues itself there.
    flusher: Option<Flusher>,
    me: Weak<Partition>,
    /// Queued for the flusher's next round.
    flush_queued: AtomicBool,
    /// When a flush.ms round is queued for (i64::MAX: none).
    flush_due_ms: AtomicI64,
    closed: AtomicBool,
    clock: Arc<dyn Clock>,
    /// Woken whenever any partition's high watermark advances (fetch long polls).
    data_available: Arc<Notify>,
    /// Traffic counts for the metrics (see [`crate::metrics`]).
    pub stats: crate::metrics::PartitionStats,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.index)
    }
}

/// Walks the v2 batches of a produce request's records field.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BrokerError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < 17 {
            return Err(BrokerError::CorruptMessage(format!(
                "{} trailing bytes are too short for a batch",
                rest.len()
            )));
        }
        let magic = rest[16];
        if magic != 2 {
            return Err(BrokerError::InvalidRecord(format!(
                "record batch magic {magic}; only magic 2 is accepted"
            )));
        }
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < (BATCH_HEADER_LEN as i32 - 12) || rest.len() < 12 + len as usize {
            return Err(BrokerError::CorruptMessage(format!(
                "batch length {len} does not fit the {} bytes sent",
                rest.len()
            )));
        }
        let size = 12 + len as usize;
        let batch = records.slice(pos..pos + size);
        let header =
            BatchHeader::parse(&batch).map_err(|e| BrokerError::CorruptMessage(e.to_string()))?;
        header
            .validate_crc(&batch)
            .map_err(|e| BrokerError::CorruptMessage(e.to_string()))?;
        out.push((header, batch));
        pos += size;
    }
    if out.is_empty() {
        return Err(BrokerError::InvalidRecord("no record batch".into()));
    }
    Ok(out)
}

fn producer_batch(h: &BatchHeader) -> ProducerBatch {
    ProducerBatch {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        last_offset_delta: h.last_offset_delta,
        max_timestamp: h.max_timestamp,
    }
}

impl Partition {
    /// The assigned replicas (node ids, the preferred leader first); empty
    /// on a single broker.
    pub fn replicas(&self) -> Vec<i32> {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The replicas as the cluster image now says (a reassignment).
    pub fn set_replicas(&self, replicas: Vec<i32>) {
        *self.replicas.lock().unwrap_or_else(|p| p.into_inner()) = replicas;
    }

    /// The in-sync replicas as the cluster image says (None: its leader
    /// has not published them in its epoch yet).
    pub fn isr(&self) -> Option<Vec<i32>> {
        self.isr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Follows the cluster image's in-sync replicas (no allocation when
    /// they did not change).
    pub fn set_isr(&self, isr: Option<&[u64]>) {
        let mut mine = self.isr.lock().unwrap_or_else(|p| p.into_inner());
        let same = match (&*mine, isr) {
            (None, None) => true,
            (Some(a), Some(b)) => a.iter().map(|&x| x as u64).eq(b.iter().copied()),
            _ => false,
        };
        if !same {
            *mine = isr.map(|b| b.iter().map(|&x| x as i32).collect());
        }
    }

    /// Opens (or creates) the partition's log and rebuilds its producer state.
    pub fn open(
        data_dir: &Path,
        topic: &str,
        index: i32,
        config: TopicConfig,
        clock: Arc<dyn Clock>,
        data_available: Arc<Notify>,
        flusher: Flusher,
    ) -> Result<Arc<Self>, BrokerError> {
        let dir = data_dir.join(format!("{topic}-{index}"));
        let log = Log::open(&dir, config.log_config(), clock.clone())?;
        let mut producers = ProducerStateManager::default();
        let mut txns = PartitionTxns::default();
        rebuild_producer_state(&log, &mut producers, &mut txns)?;
        let hw = log.log_end_offset();
        let (high_watermark, _) = watch::channel(hw);
        Ok(Arc::new_cyclic(|me| Self {
            topic: topic.into(),
            index,
            dir,
            replicas: Mutex::new(Vec::new()),
            isr: Mutex::new(None),
            state: Mutex::new(State {
                producers,
                txns,
                config,
                producers_term: 0,
                next: None,
            }),
            backing: Backing::Local(Box::new(Mutex::new(log))),
            status: watch::channel(GroupStatus::default()).0,
            high_watermark,
            flusher: Some(flusher),
            me: me.clone(),
            flush_queued: AtomicBool::new(false),
            flush_due_ms: AtomicI64::new(i64::MAX),
            stats: Default::default(),
            closed: AtomicBool::new(false),
            clock,
            data_available,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would leave the log half-written; the
        // storage layer does not panic on input, so poisoning means a bug: keep
        // serving rather than cascade, the log's own recovery checks still hold.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log, wherever it lives (housekeeping runs on every replica).
    /// Taken after the state lock when both are needed.
    fn log(&self) -> Result<LogGuard<'_>, BrokerError> {
        match &self.backing {
            Backing::Local(l) => Ok(LogGuard::Local(l.lock().unwrap_or_else(|p| p.into_inner()))),
            Backing::Raft(r) => Ok(LogGuard::Raft(r.store.log())),
            Backing::Remote => Err(BrokerError::NotLeaderOrFollower),
        }
    }

    /// The log for a client's read: only the leader serves them, and only
    /// once it has committed an entry of its own term (until then it may not
    /// know all that the group committed, such as a DeleteRecords).
    fn serving(&self) -> Result<LogGuard<'_>, BrokerError> {
        if let Backing::Raft(_) = &self.backing
            && !self.status().leader_ready
        {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        self.log()
    }

    /// NOT_LEADER_OR_FOLLOWER unless this broker serves the partition's
    /// clients.
    pub fn check_serving(&self) -> Result<(), BrokerError> {
        // No lock: this runs before every append and produce check.
        match &self.backing {
            Backing::Local(_) => Ok(()),
            Backing::Raft(_) if self.status().is_leader => Ok(()),
            _ => Err(BrokerError::NotLeaderOrFollower),
        }
    }

    /// NOT_LEADER_OR_FOLLOWER unless this broker serves the partition's
    /// reads (see `serving`).
    pub fn check_reads(&self) -> Result<(), BrokerError> {
        self.serving().map(drop)
    }

    /// The Raft group's status as this broker last saw it.
    pub fn status(&self) -> GroupStatus {
        *self.status.borrow()
    }

    /// The leader's node id (None while there is none) and the leader epoch;
    /// `me` answers for a single broker.
    pub fn leader(&self, me: i32) -> (Option<i32>, i32) {
        match &self.backing {
            Backing::Local(_) => (Some(me), 0),
            _ => {
                let s = self.status();
                (s.leader.map(|l| l as i32), s.term as i32)
            }
        }
    }

    /// Bytes of this partition's log on this broker's disk; None when the
    /// broker holds no replica of it.
    pub fn size_on_disk(&self) -> Option<u64> {
        let log = self.log().ok()?;
        Some(log.segments().iter().map(|s| s.size_bytes).sum())
    }

    /// The leader epoch clients see: the Raft term in a cluster, 0 on a
    /// single broker.
    pub fn leader_epoch(&self) -> i32 {
        self.leader(0).1
    }

    /// Kafka's check of a client's `current_leader_epoch` (-1: none given):
    /// FENCED_LEADER_EPOCH when the client is behind, UNKNOWN_LEADER_EPOCH
    /// when it is ahead of what this broker knows.
    /// A partition this broker holds no replica of answers
    /// NOT_LEADER_OR_FOLLOWER later instead, as in Kafka.
    pub fn check_leader_epoch(&self, current: i32) -> Result<(), i16> {
        let epoch = self.leader_epoch();
        if current < 0 || current == epoch || matches!(self.backing, Backing::Remote) {
            Ok(())
        } else if current < epoch {
            Err(ResponseError::FencedLeaderEpoch.code())
        } else {
            Err(ResponseError::UnknownLeaderEpoch.code())
        }
    }

    /// Replicas that can take a write now (what min.insync.replicas is
    /// checked against): 1 on a single broker.
    pub fn reachable_replicas(&self) -> usize {
        match &self.backing {
            Backing::Local(_) => 1,
            Backing::Raft(_) => self.status().reachable,
            Backing::Remote => 0,
        }
    }

    /// Whether the partition is replicated by a Raft group on this broker.
    pub fn is_replicated(&self) -> bool {
        matches!(self.backing, Backing::Raft(_))
    }

    /// Whether this broker holds a replica (or the single copy).
    pub fn is_hosted(&self) -> bool {
        !matches!(self.backing, Backing::Remote)
    }

    pub fn config(&self) -> TopicConfig {
        self.lock().config.clone()
    }

    /// Applies a topic config changed live (AlterConfigs).
    pub fn set_config(&self, config: TopicConfig) {
        let mut state = self.lock();
        if let Ok(mut log) = self.log() {
            log.set_config(config.log_config());
        }
        state.config = config;
    }

    /// Forgets the idempotent producers idle for `expiration_ms`
    /// (producer.id.expiration.ms) that have no transaction open here, in
    /// the leader's state and in the log's (the next snapshot leaves them
    /// out). Returns how many the log forgot.
    pub fn expire_producers(&self, now: i64, expiration_ms: i64) -> Result<usize, BrokerError> {
        if !self.is_hosted() {
            return Ok(0);
        }
        let mut state = self.lock();
        let txns = &state.txns;
        let open: Vec<i64> = state
            .producers
            .active_producers()
            .iter()
            .map(|p| p.producer_id)
            .filter(|&id| txns.is_open(id))
            .collect();
        state
            .producers
            .expire(now, expiration_ms, |id| open.contains(&id));
        Ok(self.log()?.expire_producers(now, expiration_ms))
    }

    /// Deletes whole segments past retention.ms / retention.bytes (never the
    /// active one, never at or above the high watermark). Returns the new log
    /// start offset when it moved.
    pub fn apply_retention(&self, now: i64) -> Result<Option<i64>, BrokerError> {
        if !self.is_hosted() {
            return Ok(None);
        }
        let hw = self.high_watermark();
        let state = self.lock();
        let c = &state.config;
        let policy = crate::retention::RetentionPolicy {
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            delete: c.cleanup_delete,
        };
        let mut log = self.log()?;
        let plan = crate::retention::plan(&log.segments(), policy, now);
        if plan.roll_active {
            log.roll()?;
        }
        // Nor anything of a transaction still open (the last stable
        // offset): its first records stay until a marker ends it.
        let stable = state.txns.last_stable_offset(hw);
        let Some(below) = plan.delete_below.map(|o| o.min(stable)) else {
            return Ok(None);
        };
        let before = log.log_start_offset();
        let deleted = match &self.backing {
            Backing::Raft(r) => {
                // The deleted prefix becomes the Raft snapshot point.
                drop(log);
                let n = r.store.delete_below(below).map_err(raft::store_error)?;
                log = self.log()?;
                n
            }
            _ => log.delete_segments_below(below)?,
        };
        let after = log.log_start_offset();
        drop(log);
        drop(state);
        if deleted > 0 {
            tracing::info!(partition = ?self, segments = deleted, log_start_offset = after, "retention deleted old segments");
        }
        Ok((after > before).then_some(after))
    }

    /// One log-cleaner pass (see [`crate::cleaner`]) if cleanup.policy
    /// includes compact and the plan says the log is dirty enough. The reading
    /// and rewriting run without the lock; each swap takes it.
    pub fn compact(
        &self,
        now: i64,
        map_memory: u64,
    ) -> Result<Option<crate::cleaner::CleanStats>, BrokerError> {
        use crate::cleaner::{self, Bounds, CompactionPolicy};
        if !self.is_hosted() {
            return Ok(None);
        }
        let policy = {
            let state = self.lock();
            let c = &state.config;
            if !c.cleanup_compact {
                return Ok(None);
            }
            CompactionPolicy {
                min_cleanable_dirty_ratio: c.min_cleanable_dirty_ratio,
                min_compaction_lag_ms: c.min_compaction_lag_ms,
                max_compaction_lag_ms: c.max_compaction_lag_ms,
                delete_retention_ms: c.delete_retention_ms,
                segment_bytes: c.segment_bytes,
            }
        };
        // Transactions: the pass reads them from the segments it cleans.
        let high_watermark = self.high_watermark();
        let tombstone_limit = match &self.backing {
            // Only what every replica holds: see `cleaner::clean`.
            Backing::Raft(_) => self.status().fully_replicated,
            _ => high_watermark,
        };
        let bounds = Bounds {
            high_watermark,
            tombstone_limit,
        };
        cleaner::run_pass(|| self.log(), &policy, bounds, map_memory, now)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the
    /// high watermark; -1 means the high watermark). Returns the new log
    /// start. A replicated partition moves it on every replica through Raft
    /// (see [`raft`]), and answers once that is committed.
    pub async fn delete_records(&self, offset: i64, timeout: Duration) -> Result<i64, BrokerError> {
        if let Backing::Raft(r) = &self.backing {
            return self.delete_records_replicated(r, offset, timeout).await;
        }
        let mut log = self.serving()?;
        let target = self.delete_records_target(offset, log.log_start_offset())?;
        log.set_log_start_offset(target)?;
        Ok(log.log_start_offset())
    }

    /// The offset DeleteRecords asks for, checked against the high watermark.
    fn delete_records_target(&self, offset: i64, start: i64) -> Result<i64, BrokerError> {
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(BrokerError::OffsetOutOfRange {
                offset: target,
                start,
                end: hw,
            });
        }
        Ok(target)
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// -1 for a partition not on this broker.
    pub fn log_start_offset(&self) -> i64 {
        self.log().map_or(-1, |l| l.log_start_offset())
    }

    /// -1 for a partition not on this broker.
    pub fn log_end_offset(&self) -> i64 {
        self.log().map_or(-1, |l| l.log_end_offset())
    }

    /// Validates and appends the batches of one produce request, atomically with
    /// respect to other producers of this partition.
    pub fn append(&self, records: &Bytes) -> Result<AppendResult, BrokerError> {
        self.append_checked(records, None)
    }

    /// [`Self::append`], with each transactional batch first checked by
    /// `verify` under the partition's lock (KIP-890 part 1: the transaction
    /// coordinator confirms the partition is part of the producer's
    /// transaction under way, and no marker can come in between).
    pub fn append_verified(
        &self,
        records: &Bytes,
        verify: &Verify<'_>,
    ) -> Result<AppendResult, BrokerError> {
        self.append_checked(records, Some(verify))
    }

    fn append_checked(
        &self,
        records: &Bytes,
        verify: Option<&Verify<'_>>,
    ) -> Result<AppendResult, BrokerError> {
        self.check_serving()?;
        let mut batches = split_batches(records)?;
        let (codec, compacted, max_sent) = {
            let state = self.lock();
            (
                state.config.compression,
                state.config.cleanup_compact,
                state.config.max_message_bytes,
            )
        };
        if compacted {
            // As in Kafka: the cleaner could never tell which keyless record
            // is the latest, so a compacted topic refuses them. Outside the
            // lock, like recompression: both read every record.
            // Every keyless record is named (KIP-467), by its index in the
            // batch.
            let mut errors = Vec::new();
            for (h, b) in &batches {
                if h.is_control() {
                    continue;
                }
                let recs =
                    crate::cleaner::records::records(b, h).map_err(BrokerError::CorruptMessage)?;
                for (i, r) in recs.iter().enumerate() {
                    if r.key.is_none() {
                        errors.push((
                            i as i32,
                            format!(
                                "Compacted topic cannot accept message without key in topic partition {}-{}.",
                                self.topic, self.index
                            ),
                        ));
                    }
                }
            }
            if !errors.is_empty() {
                return Err(BrokerError::InvalidRecords(errors));
            }
        }
        // The batch as the producer sent it must fit too: recompression
        // could otherwise let an oversized event in (Kafka checks both).
        if let Some((_, b)) = batches.iter().find(|(_, b)| b.len() > max_sent) {
            return Err(BrokerError::MessageTooLarge {
                size: b.len(),
                max: max_sent,
            });
        }
        if let Some(codec) = codec {
            // Outside the lock: recompression is the one costly step.
            for (_, b) in &mut batches {
                *b = crate::recompress::recompress(b, codec)?;
            }
        }
        let mut state = self.lock();
        let (max_message_bytes, append_time) =
            (state.config.max_message_bytes, state.config.log_append_time);
        let state = &mut *state;
        for (h, b) in &batches {
            if h.is_control() {
                // Only the transaction coordinator writes markers (as Kafka
                // refuses control batches from clients).
                return Err(BrokerError::InvalidRecord(
                    "a client may not produce control batches".into(),
                ));
            }
            if b.len() > max_message_bytes {
                return Err(BrokerError::MessageTooLarge {
                    size: b.len(),
                    max: max_message_bytes,
                });
            }
            if h.base_offset != 0 {
                return Err(BrokerError::InvalidRecord(format!(
                    "a produced batch must have base offset 0, not {}",
                    h.base_offset
                )));
            }
            if h.record_count <= 0 || h.last_offset_delta != h.record_count - 1 {
                return Err(BrokerError::InvalidRecord(format!(
                    "record count {} does not match last offset delta {}",
                    h.record_count, h.last_offset_delta
                )));
            }
        }
        if let (Backing::Raft(r), true) = (
            &self.backing,
            batches.iter().any(|(h, _)| h.is_transactional()),
        ) {
            // The transactions of this term's log, before they are checked.
            self.refresh_producer_state(r, state)?;
        }
        for (h, _) in &batches {
            if h.is_transactional() {
                match verify {
                    Some(verify) => verify(h, &state.txns)?,
                    None => {
                        return Err(BrokerError::InvalidRecord(
                            "a transactional batch needs a transactional id".into(),
                        ));
                    }
                }
            }
        }
        let log_append_time = append_time.then(|| self.clock.now_ms());
        if let Backing::Raft(r) = &self.backing {
            return self.append_replicated(r, state, &batches, log_append_time);
        }
        let opts = AppendOptions {
            leader_epoch: 0,
            log_append_time,
        };
        let mut log = self.log()?;
        let mut first: Option<i64> = None;
        let mut last = -1;
        for (h, batch) in &batches {
            let mut pb = producer_batch(h);
            pb.max_timestamp = log_append_time.unwrap_or(pb.max_timestamp);
            match state.producers.check(&pb)? {
                SequenceCheck::Duplicate(meta) => {
                    tracing::debug!(partition = ?self, producer_id = pb.producer_id, seq = pb.base_sequence, "duplicate batch acknowledged with its original offset");
                    first.get_or_insert(meta.first_offset);
                    last = meta.last_offset;
                }
                SequenceCheck::Append => {
                    let info = log.append(batch, &opts)?;
                    state
                        .producers
                        .observe(&pb, info.first_offset, info.last_offset);
                    state
                        .txns
                        .observe(h, info.first_offset, info.last_offset, None);
                    first.get_or_insert(info.first_offset);
                    last = info.last_offset;
                }
            }
        }
        let log_start_offset = log.log_start_offset();
        self.after_local_write(&state.config, &log);
        drop(log);
        Ok(AppendResult {
            base_offset: first.unwrap_or(-1),
            last_offset: last,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset,
            ..AppendResult::default()
        })
    }

    /// The idempotent producers this partition remembers, by producer id
    /// (DescribeProducers). Only the leader keeps producer state; a replica
    /// that became leader and has not appended yet rebuilds it first.
    pub fn active_producers(&self) -> Result<Vec<ActiveProducer>, BrokerError> {
        self.check_serving()?;
        let mut state = self.lock();
        if let Backing::Raft(r) = &self.backing {
            self.refresh_producer_state(r, &mut state)?;
        }
        Ok(state.producers.active_producers())
    }

    /// Waits until `offset` is below the high watermark (durable), or `timeout`.
    pub async fn wait_durable(&self, offset: i64, timeout: Duration) -> Result<(), BrokerError> {
        let mut rx = self.high_watermark.subscribe();
        let wait = rx.wait_for(|hw| *hw > offset);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::UnknownTopicOrPartition),
            Err(_) => Err(BrokerError::RequestTimedOut),
        }
    }

    /// Waits until an append is acknowledged: durable on a single broker;
    /// committed by the Raft group, still in the term it was proposed in,
    /// on a replicated partition (a leader change may have replaced it, and
    /// the producer must retry).
    pub async fn wait_acked(&self, r: &AppendResult, timeout: Duration) -> Result<(), BrokerError> {
        self.confirm(r).await?;
        let (Some((index, term)), Backing::Raft(rep)) = (r.entry, &self.backing) else {
            return self.wait_durable(r.last_offset, timeout).await;
        };
        // Committed, or no longer this term's leader: then the outcome is
        // not this broker's to tell, and the producer retries at the new
        // leader (as Kafka answers pending writes when a leader steps down).
        // By entry index, not by offset: one of Raft's own entries (a
        // DeleteRecords command) takes no offset, so the high watermark
        // does not move when it commits.
        let mut rx = self.status.subscribe();
        let settled = rx.wait_for(|s| s.commit_index >= index || !s.is_leader || s.term != term);
        let s = match tokio::time::timeout(timeout, settled).await {
            Ok(Ok(s)) => *s,
            Ok(Err(_)) => return Err(BrokerError::NotLeaderOrFollower),
            Err(_) => return Err(BrokerError::RequestTimedOut),
        };
        if s.commit_index < index {
            tracing::info!(partition = ?self, index, term, "leadership lost before an append committed");
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if rep.store.entry_term(index) != Some(term) {
            tracing::info!(partition = ?self, index, term, "an appended entry was replaced by a new leader before it committed");
            return Err(BrokerError::NotLeaderOrFollower);
        }
        Ok(())
    }

    /// Reads whole batches from `offset`, never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchResult, BrokerError> {
        let log = self.serving()?;
        let hw = self.high_watermark();
        let log_start_offset = log.log_start_offset();
        let leo = log.log_end_offset();
        if offset < log_start_offset || offset > leo {
            return Err(BrokerError::OffsetOutOfRange {
                offset,
                start: log_start_offset,
                end: leo,
            });
        }
        if offset >= hw {
            return Ok(FetchResult {
                records: Bytes::new(),
                file: None,
                high_watermark: hw,
                log_start_offset,
            });
        }
        let mut from = offset;
        let (records, file) = loop {
            let r = log.read(from, max_bytes)?;
            let read = r.records;
            // Batches the cleaner emptied hold no record. A client that
            // advances by the records it sees (KafkaJS) would fetch the same
            // offset forever from a response of nothing else, so they are
            // left out of the front of a response; gaps are normal in a
            // compacted log.
            let (skipped, next) = leading_empty_batches(&read);
            if skipped == read.len() && skipped > 0 && next < hw {
                from = next;
                continue;
            }
            break (read.slice(skipped..), r.file);
        };
        drop(log);
        Ok(FetchResult {
            records: cut_at_offset(records, hw),
            file,
            high_watermark: hw,
            log_start_offset,
        })
    }

    /// Runs `f` on the log for a client's request (ListOffsets and the
    /// like): NOT_LEADER_OR_FOLLOWER unless this broker leads.
    pub fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> Result<T, BrokerError> {
        Ok(f(&*self.serving()?))
    }

    /// Flushes and closes the log, leaving the clean-shutdown marker.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.closed.store(true, Ordering::SeqCst);
        match &self.backing {
            Backing::Local(_) => self.log()?.close()?,
            Backing::Raft(r) => r.store.close().map_err(raft::store_error)?,
            Backing::Remote => {}
        }
        Ok(())
    }
}

/// Bytes taken by the empty (record-less, non-control) batches at the start
/// of `records`, and the offset after them.
fn leading_empty_batches(records: &Bytes) -> (usize, i64) {
    let mut pos = 0;
    let mut next = -1;
    while let Ok(h) = BatchHeader::parse(&records[pos..]) {
        if h.record_count != 0 || h.is_control() || pos + h.total_size() > records.len() {
            break;
        }
        pos += h.total_size();
        next = h.next_offset();
    }
    (pos, next)
}

/// Drops the batches at or above `limit` from a run of whole batches.
fn cut_at_offset(records: Bytes, limit: i64) -> Bytes {
    let mut pos = 0usize;
    while pos + 12 <= records.len() {
        let base = i64::from_be_bytes(records[pos..pos + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if base >= limit || len < 0 {
            break;
        }
        pos += 12 + len as usize;
    }
    records.slice(..pos.min(records.len()))
}

/// Takes the producer state and the transactions from the log's own record
/// of them (snapshots and indexes: no walk of the log).
fn rebuild_producer_state(
    log: &Log,
    producers: &mut ProducerStateManager,
    txns: &mut PartitionTxns,
) -> Result<(), BrokerError> {
    *producers = ProducerStateManager::from_log(log.producer_state());
    *txns = PartitionTxns::from_log(log)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use sluice_storage::batch::{self, BuildOptions, RecordSpec};
    use sluice_storage::{SyncMethod, SystemClock};
    use std::collections::BTreeMap;

    pub(super) fn keyed(key: &str, value: &str) -> Bytes {
        Bytes::from(batch::build(
            &[RecordSpec {
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                timestamp: 1,
            }],
            BuildOptions::default(),
        ))
    }

    #[tokio::test]
    async fn a_fetch_skips_the_batches_the_cleaner_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partition::open(
            dir.path(),
            "t",
            0,
            compacted_config(),
            Arc::new(SystemClock),
            Arc::new(Notify::new()),
            Flusher::start(SyncMethod::Auto, Arc::new(SystemClock)),
        )
        .unwrap();
        // 20 updates of one key, one batch each, then another key.
        for i in 0..20 {
            p.append(&keyed("a", &format!("a{i}"))).unwrap();
        }
        p.append(&keyed("b", "b0")).unwrap();
        p.wait_durable(20, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        p.log().unwrap().roll().unwrap();
        let hw = p.high_watermark();
        assert_eq!(hw, 21);
        let stats = p
            .compact(i64::MAX / 2, 1 << 20)
            .unwrap()
            .expect("a pass ran");
        assert_eq!(stats.records_removed, 19);

        // Offsets 0..19 are empty batches now: a small fetch from 0 still
        // returns records, starting at the first batch that has one.
        let r = p.read(0, 100).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert_eq!((h.base_offset, h.record_count), (19, 1));
        // Every empty batch is still in the log (the Raft entry numbering).
        assert_eq!(p.with_log(|l| l.last_entry_index()).unwrap(), 21);
        // From an offset past the last record there is nothing, not a loop.
        assert!(p.read(21, 100).unwrap().records.is_empty());
    }

    fn compacted_config() -> TopicConfig {
        let overrides: BTreeMap<String, String> = [
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        TopicConfig::resolve(&Config::default(), &overrides)
    }

    /// An idempotent producer's batch of `keys`, sequences from `seq`.
    fn idempotent(keys: &[&str], seq: i32) -> Bytes {
        idempotent_at(42, keys, seq, 1)
    }

    fn idempotent_at(producer_id: i64, keys: &[&str], seq: i32, timestamp: i64) -> Bytes {
        let specs: Vec<RecordSpec<'_>> = keys
            .iter()
            .map(|k| RecordSpec {
                key: Some(k.as_bytes()),
                value: Some(b"v"),
                timestamp,
            })
            .collect();
        Bytes::from(batch::build(
            &specs,
            BuildOptions {
                producer_id,
                producer_epoch: 0,
                base_sequence: seq,
                ..BuildOptions::default()
            },
        ))
    }

    #[tokio::test]
    async fn producer_state_rebuilt_from_a_compacted_log_expects_the_next_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Partition::open(
                dir.path(),
                "t",
                0,
                compacted_config(),
                Arc::new(SystemClock),
                Arc::new(Notify::new()),
                Flusher::start(SyncMethod::Auto, Arc::new(SystemClock)),
            )
            .unwrap()
        };
        let p = open();
        // Sequences 0..=3, then 4..=5 updating two of those keys, then a
        // batch of another producer so the idempotent ones can be sealed.
        p.append(&idempotent(&["a", "b", "c", "d"], 0)).unwrap();
        p.append(&idempotent(&["a", "b"], 4)).unwrap();
        p.append(&keyed("z", "z")).unwrap();
        p.wait_durable(6, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        p.log().unwrap().roll().unwrap();
        // The cleaner leaves 2 records in the first batch (offsets 0..=3).
        let stats = p.compact(i64::MAX / 2, 1 << 20).unwrap().expect("a pass");
        assert_eq!(stats.records_removed, 2);
        p.close().unwrap();
        drop(p);
        // Without its snapshots, so that the log is read.
        for e in std::fs::read_dir(dir.path().join("t-0")).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "snapshot") {
                std::fs::remove_file(path).unwrap();
            }
        }

        // Reopened, the state comes from the compacted log. The producer's
        // next batch continues at sequence 6, and a retry of either earlier
        // batch is a duplicate answered with its offsets, not new data.
        let p = open();
        let dup = p.append(&idempotent(&["a", "b", "c", "d"], 0)).unwrap();
        assert_eq!((dup.base_offset, dup.last_offset), (0, 3));
        let dup = p.append(&idempotent(&["a", "b"], 4)).unwrap();
        assert_eq!((dup.base_offset, dup.last_offset), (4, 5));
        let next = p.append(&idempotent(&["e"], 6)).unwrap();
        assert_eq!(next.base_offset, 7);
        assert!(matches!(
            p.append(&idempotent(&["f"], 9)),
            Err(BrokerError::OutOfOrderSequence { .. })
        ));
    }

    #[tokio::test]
    async fn idle_producers_expire_and_stay_forgotten_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Partition::open(
                dir.path(),
                "t",
                0,
                compacted_config(),
                Arc::new(SystemClock),
                Arc::new(Notify::new()),
                Flusher::start(SyncMethod::Auto, Arc::new(SystemClock)),
            )
            .unwrap()
        };
        let p = open();
        p.append(&idempotent_at(42, &["a", "b"], 0, 1_000)).unwrap();
        p.append(&idempotent_at(43, &["c"], 0, 9_000)).unwrap();
        let ids = |p: &Partition| -> Vec<i64> {
            p.active_producers()
                .unwrap()
                .iter()
                .map(|a| a.producer_id)
                .collect()
        };
        assert_eq!(ids(&p), vec![42, 43]);
        // Not idle long enough yet, then idle past producer.id.expiration.ms.
        assert_eq!(p.expire_producers(5_999, 5_000).unwrap(), 0);
        assert_eq!(p.expire_producers(10_000, 5_000).unwrap(), 1);
        assert_eq!(ids(&p), vec![43]);
        // A known producer's gap is refused; the other one continues.
        assert!(matches!(
            p.append(&idempotent_at(43, &["d"], 2, 10_000)),
            Err(BrokerError::OutOfOrderSequence { expected: 1, .. })
        ));
        p.append(&idempotent_at(43, &["e"], 1, 10_000)).unwrap();
        p.close().unwrap();
        drop(p);
        let p = open();
        assert_eq!(ids(&p), vec![43]);
        let dup = p.append(&idempotent_at(43, &["e"], 1, 10_000)).unwrap();
        assert_eq!(dup.base_offset, 3, "a retry is still recognised");
        // The forgotten one goes on at its next sequence, as in Kafka.
        let next = p.append(&idempotent_at(42, &["f"], 2, 11_000)).unwrap();
        assert_eq!(next.base_offset, 4);
        assert_eq!(ids(&p), vec![42, 43]);
    }
}
