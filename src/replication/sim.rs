//! An in-memory network of replicas for tests: messages are queued and
//! delivered in rounds, replicas can be cut off, crashed (dropped without
//! closing their logs, like kill -9) and restarted from their folders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{Message, MessageType};
use sluice_storage::fs::FaultyFs;
use sluice_storage::{BatchHeader, LogConfig, SystemClock};

use super::replica::{Replica, ReplicaError, Timing};
use super::store::ReplicaStore;
use crate::cleaner::{self, Bounds, CleanStats, CompactionPolicy};
use crate::error::BrokerError;

pub struct SimCluster {
    dirs: BTreeMap<u64, PathBuf>,
    /// Each replica's file system, which can be told to fail (see
    /// [`Self::crash_after_writing`]).
    faults: BTreeMap<u64, Arc<FaultyFs>>,
    voters: Vec<u64>,
    pub replicas: BTreeMap<u64, Replica>,
    queue: Vec<Message>,
    isolated: BTreeSet<u64>,
    config: LogConfig,
    /// Messages delivered so far.
    pub delivered: usize,
    /// Messages of these types still to be lost on the way (see
    /// [`Self::lose`]).
    to_lose: Vec<MessageType>,
    /// Raft's own entries take no offset (see `store`); the default, as
    /// for every topic the broker creates.
    pub dense: bool,
    /// The group's generation (see `metadata::Generation`): every replica
    /// (re)opened from now on is in it.
    generation: u32,
}

impl SimCluster {
    /// `n` replicas with ids 1..=n, each with its log in `root/{id}`.
    pub fn new(root: &Path, n: u64) -> Result<Self, ReplicaError> {
        Self::with_offsets(root, n, true)
    }

    /// Like [`Self::new`]; `dense`: whether Raft's own entries take no
    /// offset (false: the numbering of topics created before that).
    pub fn with_offsets(root: &Path, n: u64, dense: bool) -> Result<Self, ReplicaError> {
        let voters: Vec<u64> = (1..=n).collect();
        let mut sim = Self {
            dirs: voters
                .iter()
                .map(|&id| (id, root.join(id.to_string())))
                .collect(),
            voters: voters.clone(),
            faults: BTreeMap::new(),
            replicas: BTreeMap::new(),
            queue: Vec::new(),
            isolated: BTreeSet::new(),
            config: LogConfig {
                segment_bytes: 4096,
                ..LogConfig::default()
            },
            delivered: 0,
            to_lose: Vec::new(),
            dense,
            generation: 0,
        };
        for id in voters {
            sim.restart(id)?;
        }
        Ok(sim)
    }

    /// Every replica's log uses `config` from now on (they restart with it
    /// now, as after kill -9).
    pub fn set_log_config(&mut self, config: LogConfig) -> Result<(), ReplicaError> {
        self.config = config;
        for id in self.replicas.keys().copied().collect::<Vec<_>>() {
            self.crash(id);
            self.restart(id)?;
        }
        Ok(())
    }

    /// (Re)opens replica `id` from its folder.
    pub fn restart(&mut self, id: u64) -> Result<(), ReplicaError> {
        let fs = Arc::new(FaultyFs::default());
        let store = ReplicaStore::open_with_fs(
            &self.dirs[&id],
            self.config.clone(),
            Arc::new(SystemClock),
            &self.voters,
            self.dense,
            fs.clone(),
        )?;
        self.faults.insert(id, fs);
        let mut replica = Replica::new(id, store, Timing::default())?;
        replica.set_generation(self.generation);
        self.replicas.insert(id, replica);
        Ok(())
    }

    /// An unclean election of `survivor` (see `metadata::Generation`): the
    /// group's next generation starts from its log alone; every other
    /// replica is down, and comes back with [`Self::rejoin_empty`].
    pub fn unclean_election(
        &mut self,
        survivor: u64,
        epoch_floor: u64,
    ) -> Result<(), ReplicaError> {
        for id in self.dirs.keys().copied().collect::<Vec<_>>() {
            self.crash(id);
        }
        let store = ReplicaStore::open(
            &self.dirs[&survivor],
            self.config.clone(),
            Arc::new(SystemClock),
            &self.voters,
            self.dense,
        )?;
        store.start_generation_alone(survivor, epoch_floor)?;
        store.close()?;
        self.generation += 1;
        self.voters = vec![survivor];
        self.restart(survivor)
    }

