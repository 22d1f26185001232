//! A partition replicated by its Raft group: opening the replica on the
//! node's host, following the group's status, and appending on the leader
//! through Raft proposals.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sluice_storage::{BatchHeader, Clock};
use tokio::sync::{Notify, oneshot, watch};

use super::{Backing, Partition, State, producer_batch, rebuild_producer_state};
use crate::error::BrokerError;
use crate::producer_state::{ProducerStateManager, SequenceCheck};
use crate::replication::host::{GroupStatus, Host};
use crate::replication::replica::{Proposal, Replica, ReplicaError, Timing};
use crate::replication::store::{
    Command, ReplicaStore, StoreError, forget_votes, remembered_votes,
};
use crate::topic_config::TopicConfig;

use super::AppendResult;

/// The Raft side of a replicated partition.
pub struct Replicated {
    pub store: ReplicaStore,
    pub host: Arc<Host>,
    /// The group's name on the host and the transport (`topic-index`, and
    /// `@generation` after an unclean election).
    pub group: String,
    /// The group's generation (see `metadata::Generation`).
    pub generation: u32,
    /// Set by the host when a proposal at predicted offsets was refused:
    /// the predictions and the producer state must be rebuilt.
    refused: Arc<AtomicBool>,
}

/// Where the next proposal of this leader's term will land.
#[derive(Debug, Clone, Copy)]
pub(super) struct Next {
    index: u64,
    term: u64,
    offset: i64,
}

/// The outcome of a proposal sent without waiting.
pub type Confirmation = oneshot::Receiver<Result<Proposal, ReplicaError>>;

pub(super) fn store_error(e: StoreError) -> BrokerError {
    match e {
        StoreError::Storage(s) => s.into(),
        other => BrokerError::CorruptMessage(other.to_string()),
    }
}

fn replica_error(e: ReplicaError) -> BrokerError {
    match e {
        ReplicaError::NotLeader { .. } | ReplicaError::Moved { .. } => {
            BrokerError::NotLeaderOrFollower
        }
        ReplicaError::Store(s) => store_error(s),
        // A proposal refused while leadership is moving: the producer retries.
        ReplicaError::Raft(raft::Error::ProposalDropped) => BrokerError::NotLeaderOrFollower,
        ReplicaError::Raft(e) => BrokerError::InvalidRequest(e.to_string()),
    }
}

/// Runs a short blocking wait (a round trip to the Raft host thread) from
/// async code, letting the runtime move other tasks off this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Everything a replicated or remote partition is opened with.
pub struct ReplicaSpec<'a> {
    pub data_dir: &'a std::path::Path,
    pub topic: &'a str,
    pub index: i32,
    pub config: TopicConfig,
    pub clock: Arc<dyn Clock>,
    pub data_available: Arc<Notify>,
    /// Assigned replicas, the preferred leader first.
    pub replicas: Vec<i32>,
    /// Raft's own entries take no offset (the topic's choice, see
    /// `replication::store`).
    pub dense_offsets: bool,
    /// The group's first voters as Raft ids (what an empty replica starts
    /// from, see `ClusterImage::first_voters`).
    pub first_voters: Vec<u64>,
    /// The preferred leader's Raft id now (its broker's incarnation).
    pub preferred: Option<u64>,
    /// The group's generation as the image says, and (after an unclean
    /// election) the survivor's Raft id with the epoch the new group's
    /// terms must pass (see `metadata::Generation`).
    pub generation: u32,
    pub survivor: Option<(u64, u64)>,
}

/// The file in a partition's folder naming the generation of the group its
/// log belongs to (absent: the first).
const GENERATION_FILE: &str = "generation";

/// The generation of the group whose log `dir` holds (None: no log yet).
fn generation_on_disk(dir: &std::path::Path) -> Option<u32> {
    if !dir.is_dir() {
        return None;
    }
    Some(
        sluice_storage::checkpoint::read(dir, GENERATION_FILE)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
    )
}

