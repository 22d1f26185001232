//! One replica of a partition's Raft group: a raft-rs `RawNode` over the
//! partition log, driven by plain calls (tick, step, propose, ready) that
//! return what to send and how far the high watermark moved. No sockets and
//! no clock of its own: the caller (the broker's replication task, or the
//! in-memory network of the tests) decides when time passes and how
//! messages travel.

use raft::eraftpb::{Entry, Message};
use raft::{Config, RawNode, StateRole};

use super::store::{Command, ReplicaStore, StoreError};

mod membership;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the log moved: the entry would not land at index {expected}")]
    Moved { expected: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

/// Where a proposal landed in the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
    /// The offsets the batch's records get (every replica assigns the same).
    pub base_offset: i64,
    pub last_offset: i64,
}

/// How many offsets the batch an entry is stored as takes: its records for
/// a produced batch; for Raft's own entries none with dense offsets, else
/// one (their control batch).
fn offsets_taken(e: &Entry, dense: bool) -> i64 {
    if e.get_entry_type() == raft::eraftpb::EntryType::EntryNormal && !e.data.is_empty() {
        sluice_storage::BatchHeader::parse(&e.data).map_or(1, |h| h.last_offset_delta as i64 + 1)
    } else if dense {
        0
    } else {
        1
    }
}

/// What one `ready` call produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to deliver to their `to` replica.
    pub messages: Vec<Message>,
    /// The new high watermark (offset after the last committed entry), when
    /// it moved.
    pub high_watermark: Option<i64>,
    /// Entries committed by this call, in order (for state machines such
    /// as the controller's metadata image).
    pub committed: Vec<Entry>,
}

impl Output {
    /// Adds what a later call produced.
    fn absorb(&mut self, later: Output) {
        self.messages.extend(later.messages);
        self.committed.extend(later.committed);
        if later.high_watermark.is_some() {
            self.high_watermark = later.high_watermark;
        }
    }
}

/// A ready whose entries are written but not yet synced (see
/// [`Replica::ready_begin`]): Raft has taken it back (the replica goes on
/// taking messages) and counts it as persisted at
/// [`Replica::ready_persisted`].
pub struct Unsynced {
    /// Raft's number for the ready.
    number: u64,
    /// Messages that may leave only once the entries are durable.
    persisted: Vec<Message>,
    sync: Option<sluice_storage::SyncPoint>,
}

impl Unsynced {
    /// What must be synced before [`Replica::ready_persisted`].
    pub fn take_sync_point(&mut self) -> Option<sluice_storage::SyncPoint> {
        self.sync.take()
    }
}

/// Ticks (of the caller's choosing) before a follower that heard nothing
/// starts an election, and between a leader's heartbeats.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A voter that has not caught up with the leader for this many ticks
    /// leaves the in-sync replicas (Kafka's `replica.lag.time.max.ms`).
    pub lag_ticks: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            election_ticks: 10,
            heartbeat_ticks: 2,
            lag_ticks: 300,
        }
    }
}

pub struct Replica {
    pub id: u64,
    node: RawNode<ReplicaStore>,
    store: ReplicaStore,
    high_watermark: i64,
    timing: Timing,
    /// Ticks since this replica started.
    ticks: u64,
    /// Tick at which each peer was last heard from.
    last_heard: std::collections::HashMap<u64, u64>,
    /// Tick at which each voter last held every entry this leader's log
    /// had one tick before (Kafka's last caught-up time; reset with the
    /// term): a follower keeping up with a steady stream of writes never
    /// holds the very last one when it answers.
    caught_up: std::collections::HashMap<u64, u64>,
    /// The leader's last entry index at the previous tick.
    last_index_at_tick: u64,
    /// The term this replica last led in, and the tick it began to.
    led: (u64, u64),
    /// On a leader, the voters (Raft ids, sorted) caught up within
    /// `Timing::lag_ticks`, itself included: Kafka's ISR. Empty elsewhere.
    in_sync: Vec<u64>,
    /// How many times `in_sync` changed.
    in_sync_changes: u64,
    /// The replica that should lead when it can (Kafka's preferred leader:
    /// the first of the partition's assigned replicas).
    preferred: Option<u64>,
    /// Until this tick, a leader that is not the preferred replica hands
    /// over to it once it is caught up (a preferred election asked for it:
    /// ElectLeaders or the controller's leader balancing).
    hand_over_until: u64,
    last_transfer: u64,
    /// A leader believed this replica holds entries it does not (its log was
    /// lost): the next heartbeat answer tells it.
    lost_log: bool,
    /// The highest entry every voter is known to hold: on a leader, the
    /// least of its voters' matched indexes; on a follower, what its leader
    /// said in `fully_replicated_term` (see [`Self::fully_replicated`]).
    fully_replicated: u64,
    fully_replicated_term: u64,
    /// That entry as last clipped to this replica's own commit, and the
    /// offset after it.
    fully_replicated_at: (u64, i64),
    /// Whether this group may go quiet when idle (see [`Self::quiesce`]).
    may_quiesce: bool,
    /// The leader asked this follower to go quiet and it agreed.
    quiet_asked: bool,
    /// The voters this group moves to (a reassignment), if any: whoever
    /// leads drives the membership changes (see [`Self::drive_membership`]).
    target: Option<Vec<u64>>,
    /// The commit index when every new replica had become a learner: they
    /// are caught up once they hold it.
    catch_up_mark: Option<u64>,
    /// Learners outside the target stay (the controller group's
    /// observers: brokers that receive the metadata log without voting).
    keep_learners: bool,
    /// The group's generation (see `metadata::Generation`): membership
    /// changes proposed here carry it, and those of an earlier generation
    /// (the log the survivor of an unclean election kept) are not taken in.
    generation: u32,
    /// Votes asked of this replica are not answered (see
    /// [`Self::abstain`]).
    abstaining: bool,
    /// While abstaining with an empty log: the voters whose vote requests
    /// showed an empty log too.
    empty_peers: std::collections::BTreeSet<u64>,
}

