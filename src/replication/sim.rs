//! An in-memory network of replicas for tests: messages are queued and
//! delivered in rounds, replicas can be cut off, crashed (dropped without
//! closing their logs, like kill -9) and restarted from their folders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::Message;
use sluice_storage::{BatchHeader, LogConfig, SystemClock};

use super::replica::{Replica, ReplicaError, Timing};
use super::store::ReplicaStore;

pub struct SimCluster {
    dirs: BTreeMap<u64, PathBuf>,
    voters: Vec<u64>,
    pub replicas: BTreeMap<u64, Replica>,
    queue: Vec<Message>,
    isolated: BTreeSet<u64>,
    config: LogConfig,
    /// Messages delivered so far.
    pub delivered: usize,
}

impl SimCluster {
    /// `n` replicas with ids 1..=n, each with its log in `root/{id}`.
    pub fn new(root: &Path, n: u64) -> Result<Self, ReplicaError> {
        let voters: Vec<u64> = (1..=n).collect();
        let mut sim = Self {
            dirs: voters
                .iter()
                .map(|&id| (id, root.join(id.to_string())))
                .collect(),
            voters: voters.clone(),
            replicas: BTreeMap::new(),
            queue: Vec::new(),
            isolated: BTreeSet::new(),
            config: LogConfig {
                segment_bytes: 4096,
                ..LogConfig::default()
            },
            delivered: 0,
        };
        for id in voters {
            sim.restart(id)?;
        }
        Ok(sim)
    }

    /// (Re)opens replica `id` from its folder.
    pub fn restart(&mut self, id: u64) -> Result<(), ReplicaError> {
        let store = ReplicaStore::open(
            &self.dirs[&id],
            self.config.clone(),
            Arc::new(SystemClock),
            &self.voters,
        )?;
        self.replicas
            .insert(id, Replica::new(id, store, Timing::default())?);
        Ok(())
    }

    /// Drops replica `id` without closing anything: its unsynced writes are
    /// whatever the page cache holds, as after kill -9 of the process.
    pub fn crash(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    /// The folder of replica `id`'s log.
    pub fn dir(&self, id: u64) -> &Path {
        &self.dirs[&id]
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
        for r in self.replicas.values_mut() {
            let out = r.ready()?;
            self.queue.extend(out.messages);
        }
        for m in std::mem::take(&mut self.queue) {
            if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
                continue;
            }
            if let Some(r) = self.replicas.get_mut(&m.to) {
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
}