fn write_generation(dir: &std::path::Path, generation: u32) -> Result<(), BrokerError> {
    std::fs::create_dir_all(dir).map_err(|e| BrokerError::Storage(e.into()))?;
    sluice_storage::checkpoint::write_atomic(dir, GENERATION_FILE, &format!("{generation}\n"))
        .map_err(BrokerError::Storage)
}

/// Brings the folder of a partition's replica to the group's generation
/// `spec.generation` (after an unclean election): the survivor keeps its
/// log and starts the new group alone; any other replica drops its log and
/// joins the new group empty. A folder of a later generation than the
/// image knows (a restart before the image caught up) stays as it is.
/// Returns the generation the folder is in.
fn bring_to_generation(
    spec: &ReplicaSpec<'_>,
    dir: &std::path::Path,
    me: u64,
) -> Result<u32, BrokerError> {
    let wanted = spec.generation;
    let on_disk = match generation_on_disk(dir) {
        None => {
            if wanted > 0 {
                write_generation(dir, wanted)?;
            }
            return Ok(wanted);
        }
        Some(g) if g >= wanted => return Ok(g),
        Some(g) => g,
    };
    match spec.survivor {
        Some((survivor, floor)) if survivor == me => {
            let store = ReplicaStore::open(
                dir,
                spec.config.log_config(),
                spec.clock.clone(),
                &spec.first_voters,
                spec.dense_offsets,
            )
            .map_err(store_error)?;
            store
                .start_generation_alone(me, floor)
                .map_err(store_error)?;
            store.close().map_err(store_error)?;
            tracing::warn!(topic = %spec.topic, partition = spec.index, from = on_disk, generation = wanted,
                "unclean leader election: this replica's log is the partition's now, and it leads the group alone");
        }
        _ => {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let doomed = dir.with_file_name(format!("{name}.gen{on_disk}-delete"));
            std::fs::rename(dir, &doomed)
                .and_then(|_| std::fs::remove_dir_all(&doomed))
                .map_err(|e| BrokerError::Storage(e.into()))?;
            tracing::warn!(topic = %spec.topic, partition = spec.index, from = on_disk, generation = wanted,
                "unclean leader election elsewhere: this replica's log is dropped, it joins the new group empty");
        }
    }
    write_generation(dir, wanted)?;
    Ok(wanted)
}

impl Partition {
    /// Opens this broker's replica of a partition and starts driving it on
    /// `host` (`me` is this replica's Raft id: the broker's node id and
    /// incarnation, see `replication::raft_id`).
    pub fn open_replicated(
        spec: ReplicaSpec<'_>,
        me: u64,
        host: Arc<Host>,
        timing: Timing,
    ) -> Result<Arc<Self>, BrokerError> {
        use crate::replication::broker_of;
        let dir = spec.data_dir.join(format!("{}-{}", spec.topic, spec.index));
        let mut voters = spec.first_voters.clone();
        if !voters.is_empty()
            && !voters.contains(&me)
            && voters.iter().all(|&v| broker_of(v) == broker_of(me))
        {
            // Its only replica, back with a new data folder: what the group
            // held went with the disk, and no other member can fill this
            // one. It starts the group again, empty (as Kafka recreates
            // the log of a partition whose only replica lost its disk).
            tracing::warn!(topic = %spec.topic, partition = spec.index,
                "the partition's only replica lost its data folder: it starts again empty");
            voters = vec![me];
        }
        let fresh = !dir.exists();
        let generation = bring_to_generation(&spec, &dir, me)?;
        let store = ReplicaStore::open(
            &dir,
            spec.config.log_config(),
            spec.clock.clone(),
            &voters,
            spec.dense_offsets,
        )
        .map_err(store_error)?;
        let group = match generation {
            0 => format!("{}-{}", spec.topic, spec.index),
            g => format!("{}-{}@{g}", spec.topic, spec.index),
        };
        if let Some((term, vote)) = remembered_votes(spec.data_dir, &group) {
            // A replica of this group was here before, under the same Raft
            // id: the new one must not vote again in a term it voted in.
            if fresh {
                store.resume_votes(term, vote).map_err(store_error)?;
                tracing::info!(group = %group, term, vote, "replica back on this broker: starts from the term and vote it left");
            }
            forget_votes(spec.data_dir, &group);
        }
        let mut replica = Replica::new(me, store.clone(), timing).map_err(replica_error)?;
        replica.set_preferred_leader(spec.preferred);
        replica.set_generation(generation);
        replica.allow_quiesce();
        let hw = replica.high_watermark();
        let backing = Backing::Raft(Replicated {
            store,
            host: host.clone(),
            group: group.clone(),
            generation,
            refused: Default::default(),
        });
        let status = GroupStatus {
            high_watermark: hw,
            ..GroupStatus::default()
        };
        let partition = Self::assemble(spec, backing, status);
        let weak: Weak<Partition> = Arc::downgrade(&partition);
        host.add_group_watched(
            &group,
            replica,
            Box::new(move |s| {
                if let Some(p) = weak.upgrade() {
                    p.on_status(s);
                }
            }),
        );
        Ok(partition)
    }