    /// Replica `id` drops its log and joins the group's current generation
    /// empty, a member its leader has yet to add.
    pub fn rejoin_empty(&mut self, id: u64) -> Result<(), ReplicaError> {
        self.crash(id);
        let _ = std::fs::remove_dir_all(&self.dirs[&id]);
        self.restart(id)
    }

    /// Starts a new, empty replica `id` (a broker a reassignment moves the
    /// group onto): it knows the group's current voters, not being one, and
    /// takes part once the leader adds it.
    pub fn add_node(&mut self, id: u64) -> Result<(), ReplicaError> {
        let first = self.dirs.values().next().expect("a replica").clone();
        let root = first
            .parent()
            .expect("replica folders share a root")
            .to_owned();
        self.dirs.insert(id, root.join(id.to_string()));
        if let Some(r) = self.replicas.values().next() {
            self.voters = r.membership().voters;
        }
        self.restart(id)
    }

    /// Replica `id`'s disk is wiped and its broker comes back: the replica
    /// is dropped and its folder removed, and the broker's next
    /// incarnation (see [`super::raft_id`]) starts empty from the group's
    /// first voters, a member the group has yet to add. Returns its id.
    pub fn wipe(&mut self, id: u64) -> Result<u64, ReplicaError> {
        self.crash(id);
        let dir = self.dirs.remove(&id).expect("a known replica");
        let _ = std::fs::remove_dir_all(&dir);
        let new = super::raft_id(super::broker_of(id), (id >> 32) as u32 + 1);
        let root = dir.parent().expect("replica folders share a root");
        self.dirs.insert(
            new,
            root.join(format!("{}-{}", super::broker_of(new), new >> 32)),
        );
        self.restart(new)?;
        Ok(new)
    }

    /// Replica `id` loses its disk and comes back on an empty one under
    /// the same id; with `abstain`, it answers no vote request (see
    /// `Replica::abstain`).
    pub fn wipe_keeping_id(&mut self, id: u64, abstain: bool) -> Result<(), ReplicaError> {
        self.crash(id);
        let _ = std::fs::remove_dir_all(&self.dirs[&id]);
        self.restart(id)?;
        if abstain {
            self.replicas.get_mut(&id).expect("restarted").abstain();
        }
        Ok(())
    }

    /// Drops replica `id` without closing anything: its unsynced writes are
    /// whatever the page cache holds, as after kill -9 of the process.
    pub fn crash(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    /// Replica `id` dies partway through its next `bytes` bytes of log
    /// writes, whatever is writing (a Raft append, a truncation, the
    /// cleaner's swap): the write that crosses the limit is cut short and
    /// fails, and the replica is dropped as a kill -9 would leave it. A
    /// negative `bytes` takes the order back.
    pub fn crash_after_writing(&mut self, id: u64, bytes: i64) {
        if let Some(fs) = self.faults.get(&id) {
            fs.fail_writes_after(bytes);
        }
    }

    /// Whether replica `id` was told to crash and has reached its limit.
    fn hit_fault(&self, id: u64) -> bool {
        self.faults.get(&id).is_some_and(|fs| fs.exhausted())
    }

    /// The replicas not running (crashed and not restarted).
    pub fn down(&self) -> Vec<u64> {
        self.dirs
            .keys()
            .copied()
            .filter(|id| !self.replicas.contains_key(id))
            .collect()
    }

    /// The folder of replica `id`'s log.
    pub fn dir(&self, id: u64) -> &Path {
        &self.dirs[&id]
    }

    /// The next message of type `kind`, whoever sends it, is lost.
    pub fn lose(&mut self, kind: MessageType) {
        self.to_lose.push(kind);
    }

    /// Cuts `id` off: messages to or from it are lost until `heal`.
    pub fn isolate(&mut self, id: u64) {
        self.isolated.insert(id);
    }

    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// One round: every replica handles its ready state, then every queued
    /// message is delivered (or lost, across a cut).
    pub fn round(&mut self) -> Result<(), ReplicaError> {
        let mut dead = Vec::new();
        for (&id, r) in self.replicas.iter_mut() {
            match r.ready() {
                Ok(out) => self.queue.extend(out.messages),
                Err(_) if self.faults.get(&id).is_some_and(|fs| fs.exhausted()) => dead.push(id),
                Err(e) => return Err(e),
            }
        }
        for id in dead {
            self.crash(id);
        }
        for m in std::mem::take(&mut self.queue) {
            if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
                continue;
            }
            if let Some(i) = self.to_lose.iter().position(|&t| t == m.get_msg_type()) {
                self.to_lose.remove(i);
                continue;
            }
            // Delivered to the broker: a message for an earlier incarnation
            // of it reaches the one running now, which drops it.
            let to = self.replicas.keys().copied().find(|&id| {
                id == m.to
                    || (!self.replicas.contains_key(&m.to)
                        && super::broker_of(id) == super::broker_of(m.to))
            });
            if let Some(r) = to.and_then(|id| self.replicas.get_mut(&id)) {
                r.step(m)?;
                self.delivered += 1;
            }
        }
        Ok(())
    }