/// A group's membership as this replica's configuration says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (of the incoming configuration, in a joint one).
    pub voters: Vec<u64>,
    /// The outgoing voters of a joint configuration (empty otherwise).
    pub outgoing: Vec<u64>,
    /// Replicas that receive the log without voting.
    pub learners: Vec<u64>,
}

/// One voter of a group as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterProgress {
    pub id: u64,
    /// The offset after the last entry the voter is known to hold.
    pub log_end_offset: i64,
    /// Ticks since the leader last heard from it (None: not since the
    /// leader's replica started).
    pub heard_ticks_ago: Option<u64>,
    /// Ticks since it last held every entry of the leader's log (None: not
    /// in this term).
    pub caught_up_ticks_ago: Option<u64>,
}

/// An entry index carried in a message's context (8 bytes, big-endian).
fn decode_index(context: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(context.get(..8)?.try_into().ok()?))
}

/// The byte after the index in a heartbeat's context that asks its follower
/// to go quiet (see [`Replica::quiesce`]).
const QUIET: u8 = 1;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Replica {
    pub fn new(id: u64, store: ReplicaStore, timing: Timing) -> Result<Self, ReplicaError> {
        Self::with_replay(id, store, timing, false)
    }

    /// With `replay`, every committed entry still in the log is handed out
    /// again by the first `ready` calls, for a state machine that is rebuilt
    /// from the log at start (the controller's metadata image).
    pub fn with_replay(
        id: u64,
        store: ReplicaStore,
        timing: Timing,
        replay: bool,
    ) -> Result<Self, ReplicaError> {
        let applied = {
            use raft::Storage;
            if replay {
                store.first_index()? - 1
            } else {
                store.initial_state()?.hard_state.commit
            }
        };
        let config = Config {
            id,
            election_tick: timing.election_ticks,
            heartbeat_tick: timing.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Config::default()
        };
        let node = RawNode::new(&config, store.clone(), &logger())?;
        let high_watermark = store.offset_after(applied)?;
        Ok(Self {
            id,
            node,
            store,
            high_watermark,
            timing,
            ticks: 0,
            last_heard: Default::default(),
            caught_up: Default::default(),
            last_index_at_tick: 0,
            abstaining: false,
            empty_peers: Default::default(),
            led: (0, 0),
            in_sync: Vec::new(),
            in_sync_changes: 0,
            preferred: None,
            hand_over_until: 0,
            last_transfer: 0,
            lost_log: false,
            fully_replicated: 0,
            fully_replicated_term: 0,
            fully_replicated_at: (0, 0),
            may_quiesce: false,
            quiet_asked: false,
            target: None,
            catch_up_mark: None,
            keep_learners: false,
            generation: 0,
        })
    }

    pub fn store(&self) -> &ReplicaStore {
        &self.store
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.node.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    /// The current term: the partition's leader epoch.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The offset below which every replica of the group holds the log (0
    /// until this replica knows). A record there will never be sent to any
    /// replica again, so the log cleaner may drop a tombstone only below it:
    /// a replica still missing the tombstone would otherwise receive the
    /// cleaned log without it and keep the older values of its key.
    ///
    /// The leader knows it from its voters' progress and tells its followers
    /// with every append and heartbeat (in the message's context, a field
    /// Raft leaves to the application for these messages); a follower
    /// forgets it when the term changes, until the new leader says.
    pub fn fully_replicated(&self) -> i64 {
        self.fully_replicated_at.1
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.ticks == 1
            && self.preferred == Some(self.id)
            && self.term() == 0
            && self.node.raft.prs().conf().voters().ids().contains(self.id)
        {
            // A new group: its preferred replica stands at once, so the
            // first leader is the one the assignment intends (no election
            // timeout to wait out, no hand-over right after). Only a
            // voter: Raft lets any replica campaign when told to, and a
            // new incarnation of the preferred broker (its disk wiped while
            // the group was new) is not one until the group adds it; the
            // other replicas, empty too, would elect it, and a leader
            // outside its own configuration is Raft's panic.
            if let Err(e) = self.node.campaign() {
                tracing::debug!(error = %e, "first campaign refused");
            }
        }
        self.update_in_sync();
        self.last_index_at_tick = self.node.raft.raft_log.last_index();
        if self.abstaining && self.last_index_at_tick > 0 {
            // Nor does it stand (its vote for itself could be a second one
            // too); with an empty log it may, a group forming.
            self.node.raft.election_elapsed = 0;
        }
        self.node.tick();
        self.maybe_hand_over();
        self.drive_membership();
    }

    /// Stops answering vote requests: this replica's memory of its votes
    /// may be gone (it runs on a fresh data folder, and the voter it is
    /// may have voted from another one), so a vote it gave could be its
    /// second in that term. Nor does it stand for election once its log
    /// holds anything (with an empty log it wins only where every log is
    /// empty); it follows a leader.
    /// Abstention ends with [`Self::stop_abstaining`] (its folder is known
    /// to be the one it votes from), or when a majority of the voters,
    /// itself included, show an empty log in their vote requests while
    /// its own is empty: a group forming, where there is no earlier vote
    /// to contradict. (A majority of wiped disks looks the same; nothing
    /// can tell it from a new group.)
    pub fn abstain(&mut self) {
        self.abstaining = true;
    }

    /// Answers vote requests again (see [`Self::abstain`]).
    pub fn stop_abstaining(&mut self) {
        if std::mem::take(&mut self.abstaining) {
            tracing::info!(id = self.id, "votes again");
        }
    }

    pub fn abstaining(&self) -> bool {
        self.abstaining
    }

    /// Whether an abstaining replica drops the vote request `m` (it may end
    /// the abstention: see [`Self::abstain`]).
    fn abstains_from(&mut self, m: &Message) -> bool {
        use raft::eraftpb::MessageType;
        if !self.abstaining {
            return false;
        }
        let raft = &self.node.raft;
        let empty = raft.raft_log.last_index() == 0;
        if m.get_msg_type() == MessageType::MsgTimeoutNow && !empty {
            // A leader handing over: an abstaining replica does not stand.
            return true;
        }
        if !matches!(
            m.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) {
            return false;
        }
        if empty && m.index == 0 && m.log_term == 0 {
            self.empty_peers.insert(m.from);
        }
        let voters = raft.prs().conf().voters().ids();
        let empty_voters = voters
            .iter()
            .filter(|id| *id == self.id || self.empty_peers.contains(id))
            .count();
        if empty && voters.contains(self.id) && empty_voters > voters.len() / 2 {
            tracing::info!(
                id = self.id,
                empty = ?self.empty_peers,
                "a majority of the voters start with empty logs: a new group forming; votes"
            );
            self.abstaining = false;
            return false;
        }
        tracing::debug!(
            id = self.id,
            from = m.from,
            term = m.term,
            "vote request not answered: abstaining"
        );
        true
    }

    /// Recomputes the in-sync voters (see [`Self::in_sync`]): a voter is
    /// in sync when it caught up within `lag_ticks`, counted from when
    /// this replica began to lead at the earliest (a new leader starts
    /// with every voter in sync, as a Kafka leader starts from the ISR it
    /// was given, and drops the ones that do not catch up).
    fn update_in_sync(&mut self) {
        let leads = self.is_leader();
        if leads && self.led.0 != self.term() {
            self.led = (self.term(), self.ticks);
        }
        let (lag, since, ticks) = (self.timing.lag_ticks, self.led.1, self.ticks);
        let caught_up = &self.caught_up;
        let me = self.id;
        let conf = self.node.raft.prs().conf();
        let in_sync = |id: &u64| {
            *id == me || caught_up.get(id).map_or(since, |&t| t.max(since)) + lag >= ticks
        };
        // No allocation unless the set changed (this runs every tick).
        let mut count = 0;
        let mut same = true;
        if leads {
            for id in conf.voters().ids().iter().filter(in_sync) {
                count += 1;
                same &= self.in_sync.binary_search(&id).is_ok();
            }
        }
        if same && count == self.in_sync.len() {
            return;
        }
        let mut now: Vec<u64> = if leads {
            conf.voters().ids().iter().filter(in_sync).collect()
        } else {
            Vec::new()
        };
        now.sort_unstable();
        self.in_sync = now;
        self.in_sync_changes += 1;
    }

    /// On a leader, the voters caught up within `Timing::lag_ticks` (Raft
    /// ids, sorted), itself included: what Metadata reports as the ISR.
    /// Empty unless this replica leads.
    pub fn in_sync(&self) -> &[u64] {
        &self.in_sync
    }

    /// Counts the changes of [`Self::in_sync`] (the host's status carries
    /// it, so a broker knows when to look again).
    pub fn in_sync_changes(&self) -> u64 {
        self.in_sync_changes
    }

    /// A message from another replica. Messages for another term or from an
    /// unknown peer are Raft's to judge; an error means a corrupt message.
    pub fn step(&mut self, mut m: Message) -> Result<(), ReplicaError> {
        if m.to != self.id && super::broker_of(m.to) == super::broker_of(self.id) {
            // For an earlier incarnation of this broker (its disk was
            // wiped since): that member's votes and log are gone; this one
            // answers only once the group adds it (see `super::raft_id`).
            tracing::debug!(
                id = self.id,
                to = m.to,
                from = m.from,
                "message for an earlier incarnation of this broker: dropped"
            );
            return Ok(());
        }
        self.last_heard.insert(m.from, self.ticks);
        if self.abstains_from(&m) {
            return Ok(());
        }
        use raft::eraftpb::MessageType;
        let last = self.node.raft.raft_log.last_index();
        let from_leader = matches!(
            m.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat
        );
        // The leader's word on what every voter holds (see
        // `fully_replicated`); Raft itself never sees it.
        let context = if from_leader {
            std::mem::take(&mut m.context)
        } else {
            Default::default()
        };
        let told = decode_index(&context);
        let quiet = m.get_msg_type() == MessageType::MsgHeartbeat && context.get(8) == Some(&QUIET);
        let (term, from) = (m.term, m.from);
        match m.get_msg_type() {
            // A leader sends a follower the commit index up to what it last
            // knew the follower to have. A follower that lost its log (a
            // wiped disk) has less: it commits only what it holds (Raft
            // would stop on the impossible commit) and says so in its answer.
            MessageType::MsgHeartbeat if m.commit > last => {
                if !self.lost_log {
                    tracing::warn!(
                        from = m.from,
                        commit = m.commit,
                        last,
                        "the leader believes this replica holds entries it does not: refilling from the leader"
                    );
                }
                m.commit = last;
                self.lost_log = true;
            }
            // ... and its leader starts again from what it really holds.
            MessageType::MsgHeartbeatResponse if m.reject && self.is_leader() => {
                if let Some(pr) = self.node.raft.mut_prs().get_mut(m.from)
                    && m.reject_hint < pr.matched
                {
                    tracing::warn!(
                        peer = m.from,
                        believed = pr.matched,
                        holds = m.reject_hint,
                        "a replica lost entries it had acknowledged; sending them again"
                    );
                    pr.matched = m.reject_hint;
                    pr.become_probe();
                }
            }
            _ => {}
        }
        match self.node.step(m) {
            // An answer from a replica that is not (or no longer, or not
            // yet) a member: a membership change is under way; dropped.
            Err(raft::Error::StepPeerNotFound) => return Ok(()),
            // A proposal sent here by a broker that is not a member yet
            // (see `Cluster::propose_until`), while no leader is known: the
            // proposer sends it again.
            Err(raft::Error::ProposalDropped) => return Ok(()),
            other => other?,
        }
        self.follow_term();
        if self.abstaining && self.is_leader() && self.node.raft.raft_log.last_index() <= 1 {
            // Elected with an empty log: every vote came from an empty log
            // too, a group forming (see `abstain`).
            tracing::info!(
                id = self.id,
                "elected with an empty log: a new group forming; votes"
            );
            self.abstaining = false;
        }
        if self.is_leader() {
            let raft = &self.node.raft;
            let mark = self.last_index_at_tick.min(raft.raft_log.last_index());
            if raft.prs().get(from).is_some_and(|pr| pr.matched >= mark) {
                self.caught_up.insert(from, self.ticks);
            }
        }
        if let Some(index) = told
            && term == self.term()
            && self.leader() == Some(from)
        {
            self.fully_replicated = index;
        }
        self.quiet_asked = quiet
            && self.may_quiesce
            && !self.is_leader()
            && term == self.term()
            && self.leader() == Some(from);
        Ok(())
    }

    /// Lets this group go quiet when idle: a leader whose followers hold
    /// every entry stops heartbeating, and its followers stop counting
    /// towards an election, so an idle group costs nothing (the host wakes
    /// it on any input, and when a member's broker stops answering).
    pub fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }

    pub fn allow_quiesce(&mut self) {
        self.may_quiesce = true;
    }

    pub fn may_quiesce(&self) -> bool {
        self.may_quiesce
    }

    /// Whether the last message stepped was its leader asking this follower
    /// to go quiet (cleared by the call).
    pub fn take_quiet_asked(&mut self) -> bool {
        std::mem::take(&mut self.quiet_asked)
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether a replica on broker `broker` votes in this group.
    pub fn has_voter_on(&self, broker: u64) -> bool {
        self.node
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .any(|id| super::broker_of(id) == broker)
    }

    /// Whether this leader could go quiet now: everything it holds is
    /// committed and stored, every voter whose broker is `live` holds all of
    /// it and was heard within a heartbeat interval, those make a majority,
    /// no leadership transfer is under way, and no preferred election waits
    /// for a live preferred replica to take over.
    pub fn can_quiesce(&self, live: &dyn Fn(u64) -> bool) -> bool {
        let raft = &self.node.raft;
        if !self.may_quiesce
            || !self.leader_ready()
            || raft.lead_transferee.is_some()
            || self.node.has_ready()
        {
            return false;
        }
        let last = raft.raft_log.last_index();
        if raft.raft_log.committed != last || !raft.raft_log.unstable.entries.is_empty() {
            return false;
        }
        if self.hand_over_wanted() && self.preferred.is_some_and(live) {
            return false;
        }
        if self.target.is_some() && !self.membership_reached() {
            return false;
        }
        let window = 2 * self.timing.heartbeat_ticks as u64;
        let (mut voters, mut ready) = (0, 0);
        for id in raft.prs().conf().voters().ids().iter() {
            voters += 1;
            if id == self.id {
                ready += 1;
                continue;
            }
            if !live(id) {
                continue;
            }
            let caught_up = raft
                .prs()
                .get(id)
                .is_some_and(|pr| pr.matched == last && pr.state == raft::ProgressState::Replicate);
            let heard = self
                .last_heard
                .get(&id)
                .is_some_and(|&t| self.ticks.saturating_sub(t) <= window);
            if !(caught_up && heard) {
                return false;
            }
            ready += 1;
        }
        // Going quiet or not is a matter of liveness, never of safety: a
        // wrong guess costs an election timeout, not an entry.
        ready > voters / 2
    }

    /// The heartbeats that ask the followers whose broker is `live` to go
    /// quiet: they carry the commit index and what every voter holds, as
    /// heartbeats do, and a mark that says no more heartbeats follow until
    /// the leader wakes. Empty unless [`Self::can_quiesce`].
    pub fn quiesce(&self, live: &dyn Fn(u64) -> bool) -> Vec<Message> {
        if !self.can_quiesce(live) {
            return Vec::new();
        }
        let raft = &self.node.raft;
        let mut context = self.fully_replicated.to_be_bytes().to_vec();
        context.push(QUIET);
        let context = bytes::Bytes::from(context);
        let mut out = Vec::new();
        for id in raft.prs().conf().voters().ids().iter() {
            if id == self.id || !live(id) {
                continue;
            }
            let mut m = Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
            m.to = id;
            m.from = self.id;
            m.term = raft.term;
            m.commit = raft
                .prs()
                .get(id)
                .map_or(0, |pr| pr.matched)
                .min(raft.raft_log.committed);
            m.context = context.clone();
            out.push(m);
        }
        out
    }

    /// A new term: what the old leader said no longer comes with a leader
    /// that answers for it.
    fn follow_term(&mut self) {
        if self.term() != self.fully_replicated_term {
            self.fully_replicated_term = self.term();
            self.fully_replicated = 0;
            self.caught_up.clear();
        }
    }

    /// Voters this replica has heard from within an election timeout, itself
    /// included: on a leader, the replicas that can take a write now (what
    /// min.insync.replicas is checked against).
    pub fn reachable_replicas(&self) -> usize {
        let window = self.timing.election_ticks as u64;
        self.node
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .filter(|id| {
                *id == self.id
                    || self
                        .last_heard
                        .get(id)
                        .is_some_and(|&t| self.ticks.saturating_sub(t) <= window)
            })
            .count()
    }

    /// Every voter's progress as this leader sees it (Kafka's
    /// DescribeQuorum), by id; empty unless this replica leads.
    pub fn voter_progress(&self) -> Result<Vec<VoterProgress>, ReplicaError> {
        if !self.is_leader() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<u64> = self.node.raft.prs().conf().voters().ids().iter().collect();
        ids.sort_unstable();
        self.progress_of(ids)
    }

    /// As [`Self::voter_progress`], for the learners (Kafka's observers:
    /// brokers that follow the log without voting).
    pub fn learner_progress(&self) -> Result<Vec<VoterProgress>, ReplicaError> {
        if !self.is_leader() {
            return Ok(Vec::new());
        }
        self.progress_of(self.membership().learners)
    }

    fn progress_of(&self, ids: Vec<u64>) -> Result<Vec<VoterProgress>, ReplicaError> {
        let raft = &self.node.raft;
        let ago = |t: Option<&u64>| t.map(|&t| self.ticks.saturating_sub(t));
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(if id == self.id {
                VoterProgress {
                    id,
                    log_end_offset: self.store.offset_after(raft.raft_log.last_index())?,
                    heard_ticks_ago: Some(0),
                    caught_up_ticks_ago: Some(0),
                }
            } else {
                let matched = raft.prs().get(id).map_or(0, |pr| pr.matched);
                VoterProgress {
                    id,
                    log_end_offset: self.store.offset_after(matched)?,
                    heard_ticks_ago: ago(self.last_heard.get(&id)),
                    caught_up_ticks_ago: ago(self.caught_up.get(&id)),
                }
            });
        }
        Ok(out)
    }

    /// Sets the replica that should lead this group when it is caught up.
    pub fn set_preferred_leader(&mut self, preferred: Option<u64>) {
        self.preferred = preferred;
    }

    /// A preferred election: for the next `within` ticks, this leader
    /// (if it is not the preferred replica) hands leadership over once the
    /// preferred one is reachable and has every entry. Leadership does not
    /// move back by itself when a preferred replica returns: that would
    /// hit every client with a second round of NOT_LEADER_OR_FOLLOWER right
    /// after the first; the controller's balancing asks for it instead.
    pub fn request_hand_over(&mut self, within: u64) {
        self.hand_over_until = self.ticks + within;
    }

    /// Whether a preferred election asks this leader to hand over now.
    fn hand_over_wanted(&self) -> bool {
        self.ticks < self.hand_over_until
            && self.is_leader()
            && self.preferred.is_some_and(|p| p != self.id)
    }

    /// Hands leadership to the preferred replica when a preferred election
    /// asks for it and that replica is reachable and caught up (one attempt
    /// per election timeout).
    fn maybe_hand_over(&mut self) {
        if !self.hand_over_wanted() {
            return;
        }
        let Some(p) = self.preferred else { return };
        if self.ticks - self.last_transfer < self.timing.election_ticks as u64 {
            return;
        }
        let last = self.node.raft.raft_log.last_index();
        let caught_up = self
            .node
            .raft
            .prs()
            .get(p)
            .is_some_and(|pr| pr.matched == last);
        let heard = self
            .last_heard
            .get(&p)
            .is_some_and(|&t| self.ticks - t <= self.timing.election_ticks as u64);
        if caught_up && heard {
            self.last_transfer = self.ticks;
            self.node.transfer_leader(p);
        }
    }

    /// Proposes a batch from any replica: a follower forwards it to the
    /// leader it knows (the controller's records are proposed so). Nothing
    /// reports back whether it committed: the proposer watches the state it
    /// should change.
    pub fn propose_anywhere(&mut self, batch: Vec<u8>) -> Result<(), ReplicaError> {
        self.node.propose(vec![], batch)?;
        Ok(())
    }

    /// Proposes one produced record batch; it is appended (and given its
    /// offsets) at the next `ready`, and committed once a majority has it.
    ///
    /// The returned index and term identify the entry: once the commit index
    /// reaches `index`, the proposal was acknowledged if the entry there still
    /// has `term` (a leader change may have replaced it, and then it was not).
    pub fn propose(&mut self, batch: Vec<u8>) -> Result<Proposal, ReplicaError> {
        self.propose_entry(vec![], batch)
    }

    /// Proposes a command every replica carries out on its log once it
    /// commits (see [`Command`]); the proposal is acknowledged as
    /// [`Self::propose`]'s are.
    pub fn propose_command(&mut self, command: Command) -> Result<Proposal, ReplicaError> {
        self.propose_entry(command.encode(), vec![])
    }

    fn propose_entry(&mut self, context: Vec<u8>, data: Vec<u8>) -> Result<Proposal, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                leader: self.leader(),
            });
        }
        let (stored_end, stored_last) = self
            .store
            .with_log(|l| (l.log_end_offset(), l.last_entry_index()));
        let dense = self.store.dense_offsets();
        self.node.propose(context, data)?;
        // Offsets are assigned when the entry is stored: after the stored
        // log and the entries still waiting to be stored ahead of it.
        let pending = &self.node.raft.raft_log.unstable.entries;
        let (mine, ahead) = pending.split_last().expect("the proposal was just added");
        let base_offset = stored_end
            + ahead
                .iter()
                .filter(|e| e.index > stored_last)
                .map(|e| offsets_taken(e, dense))
                .sum::<i64>();
        Ok(Proposal {
            index: mine.index,
            term: mine.term,
            base_offset,
            last_offset: base_offset + offsets_taken(mine, dense) - 1,
        })
    }

    /// Proposes a batch only if it lands exactly where `at` says: at that
    /// index and offset, in that term. A proposer that predicted where its
    /// batches go (after a first `propose` told it) sends the next ones
    /// without waiting; if anything came in between — a dropped proposal, a
    /// new term — every later prediction is refused here rather than
    /// appended somewhere the proposer did not expect.
    pub fn propose_at(&mut self, batch: Vec<u8>, at: Proposal) -> Result<Proposal, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                leader: self.leader(),
            });
        }
        let raft_log = &self.node.raft.raft_log;
        if self.term() != at.term || raft_log.last_index() + 1 != at.index {
            return Err(ReplicaError::Moved { expected: at.index });
        }
        let p = self.propose(batch)?;
        if p != at {
            // Cannot happen while the index and term matched (the offsets
            // follow from the same entries); refuse to acknowledge it if it
            // ever does.
            tracing::error!(?p, ?at, "a proposal landed elsewhere than predicted");
            return Err(ReplicaError::Moved { expected: at.index });
        }
        Ok(p)
    }

    /// The last entry Raft knows to be in the store (entries above it may
    /// still wait in Raft's memory for the next `ready`).
    #[cfg(test)]
    pub(crate) fn persisted_index(&self) -> u64 {
        self.node.raft.raft_log.persisted
    }

    /// Raft's view of this replica, for test failures.
    #[cfg(test)]
    pub(crate) fn describe(&self) -> String {
        use raft::Storage;
        let raft = &self.node.raft;
        let mut out = format!(
            "replica {}: {:?} term {} leader {:?} commit {} applied {} first {} last {} (term {:?}) hw {} fully {}",
            self.id,
            raft.state,
            raft.term,
            self.leader(),
            raft.raft_log.committed,
            raft.raft_log.applied,
            self.store.first_index().unwrap_or(0),
            raft.raft_log.last_index(),
            raft.raft_log.term(raft.raft_log.last_index()).ok(),
            self.high_watermark,
            self.fully_replicated(),
        );
        if self.is_leader() {
            for (id, pr) in raft.prs().iter() {
                out.push_str(&format!(
                    " | peer {id}: {:?} matched {} next {} paused {} pending_snapshot {}",
                    pr.state,
                    pr.matched,
                    pr.next_idx,
                    pr.is_paused(),
                    pr.pending_snapshot
                ));
            }
        }
        out
    }

    /// The highest entry index known to be committed.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// The term of entry `index` in this replica's log, if it holds it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.node.raft.raft_log.term(index).ok()
    }

    /// The last entry carried out (commands applied) here.
    pub fn applied_index(&self) -> u64 {
        self.node.raft.raft_log.applied
    }

    /// Persists what Raft decided (entries, hard state; one fsync for all),
    /// and returns the messages to send and the high watermark: the
    /// begin-sync-persisted cycle of the host in one call, repeated while
    /// what the sync allowed (a leader's commit) makes more work.
    pub fn ready(&mut self) -> Result<Output, ReplicaError> {
        let mut out = Output::default();
        loop {
            let (more, pending) = self.ready_begin()?;
            out.absorb(more);
            let Some(mut unsynced) = pending else {
                return Ok(out);
            };
            let durable = match unsynced.take_sync_point() {
                Some(point) => Some(point.sync().map_err(StoreError::from)?),
                None => None,
            };
            out.absorb(self.ready_persisted(unsynced, durable)?);
        }
    }

    /// The first half of [`Self::ready`]: writes Raft's new entries and
    /// hard state without syncing them, carries out what was committed, and
    /// returns what may leave now (a leader's appends go out while its own
    /// disk syncs: Raft counts the leader's copy only once it is durable).
    /// When entries wait for the disk, the [`Unsynced`] says what to sync
    /// ([`Unsynced::take_sync_point`]); the host syncs every group's
    /// together and then calls [`Self::ready_persisted`]. Until then the
    /// replica takes messages, proposals and ticks, but no other `ready`.
    pub fn ready_begin(&mut self) -> Result<(Output, Option<Unsynced>), ReplicaError> {
        let mut out = Output::default();
        if !self.node.has_ready() {
            return Ok((out, None));
        }
        let mut rd = self.node.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.store.apply_snapshot(rd.snapshot())?;
            let hw = self
                .store
                .offset_after(rd.snapshot().get_metadata().index)?;
            if hw > self.high_watermark {
                self.high_watermark = hw;
                out.high_watermark = Some(hw);
            }
        }
        out.committed = rd.take_committed_entries();
        let commit = rd
            .hs()
            .map_or(self.node.raft.raft_log.committed, |hs| hs.commit);
        self.append_entries(rd.entries(), commit)?;
        // Commands are carried out before a commit index that covers them
        // can reach the disk: a restart hands out again only the entries
        // above the stored commit index.
        self.apply_commands(&out.committed)?;
        if let Some(hs) = rd.hs() {
            self.store.set_hard_state(hs)?;
        }
        let sync = if rd.entries().is_empty() {
            None
        } else {
            // Kafka's flush policy (flush.messages above 1): the entries
            // count as held once written, and are fsynced when
            // flush.messages or flush.ms says so (see `flush_point`).
            let (lazy, due) = self.store.flush_policy();
            if lazy && !due {
                None
            } else {
                Some(self.store.sync_point()?)
            }
        };
        match sync {
            None => {
                // Nothing waits for the disk: done at once, with what that
                // allows (a leader's commit) in the same output.
                out.messages.extend(rd.take_persisted_messages());
                let mut light = self.node.advance(rd);
                let committed = light.take_committed_entries();
                self.apply_commands(&committed)?;
                if let Some(c) = light.commit_index() {
                    self.store.set_commit(c);
                }
                out.messages.extend(light.take_messages());
                out.committed.extend(committed);
                self.node.advance_apply();
                self.answer_lost_log(&mut out.messages);
                self.finish_output(&mut out)?;
                Ok((out, None))
            }
            Some(point) => {
                let number = rd.number();
                let persisted = rd.take_persisted_messages();
                self.node.advance_append_async(rd);
                self.node.advance_apply();
                self.finish_output(&mut out)?;
                Ok((
                    out,
                    Some(Unsynced {
                        number,
                        persisted,
                        sync: Some(point),
                    }),
                ))
            }
        }
    }

    /// The second half of [`Self::ready_begin`], once its entries are
    /// durable (`durable`: the offset the sync reached): returns the
    /// messages that waited for the disk (a follower's answers, votes).
    /// What the sync allows next (a leader's commit) comes from the next
    /// `ready_begin`.
    pub fn ready_persisted(
        &mut self,
        unsynced: Unsynced,
        durable: Option<i64>,
    ) -> Result<Output, ReplicaError> {
        if let Some(durable) = durable {
            self.store.mark_durable(durable);
        }
        self.node.on_persist_ready(unsynced.number);
        let mut out = Output {
            messages: unsynced.persisted,
            ..Output::default()
        };
        self.answer_lost_log(&mut out.messages);
        self.finish_output(&mut out)?;
        Ok(out)
    }

    /// Under Kafka's flush policy, what to fsync now that flush.ms (or
    /// flush.messages) asks for it; the caller syncs it off the Raft
    /// thread and reports with [`Self::flushed`].
    pub fn flush_point(&self) -> Result<Option<sluice_storage::SyncPoint>, ReplicaError> {
        let (lazy, due) = self.store.flush_policy();
        Ok(if lazy && due {
            Some(self.store.sync_point()?)
        } else {
            None
        })
    }

    /// A flush of [`Self::flush_point`] made everything below `durable`
    /// durable.
    pub fn flushed(&self, durable: i64) {
        self.store.mark_durable(durable);
    }

    /// Heartbeat answers carry no log position; a rejected one with a hint
    /// does here when this replica lost its log (see `step`).
    fn answer_lost_log(&mut self, messages: &mut [Message]) {
        let answers = messages
            .iter()
            .any(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse);
        if answers && std::mem::take(&mut self.lost_log) {
            let last = self.node.raft.raft_log.last_index();
            for m in messages {
                if m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse {
                    m.reject = true;
                    m.reject_hint = last;
                }
            }
        }
    }

    /// What every output gets before it leaves: the high watermark of what
    /// it committed, the fully replicated point in a leader's appends, and
    /// the snapshots it sends reported.
    fn finish_output(&mut self, out: &mut Output) -> Result<(), ReplicaError> {
        if let Some(index) = out.committed.last().map(|e| e.index) {
            let hw = self.store.offset_after(index)?;
            if hw > self.high_watermark {
                self.high_watermark = hw;
                out.high_watermark = Some(hw);
            }
        }
        self.update_fully_replicated(&mut out.messages)?;
        self.report_snapshots_sent(&out.messages);
        Ok(())
    }

    /// Appends Raft's new entries. A membership change goes in only once
    /// the commit index that covers the changes before it is on disk: a
    /// configuration takes effect when applied, and a replica that
    /// restarted with a change in its log but an older commit index would
    /// otherwise campaign under a configuration two changes old, and could
    /// win with a majority that overlaps no majority of the newest one
    /// (the third of the conditions that make apply-time configurations
    /// safe; Raft refuses a campaign with a committed change unapplied, and
    /// a leader proposes a change only once the previous one is applied).
    /// `commit` covers the previous change: the leader sending this change
    /// had applied it.
    fn append_entries(&mut self, entries: &[Entry], commit: u64) -> Result<(), ReplicaError> {
        use raft::eraftpb::EntryType;
        let mut rest = entries;
        while let Some(at) = rest
            .iter()
            .position(|e| e.get_entry_type() != EntryType::EntryNormal)
        {
            let (before, from) = rest.split_at(at);
            self.store.append(before)?;
            self.store.sync()?;
            self.store.persist_commit(commit.min(from[0].index - 1))?;
            self.store.append(&from[..1])?;
            rest = &from[1..];
        }
        self.store.append(rest)?;
        Ok(())
    }

    /// A snapshot here is one message that carries all of it (where the
    /// leader's log begins), so once it is handed to the transport there is
    /// nothing more to wait for. Raft holds a follower it sent a snapshot to
    /// until told how the sending went, and if the message was lost (the
    /// follower was down, the connection broke) nobody would ever tell it:
    /// the follower would stay behind for good. Saying "sent" at once puts
    /// the follower back to probing: it answers the snapshot, or, if the
    /// snapshot never arrived, refuses the next append, and the leader sends
    /// the snapshot again.
    fn report_snapshots_sent(&mut self, messages: &[Message]) {
        use raft::eraftpb::MessageType;
        for m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.node
                    .report_snapshot(m.to, raft::SnapshotStatus::Finish);
            }
        }
    }

    fn apply_commands(&mut self, committed: &[Entry]) -> Result<(), ReplicaError> {
        use raft::eraftpb::EntryType;
        for e in committed {
            match e.get_entry_type() {
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_membership(e)?
                }
                EntryType::EntryNormal => {
                    if let Some(c) = Command::of(e) {
                        self.store.apply(c)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether this replica leads and has committed an entry of its own
    /// term: before that, its commit index may lag what the group
    /// committed (and commands there are not carried out yet), so it does
    /// not serve reads.
    pub fn leader_ready(&self) -> bool {
        let raft = &self.node.raft;
        self.is_leader() && raft.raft_log.term(raft.raft_log.committed).ok() == Some(raft.term)
    }

    /// Recomputes what every voter holds (a leader) and tells the followers
    /// in the appends and heartbeats about to leave.
    fn update_fully_replicated(&mut self, messages: &mut [Message]) -> Result<(), ReplicaError> {
        use raft::eraftpb::MessageType;
        self.follow_term();
        if self.is_leader() {
            let raft = &self.node.raft;
            let least = raft
                .prs()
                .conf()
                .voters()
                .ids()
                .iter()
                .map(|id| raft.prs().get(id).map_or(0, |pr| pr.matched))
                .min()
                .unwrap_or(0);
            self.fully_replicated = least;
            let context = bytes::Bytes::copy_from_slice(&least.to_be_bytes());
            for m in messages.iter_mut() {
                let tell = matches!(
                    m.get_msg_type(),
                    MessageType::MsgAppend | MessageType::MsgHeartbeat
                ) && m.context.is_empty();
                if tell {
                    m.context = context.clone();
                }
            }
        }
        // Never past what this replica itself holds committed.
        let index = self
            .fully_replicated
            .min(self.commit_index())
            .min(self.node.raft.raft_log.last_index());
        if index != self.fully_replicated_at.0 {
            let offset = if index == 0 {
                0
            } else {
                self.store.offset_after(index)?
            };
            self.fully_replicated_at = (index, offset);
        }
        Ok(())
    }
}