    /// A partition assigned to other brokers only: it answers
    /// NOT_LEADER_OR_FOLLOWER, and names its preferred leader in Metadata.
    pub fn remote(spec: ReplicaSpec<'_>) -> Arc<Self> {
        let status = GroupStatus {
            leader: spec.replicas.first().map(|&r| r as u64),
            ..GroupStatus::default()
        };
        Self::assemble(spec, Backing::Remote, status)
    }

    /// A cluster partition with its backing and first status (whose high
    /// watermark starts the partition's).
    fn assemble(spec: ReplicaSpec<'_>, backing: Backing, status: GroupStatus) -> Arc<Self> {
        Arc::new(Self {
            topic: spec.topic.into(),
            index: spec.index,
            dir: spec.data_dir.join(format!("{}-{}", spec.topic, spec.index)),
            replicas: Mutex::new(spec.replicas),
            isr: Mutex::new(None),
            state: Mutex::new(State {
                producers: ProducerStateManager::default(),
                txns: Default::default(),
                config: spec.config,
                producers_term: 0,
                next: None,
            }),
            backing,
            status: watch::channel(status).0,
            high_watermark: watch::channel(status.high_watermark).0,
            flusher: None,
            me: Weak::new(),
            flush_queued: Default::default(),
            flush_due_ms: AtomicI64::new(i64::MAX),
            stats: Default::default(),
            closed: Default::default(),
            clock: spec.clock,
            data_available: spec.data_available,
        })
    }

    /// Who leads a partition held elsewhere, as the cluster image says.
    pub fn set_remote_leader(&self, leader: u64, epoch: u64) {
        if let Backing::Remote = self.backing {
            self.status.send_if_modified(|s| {
                let changed = (s.leader, s.term) != (Some(leader), epoch);
                s.leader = Some(leader);
                s.term = epoch;
                changed
            });
        }
    }

    /// A preferred election: if this replica leads and is not the
    /// preferred one, it hands leadership over once the preferred replica
    /// is caught up, for the next `within_ticks` Raft ticks.
    pub fn request_hand_over(&self, within_ticks: u64) {
        if let Backing::Raft(r) = &self.backing {
            r.host.act(&r.group, move |replica| {
                replica.request_hand_over(within_ticks)
            });
        }
    }

    /// The voters (Raft ids) this partition's group should have — its
    /// assigned replicas' current incarnations, or a reassignment's target
    /// — and its preferred leader (the first assigned replica).
    pub fn set_membership_target(&self, target: Option<Vec<u64>>, preferred: Option<u64>) {
        if let Backing::Raft(r) = &self.backing {
            r.host.act(&r.group, move |replica| {
                replica.set_target_voters(target);
                replica.set_preferred_leader(preferred);
            });
        }
    }

