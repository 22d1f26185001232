//! A partition replicated by its Raft group: opening the replica on the
//! node's host, following the group's status, and appending on the leader
//! through Raft proposals.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sluice_storage::{BatchHeader, Clock};
use tokio::sync::{Notify, watch};

use super::{Backing, Partition, State, producer_batch, rebuild_producer_state};
use crate::error::BrokerError;
use crate::producer_state::{ProducerStateManager, SequenceCheck};
use crate::replication::host::{GroupStatus, Host};
use crate::replication::replica::{Replica, ReplicaError, Timing};
use crate::replication::store::{ReplicaStore, StoreError};
use crate::topic_config::TopicConfig;

use super::AppendResult;

/// The Raft side of a replicated partition.
pub struct Replicated {
    pub store: ReplicaStore,
    pub host: Arc<Host>,
    /// The group's name on the host and the transport (`topic-index`).
    pub group: String,
}

pub(super) fn store_error(e: StoreError) -> BrokerError {
    match e {
        StoreError::Storage(s) => s.into(),
        other => BrokerError::CorruptMessage(other.to_string()),
    }
}

fn replica_error(e: ReplicaError) -> BrokerError {
    match e {
        ReplicaError::NotLeader { .. } => BrokerError::NotLeaderOrFollower,
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
}

impl Partition {
    /// Opens this broker's replica of a partition and starts driving it on
    /// `host` (`me` is this broker's node id).
    pub fn open_replicated(
        spec: ReplicaSpec<'_>,
        me: u64,
        host: Arc<Host>,
        timing: Timing,
    ) -> Result<Arc<Self>, BrokerError> {
        let dir = spec.data_dir.join(format!("{}-{}", spec.topic, spec.index));
        let voters: Vec<u64> = spec.replicas.iter().map(|&r| r as u64).collect();
        let store = ReplicaStore::open(&dir, spec.config.log_config(), spec.clock.clone(), &voters)
            .map_err(store_error)?;
        let mut replica = Replica::new(me, store.clone(), timing).map_err(replica_error)?;
        replica.set_preferred_leader(voters.first().copied());
        let hw = replica.high_watermark();
        let group = format!("{}-{}", spec.topic, spec.index);
        let partition = Arc::new(Self {
            topic: spec.topic.into(),
            index: spec.index,
            dir,
            replicas: spec.replicas,
            state: Mutex::new(State {
                producers: ProducerStateManager::default(),
                config: spec.config,
                producers_term: 0,
            }),
            backing: Backing::Raft(Replicated {
                store,
                host: host.clone(),
                group: group.clone(),
            }),
            status: Mutex::new(GroupStatus {
                high_watermark: hw,
                ..GroupStatus::default()
            }),
            high_watermark: watch::channel(hw).0,
            flush_requested: Notify::new(),
            closed: Default::default(),
            clock: spec.clock,
            data_available: spec.data_available,
        });
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
        let leader = spec.replicas.first().map(|&r| r as u64);
        Arc::new(Self {
            topic: spec.topic.into(),
            index: spec.index,
            dir: spec.data_dir.join(format!("{}-{}", spec.topic, spec.index)),
            replicas: spec.replicas,
            state: Mutex::new(State {
                producers: ProducerStateManager::default(),
                config: spec.config,
                producers_term: 0,
            }),
            backing: Backing::Remote,
            status: Mutex::new(GroupStatus {
                leader,
                ..GroupStatus::default()
            }),
            high_watermark: watch::channel(0).0,
            flush_requested: Notify::new(),
            closed: Default::default(),
            clock: spec.clock,
            data_available: spec.data_available,
        })
    }

    /// Stops driving the replica (the topic was deleted).
    pub fn detach(&self) {
        if let Backing::Raft(r) = &self.backing {
            r.host.remove_group(&r.group);
        }
    }

    /// Called on the host thread when the group's status changes.
    fn on_status(&self, s: &GroupStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = *s;
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

    /// Appends on the leader: each new batch is proposed to the group and
    /// gets the offsets its entry will have on every replica. The state lock
    /// is held throughout, so the sequence checks and the proposals of one
    /// partition happen in one order.
    pub(super) fn append_replicated(
        &self,
        r: &Replicated,
        state: &mut State,
        batches: &[(BatchHeader, Bytes)],
        log_append_time: Option<i64>,
    ) -> Result<AppendResult, BrokerError> {
        let status = self.status();
        if !status.is_leader {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if state.producers_term != status.term {
            // A new term: this replica may have been a follower, which keeps
            // no producer state. Its log holds every entry the group may
            // have committed, so the state is rebuilt from it.
            let mut producers = ProducerStateManager::default();
            rebuild_producer_state(&r.store.log(), &mut producers)?;
            state.producers = producers;
            state.producers_term = status.term;
        }
        let mut first: Option<i64> = None;
        let mut last = -1;
        let mut entry = None;
        for (h, batch) in batches {
            let pb = producer_batch(h);
            match state.producers.check(&pb)? {
                SequenceCheck::Duplicate(meta) => {
                    first.get_or_insert(meta.first_offset);
                    last = meta.last_offset;
                }
                SequenceCheck::Append => {
                    // The leader stamps LogAppendTime once, so every replica
                    // stores the same bytes.
                    let data = match log_append_time {
                        Some(t) => sluice_storage::batch::with_log_append_time(batch, t),
                        None => batch.to_vec(),
                    };
                    let proposal = blocking(|| r.host.propose(&r.group, data)).map_err(|e| {
                        // The next term rebuilds the state from the log.
                        state.producers_term = 0;
                        replica_error(e)
                    })?;
                    state
                        .producers
                        .observe(&pb, proposal.base_offset, proposal.last_offset);
                    first.get_or_insert(proposal.base_offset);
                    last = proposal.last_offset;
                    entry = Some((proposal.index, proposal.term));
                }
            }
        }
        let log_start_offset = r.store.with_log(|l| l.log_start_offset());
        Ok(AppendResult {
            base_offset: first.unwrap_or(-1),
            last_offset: last,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset,
            entry,
        })
    }
}
