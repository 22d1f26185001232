//! Membership changes of a Raft group: applying committed ones (of the
//! group's own generation), and the leader's moves towards a target set of
//! voters — learners added, caught up, switched in through a joint
//! configuration, the leaving ones taken out.

use raft::eraftpb::Entry;

use super::{Membership, Replica, ReplicaError};
use crate::replication::store::StoreError;

const GENERATION_CONTEXT: &[u8] = b"sluice.generation:";

/// The context a membership change proposed in `generation` carries (none
/// in the first generation, as before generations).
fn generation_context(generation: u32) -> Vec<u8> {
    if generation == 0 {
        return Vec::new();
    }
    [GENERATION_CONTEXT, &generation.to_be_bytes()[..]].concat()
}

/// The generation a membership change entry was proposed in.
fn entry_generation(context: &[u8]) -> u32 {
    context
        .strip_prefix(GENERATION_CONTEXT)
        .and_then(|g| g.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

impl Replica {
    /// A committed membership change: Raft's configuration switches, and
    /// the store records it (with its index, so it is taken in once even
    /// when the entry is handed out again after a restart or a snapshot).
    pub(super) fn apply_membership(&mut self, e: &Entry) -> Result<(), ReplicaError> {
        use protobuf::Message as _;
        use raft::eraftpb::{ConfChange, ConfChangeV2, EntryType};
        if e.index <= self.store.conf_index() {
            return Ok(());
        }
        let generation = entry_generation(&e.context);
        if generation < self.generation {
            tracing::info!(
                id = self.id,
                index = e.index,
                generation,
                current = self.generation,
                "membership change of an earlier generation of the group: not taken in"
            );
            return Ok(());
        }
        let bad = |err: protobuf::ProtobufError| {
            ReplicaError::Store(StoreError::BadEntry {
                index: e.index,
                reason: err.to_string(),
            })
        };
        let applied = if e.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&e.data).map_err(bad)?;
            self.node.apply_conf_change(&cc)
        } else {
            let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(bad)?;
            self.node.apply_conf_change(&cc)
        };
        match applied {
            Ok(cs) => {
                tracing::info!(id = self.id, index = e.index, voters = ?cs.voters,
                    outgoing = ?cs.voters_outgoing, learners = ?cs.learners, "membership changed");
                let member = cs.voters.contains(&self.id) || cs.voters_outgoing.contains(&self.id);
                self.store.set_conf_state(cs, e.index)?;
                if !member && self.is_leader() {
                    // A leader the change took out (it hands over before
                    // leaving the joint configuration, unless it came to lead
                    // from the outgoing side just then): it steps down, and
                    // the new voters elect a leader among them. Raft would
                    // otherwise keep it leading a group it has no place in.
                    tracing::info!(
                        id = self.id,
                        index = e.index,
                        "leader left the group: stepping down"
                    );
                    let term = self.node.raft.term;
                    self.node.raft.become_follower(term, raft::INVALID_ID);
                }
            }
            // Every replica refuses the same change alike (the leader
            // checks before proposing, so this is a change the
            // configuration had already taken in).
            Err(err) => {
                tracing::warn!(id = self.id, index = e.index, error = %err, "membership change not applied")
            }
        }
        Ok(())
    }

    /// The group's membership as this replica's configuration says.
    pub fn membership(&self) -> Membership {
        let cs = self.node.raft.prs().conf().to_conf_state();
        let sorted = |mut ids: Vec<u64>| {
            ids.sort_unstable();
            ids
        };
        Membership {
            voters: sorted(cs.voters),
            outgoing: sorted(cs.voters_outgoing),
            learners: sorted(cs.learners),
        }
    }

    /// Proposes making `id` a learner of this group (it receives the log
    /// without voting) when this replica leads, `id` is not a member yet,
    /// and no other membership change is on its way.
    pub fn add_learner(&mut self, id: u64) {
        let m = self.membership();
        if m.voters.contains(&id) || m.outgoing.contains(&id) || m.learners.contains(&id) {
            return;
        }
        self.propose_learner_change(raft::eraftpb::ConfChangeType::AddLearnerNode, id);
    }

    /// Proposes taking learner `id` out of this group (as
    /// [`Self::add_learner`]: leading, nothing else on its way).
    pub fn remove_learner(&mut self, id: u64) {
        if self.membership().learners.contains(&id) {
            self.propose_learner_change(raft::eraftpb::ConfChangeType::RemoveNode, id);
        }
    }

    pub(super) fn propose_learner_change(&mut self, kind: raft::eraftpb::ConfChangeType, id: u64) {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeV2};
        if !self.leader_ready() {
            return;
        }
        let raft = &self.node.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return;
        }
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        match self
            .node
            .propose_conf_change(generation_context(self.generation), cc)
        {
            Ok(()) => {
                tracing::info!(id = self.id, learner = id, change = ?kind, "learner change proposed")
            }
            Err(e) => tracing::debug!(id = self.id, error = %e, "learner change not proposed"),
        }
    }

    /// Sets (or clears) the voters this group should move to. Whoever
    /// leads takes the group there one step at a time: each new replica is
    /// added as a learner; once every learner holds what was committed
    /// when the last one was added, a joint configuration (old and new
    /// voters both deciding) switches them to voters and takes out the
    /// replicas leaving; a leader that is not among the new voters hands
    /// leadership to one that is; then the joint configuration is left.
    /// Setting the old voters back cancels a move that has not switched
    /// yet (the learners are removed).
    pub fn set_target_voters(&mut self, target: Option<Vec<u64>>) {
        let target = target.map(|mut t| {
            t.sort_unstable();
            t.dedup();
            t
        });
        if target != self.target {
            self.catch_up_mark = None;
        }
        self.target = target;
    }

    /// Keeps learners that are not in the target (see `keep_learners`).
    pub fn keep_learners(&mut self) {
        self.keep_learners = true;
    }

    /// Whether the membership is the target's (or there is no target).
    pub fn membership_reached(&self) -> bool {
        let Some(target) = &self.target else {
            return true;
        };
        let m = self.membership();
        m.outgoing.is_empty() && m.learners.is_empty() && &m.voters == target
    }

    /// One step of a move towards the target voters (see
    /// [`Self::set_target_voters`]), on the leader, when no membership
    /// change is in flight.
    pub(super) fn drive_membership(&mut self) {
        use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
        let Some(target) = self.target.clone() else {
            return;
        };
        if !self.leader_ready() || self.node.raft.lead_transferee.is_some() {
            return;
        }
        let raft = &self.node.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return; // a change is on its way
        }
        let committed = raft.raft_log.committed;
        let m = self.membership();
        let single = |kind: ConfChangeType, id: u64| {
            let mut c = ConfChangeSingle::default();
            c.set_change_type(kind);
            c.node_id = id;
            c
        };
        let change = |changes: Vec<ConfChangeSingle>, transition: ConfChangeTransition| {
            let mut cc = ConfChangeV2::default();
            cc.set_transition(transition);
            cc.set_changes(changes.into());
            cc
        };
        let cc = if !m.outgoing.is_empty() {
            // Joint: leave it from a leader among the new voters.
            if m.voters.contains(&self.id) {
                ConfChangeV2::default()
            } else {
                self.hand_over_to_one_of(&m.voters, committed);
                return;
            }
        } else if let Some(&stray) = m
            .learners
            .iter()
            .find(|l| !self.keep_learners && !target.contains(l))
        {
            // A learner of a cancelled move.
            change(
                vec![single(ConfChangeType::RemoveNode, stray)],
                ConfChangeTransition::Auto,
            )
        } else if let Some(&new) = target
            .iter()
            .find(|t| !m.voters.contains(t) && !m.learners.contains(t))
        {
            change(
                vec![single(ConfChangeType::AddLearnerNode, new)],
                ConfChangeTransition::Auto,
            )
        } else if m.voters == target {
            return; // reached
        } else {
            let mark = *self.catch_up_mark.get_or_insert(committed);
            let caught_up = m.learners.iter().filter(|l| target.contains(l)).all(|&l| {
                raft.prs().get(l).is_some_and(|pr| {
                    pr.matched >= mark && pr.state == raft::ProgressState::Replicate
                })
            });
            if !caught_up {
                return;
            }
            let mut changes: Vec<ConfChangeSingle> = target
                .iter()
                .filter(|t| !m.voters.contains(t))
                .map(|&t| single(ConfChangeType::AddNode, t))
                .collect();
            changes.extend(
                m.voters
                    .iter()
                    .filter(|v| !target.contains(v))
                    // A leaving voter of the controller group stays an
                    // observer (it still receives the metadata log).
                    .map(|&v| {
                        let kind = if self.keep_learners {
                            ConfChangeType::AddLearnerNode
                        } else {
                            ConfChangeType::RemoveNode
                        };
                        single(kind, v)
                    }),
            );
            change(changes, ConfChangeTransition::Explicit)
        };
        if let Err(e) = self
            .node
            .propose_conf_change(generation_context(self.generation), cc)
        {
            tracing::debug!(id = self.id, error = %e, "membership change not proposed");
        }
    }

    /// Transfers leadership to a caught-up, reachable replica of `among`
    /// (at most once per election timeout).
    pub(super) fn hand_over_to_one_of(&mut self, among: &[u64], committed: u64) {
        if self.ticks - self.last_transfer < self.timing.election_ticks as u64 {
            return;
        }
        let window = self.timing.election_ticks as u64;
        let raft = &self.node.raft;
        let next = among.iter().copied().find(|&id| {
            raft.prs().get(id).is_some_and(|pr| pr.matched >= committed)
                && self
                    .last_heard
                    .get(&id)
                    .is_some_and(|&t| self.ticks - t <= window)
        });
        if let Some(id) = next {
            self.last_transfer = self.ticks;
            self.node.transfer_leader(id);
        }
    }
}