    /// On the leader, the brokers whose replicas are in sync (see
    /// [`Replica::in_sync`]), sorted; None elsewhere.
    pub async fn in_sync_brokers(&self) -> Option<Vec<u64>> {
        let Backing::Raft(r) = &self.backing else {
            return None;
        };
        r.host
            .inspect(&r.group, |replica| {
                replica.is_leader().then(|| {
                    let mut brokers: Vec<u64> = replica
                        .in_sync()
                        .iter()
                        .map(|&id| crate::replication::broker_of(id))
                        .collect();
                    brokers.sort_unstable();
                    brokers.dedup();
                    brokers
                })
            })
            .await
            .flatten()
    }

    /// Whether this replica leads its group and the group's membership is
    /// the reassignment's target.
    pub async fn membership_reached(&self) -> bool {
        match &self.backing {
            Backing::Raft(r) => r
                .host
                .inspect(&r.group, |replica| {
                    replica.is_leader() && replica.membership_reached()
                })
                .await
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Stops driving the replica (the topic was deleted).
    pub fn detach(&self) {
        if let Backing::Raft(r) = &self.backing {
            r.host.remove_group(&r.group);
        }
    }

    /// Stops driving the replica and closes it, once the host no longer
    /// touches it (its folder is about to change hands).
    pub fn detach_and_close(&self) -> Result<(), BrokerError> {
        if let Backing::Raft(r) = &self.backing {
            r.host.remove_group(&r.group);
            blocking(|| r.host.barrier());
        }
        self.close()
    }

    /// Keeps this replica's term and vote for a replica of the same group
    /// opened here later (see `store::remember_votes`).
    pub fn remember_votes(&self, data_dir: &std::path::Path) {
        if let Backing::Raft(r) = &self.backing {
            let (term, vote) = r.store.term_and_vote();
            if let Err(e) =
                crate::replication::store::remember_votes(data_dir, &r.group, term, vote)
            {
                tracing::warn!(partition = ?self, error = %e, "could not keep the replica's term and vote");
            }
        }
    }

    /// The generation of the group this replica belongs to (None: no
    /// replica here).
    pub fn generation(&self) -> Option<u32> {
        match &self.backing {
            Backing::Raft(r) => Some(r.generation),
            _ => None,
        }
    }

    /// Called on the host thread when the group's status changes.
    fn on_status(&self, s: &GroupStatus) {
        let before = self.status.send_replace(*s);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        if s.leader.is_some() && s.leader != before.leader {
            self.stats.leader_changes.fetch_add(1, relaxed);
        }
        // Every election raises the term (once the first status is known).
        if before.term > 0 && s.term > before.term {
            self.stats
                .elections
                .fetch_add(s.term - before.term, relaxed);
        }
        let advanced = self.high_watermark.send_if_modified(|hw| {
            if s.high_watermark > *hw {
                *hw = s.high_watermark;
                true
            } else {
                false
            }
        });
        if advanced {
            self.data_available.notify_waiters();
        }
    }

    /// Appends on the leader. The first batch of a term is proposed and
    /// waited for, which tells where the log ends; later batches are sent
    /// without waiting, at the offsets that follow (`Replica::propose_at`
    /// refuses any that would land elsewhere), so many produce requests
    /// ride on one Raft round. The state lock is held throughout: sequence
    /// checks and proposals of one partition happen in one order.
    pub(super) fn append_replicated(
        &self,
        r: &Replicated,
        state: &mut State,
        batches: &[(BatchHeader, Bytes)],
        log_append_time: Option<i64>,
    ) -> Result<AppendResult, BrokerError> {
        let status = self.refresh_producer_state(r, state)?;
        let mut out = AppendResult {
            base_offset: -1,
            last_offset: -1,
            log_append_time: log_append_time.unwrap_or(-1),
            ..AppendResult::default()
        };
        let mut unconfirmed = Vec::new();
        let mut duplicate = false;
        for (h, batch) in batches {
            let mut pb = producer_batch(h);
            pb.max_timestamp = log_append_time.unwrap_or(pb.max_timestamp);
            let (first, last) = match state.producers.check(&pb)? {
                SequenceCheck::Duplicate(meta) => {
                    duplicate = true;
                    (meta.first_offset, meta.last_offset)
                }
                SequenceCheck::Append => {
                    // The leader stamps LogAppendTime once, so every replica
                    // stores the same bytes.
                    let data = match log_append_time {
                        Some(t) => sluice_storage::batch::with_log_append_time(batch, t),
                        None => batch.to_vec(),
                    };
                    let p = match state.next.filter(|n| n.term == status.term) {
                        None => blocking(|| r.host.propose(&r.group, data)).map_err(|e| {
                            state.next = None;
                            replica_error(e)
                        })?,
                        Some(n) => {
                            let at = Proposal {
                                index: n.index,
                                term: n.term,
                                base_offset: n.offset,
                                last_offset: n.offset + h.last_offset_delta as i64,
                            };
                            let (tx, rx) = oneshot::channel();
                            let refused = r.refused.clone();
                            r.host.propose_then(
                                &r.group,
                                data,
                                Some(at),
                                Box::new(move |res| {
                                    if res.is_err() {
                                        refused.store(true, Ordering::SeqCst);
                                    }
                                    let _ = tx.send(res);
                                }),
                            );
                            unconfirmed.push(rx);
                            at
                        }
                    };
                    state.next = Some(Next {
                        index: p.index + 1,
                        term: p.term,
                        offset: p.last_offset + 1,
                    });
                    state.producers.observe(&pb, p.base_offset, p.last_offset);
                    let marker = crate::txn::partition::marker_of(h, batch);
                    if marker.is_some() {
                        state
                            .producers
                            .observe_marker(h.producer_id, h.producer_epoch);
                    }
                    state.txns.observe(h, p.base_offset, p.last_offset, marker);
                    out.entry = Some((p.index, p.term));
                    (p.base_offset, p.last_offset)
                }
            };
            if out.base_offset < 0 {
                out.base_offset = first;
            }
            out.last_offset = last;
        }
        if duplicate {
            // The earlier copy may be an entry of an earlier term that no
            // majority holds yet (this leader found it in its log), which a
            // later leader could replace. It is acknowledged as an append
            // is: once this leader, still in its term, has committed every
            // entry it holds or has proposed (its own log is never cut
            // while it leads, so the copy is committed with them).
            let end = match state.next.filter(|n| n.term == status.term) {
                Some(n) => n.index - 1,
                None => r.store.with_log(|l| l.last_entry_index()),
            };
            if out.entry.is_none_or(|(index, _)| index < end) {
                out.entry = Some((end, status.term));
            }
        }
        out.log_start_offset = r.store.with_log(|l| l.log_start_offset());
        out.unconfirmed = Mutex::new(unconfirmed);
        Ok(out)
    }

    /// On the leader, makes the producer state that of the log: a new term
    /// (this replica may have been a follower, which keeps no producer
    /// state), or a refused prediction, rebuilds it once everything
    /// accepted so far is stored — the log then holds every entry the group
    /// may commit from here. NOT_LEADER_OR_FOLLOWER elsewhere. Returns the
    /// status it acted on.
    pub(super) fn refresh_producer_state(
        &self,
        r: &Replicated,
        state: &mut State,
    ) -> Result<GroupStatus, BrokerError> {
        let status = self.status();
        if !status.is_leader {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if r.refused.swap(false, Ordering::SeqCst) || state.producers_term != status.term {
            blocking(|| r.host.barrier());
            let mut producers = ProducerStateManager::default();
            let mut txns = crate::txn::partition::PartitionTxns::default();
            rebuild_producer_state(&r.store.log(), &mut producers, &mut txns)?;
            state.producers = producers;
            state.txns = txns;
            state.producers_term = status.term;
            state.next = None;
        }
        Ok(status)
    }

    /// DeleteRecords on a replicated partition: the leader proposes the new
    /// log start as a command (see [`Command`]); every replica moves its
    /// own log start when the command commits, and the answer waits for the
    /// commit, as acks=all does. A new leader serves reads only once it has
    /// committed in its term, so by then it has carried out every command
    /// the group committed: deleted records never come back.
    pub(super) async fn delete_records_replicated(
        &self,
        r: &Replicated,
        offset: i64,
        timeout: std::time::Duration,
    ) -> Result<i64, BrokerError> {
        let (proposal, target) = {
            let mut state = self.lock();
            let start = self.serving()?.log_start_offset();
            let target = self.delete_records_target(offset, start)?;
            if target <= start {
                return Ok(start);
            }
            let p = blocking(|| r.host.propose_command(&r.group, Command::LogStart(target)))
                .map_err(replica_error)?;
            // The command took an entry the produce path's predictions did
            // not count on.
            state.next = None;
            (p, target)
        };
        let appended = AppendResult {
            last_offset: proposal.last_offset,
            entry: Some((proposal.index, proposal.term)),
            ..AppendResult::default()
        };
        self.wait_acked(&appended, timeout).await?;
        // Committed: the command is carried out when Raft hands the entry
        // over as committed, usually in the round whose status told of the
        // commit, at the latest in a following one.
        let deadline = tokio::time::Instant::now() + timeout;
        while self.log_start_offset() < target && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(self.log_start_offset())
    }

    /// For a coordinator of this partition's keys (groups, transactional
    /// ids): NOT_COORDINATOR unless this broker serves the partition; the
    /// Raft term it leads in when replicated (a new term means the
    /// coordinator must load the partition again), None alone.
    pub fn coordinator_term(&self) -> Result<Option<u64>, i16> {
        if self.check_serving().is_err() {
            return Err(kafka_protocol::error::ResponseError::NotCoordinator.code());
        }
        Ok(self.is_replicated().then(|| self.status().term))
    }

    /// A new leader of a coordinator's partition (`__consumer_offsets`,
    /// `__transaction_state`) may replay it once it has committed an entry
    /// of its term and everything its log held when asked (the high
    /// watermark catches up when its first entry commits): its log then
    /// holds every entry that may have been acknowledged. False after 10 s.
    pub async fn caught_up_as_leader(&self) -> bool {
        let end = self.log_end_offset();
        let wait = std::time::Duration::from_secs(10);
        self.wait_leader_ready(wait).await.is_ok()
            && (end <= 0 || self.wait_durable(end - 1, wait).await.is_ok())
    }

    /// Waits until this replica leads and has committed an entry of its
    /// term (see [`Replica::leader_ready`]).
    pub async fn wait_leader_ready(&self, timeout: std::time::Duration) -> Result<(), BrokerError> {
        if !self.is_replicated() {
            return Ok(());
        }
        let mut rx = self.status.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|s| s.leader_ready || !s.is_leader)).await {
            Ok(Ok(s)) if s.leader_ready => Ok(()),
            Ok(_) => Err(BrokerError::NotLeaderOrFollower),
            Err(_) => Err(BrokerError::RequestTimedOut),
        }
    }

    /// Waits for the outcome of an append's proposals sent at predicted
    /// offsets: NOT_LEADER_OR_FOLLOWER (the producer retries) if any was
    /// refused.
    pub async fn confirm(&self, r: &AppendResult) -> Result<(), BrokerError> {
        let pending = std::mem::take(&mut *r.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()));
        for rx in pending {
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(replica_error(e)),
                Err(_) => return Err(BrokerError::NotLeaderOrFollower),
            }
        }
        Ok(())
    }
}