    pub fn tick(&mut self) -> Result<(), ReplicaError> {
        for r in self.replicas.values_mut() {
            r.tick();
        }
        self.round()
    }

    /// Ticks and delivers until `done` holds, at most `max_ticks` ticks.
    pub fn run_until(
        &mut self,
        max_ticks: usize,
        mut done: impl FnMut(&SimCluster) -> bool,
    ) -> Result<bool, ReplicaError> {
        for _ in 0..max_ticks {
            for _ in 0..3 {
                self.round()?;
            }
            if done(self) {
                return Ok(true);
            }
            self.tick()?;
        }
        Ok(done(self))
    }

    /// The one leader among the replicas that can reach a majority.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .replicas
            .values()
            .filter(|r| r.is_leader() && !self.isolated.contains(&r.id))
            .map(|r| r.id)
            .collect();
        match leaders[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Elects a leader, or panics after `max_ticks`.
    pub fn elect(&mut self, max_ticks: usize) -> Result<u64, ReplicaError> {
        self.run_until(max_ticks, |s| s.leader().is_some())?;
        Ok(self.leader().expect("a leader within the tick budget"))
    }

    /// Every batch of replica `id`'s log: (base offset, leader epoch, bytes).
    pub fn log_of(&self, id: u64) -> Vec<(i64, i32, Bytes)> {
        let r = &self.replicas[&id];
        r.store().with_log(|log| {
            let mut out = Vec::new();
            for i in log.first_entry_index()..=log.last_entry_index() {
                let b = log.entry(i).expect("entry in range");
                let h = BatchHeader::parse(&b).expect("stored batch");
                out.push((h.base_offset, h.partition_leader_epoch, b));
            }
            out
        })
    }

    /// One log-cleaner pass on replica `id` at time `now`, bounded as the
    /// broker bounds it: below its high watermark, and tombstones only below
    /// what every replica holds.
    pub fn clean(
        &mut self,
        id: u64,
        policy: &CompactionPolicy,
        now: i64,
    ) -> Result<Option<CleanStats>, BrokerError> {
        let r = &self.replicas[&id];
        let bounds = Bounds {
            high_watermark: r.high_watermark(),
            tombstone_limit: r.fully_replicated(),
        };
        let store = r.store();
        let pass = cleaner::run_pass(|| Ok(store.log()), policy, bounds, 1 << 20, now);
        if pass.is_err() && self.hit_fault(id) {
            self.crash(id);
            return Ok(None);
        }
        pass
    }

    /// The data batches (not Raft's own control batches) of `id`'s log, up
    /// to its high watermark.
    pub fn committed_data(&self, id: u64) -> Vec<(i64, Bytes)> {
        let hw = self.replicas[&id].high_watermark();
        self.log_of(id)
            .into_iter()
            .filter(|(offset, _, b)| {
                *offset < hw && !BatchHeader::parse(b).expect("batch").is_control()
            })
            .map(|(offset, _, b)| (offset, b))
            .collect()
    }

    /// The record values of replica `id`'s committed data batches, in log
    /// order.
    pub fn committed_values(&self, id: u64) -> Vec<String> {
        self.committed_data(id)
            .iter()
            .flat_map(|(_, b)| {
                let h = BatchHeader::parse(b).expect("batch");
                cleaner::records::records(b, &h).expect("records")
            })
            .map(|r| String::from_utf8(r.value.expect("a value").to_vec()).expect("utf-8"))
            .collect()
    }
}
