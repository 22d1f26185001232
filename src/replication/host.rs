//! A node's Raft groups at work: one thread drives every replica this node
//! holds — ticks, messages from the transport, proposals — and sends what they
//! produce through the transport. One thread for all groups (not a task per
//! group) keeps 1,000 idle partitions at a tick loop's cost. The fsyncs run
//! on a second thread: each round's new entries, of every group, are synced
//! together (one syncfs) while the host thread goes on taking messages and
//! sending appends; a group's answers that needed the disk leave when its
//! round's sync comes back (raft-rs's asynchronous ready).
//!
//! Idle partition groups go quiet (their leader says so in a last
//! heartbeat): a quiet group is not ticked and sends nothing, so thousands
//! of idle partitions cost a broker almost nothing. What replaces their
//! heartbeats is one ping per tick to each peer node: when a node falls
//! silent for an election timeout, the quiet groups it led wake and elect,
//! and those it followed wake on the leader's side; when it answers again,
//! the leaders wake to catch it up. Any message or proposal wakes a group.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::replica::{Proposal, Replica, ReplicaError, Unsynced};
use super::store::Command;
use super::transport::{Deliver, Envelope, Sender};

/// What a group looks like from this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub term: u64,
    pub high_watermark: i64,
    /// Highest committed entry index.
    pub commit_index: u64,
    /// Replicas heard from within an election timeout, this one included
    /// (what min.insync.replicas is checked against on a leader).
    pub reachable: usize,
    /// The offset below which every replica holds the log (see
    /// [`super::replica::Replica::fully_replicated`]).
    pub fully_replicated: i64,
    /// This replica leads and has committed an entry of its term (see
    /// [`super::replica::Replica::leader_ready`]).
    pub leader_ready: bool,
    /// Changes so far of the leader's in-sync replicas (see
    /// [`super::replica::Replica::in_sync`]).
    pub in_sync_changes: u64,
}

/// Receives a proposal's outcome, on the host thread.
pub type Reply = Box<dyn FnOnce(Result<Proposal, ReplicaError>) + Send>;

/// Called on the host thread whenever a group's status changes (keep it
/// short: it runs between the groups' Raft rounds).
pub type Watcher = Box<dyn FnMut(&GroupStatus) + Send>;

/// Looks at a group's replica (None: no such group), on the host thread.
type Inspection = Box<dyn FnOnce(Option<&Replica>) + Send>;
type Action = Box<dyn FnOnce(&mut Replica) + Send>;

/// Called with each committed entry of a group, in order, on the host
/// thread (keep it short).
pub type Applier = Box<dyn FnMut(&raft::eraftpb::Entry) + Send>;

enum Input {
    Message(Envelope),
    ProposeAnywhere {
        group: String,
        batch: Vec<u8>,
    },
    Propose {
        group: String,
        batch: Vec<u8>,
        /// Where the proposer expects the entry (see [`Replica::propose`]).
        expect: Option<Proposal>,
        reply: Reply,
    },
    Command {
        group: String,
        command: Command,
        reply: Reply,
    },
    Add {
        group: String,
        replica: Box<Replica>,
        watcher: Option<Watcher>,
    },
    Remove {
        group: String,
    },
    /// Answered once everything proposed before it is written to the
    /// groups' logs, and what was written up to the round that took it is
    /// synced.
    Barrier(mpsc::Sender<()>),
    /// Runs on a group's replica (None: no such group here).
    Inspect {
        group: String,
        f: Inspection,
    },
    /// Changes a group's replica between rounds (waking it if quiet).
    Act {
        group: String,
        f: Action,
    },
    /// The sync thread finished the job of round `round`.
    Synced {
        round: u64,
        waiting: Synced,
        flushes: Synced,
    },
    Stop,
}

/// What the host thread shares with its handle.
#[derive(Clone, Default)]
struct Shared {
    status: Arc<Mutex<HashMap<String, GroupStatus>>>,
    quiet: Arc<std::sync::atomic::AtomicUsize>,
    /// When each peer was last heard from (copied every tick).
    heard: Arc<Mutex<HashMap<u64, Instant>>>,
}

/// Handle on a running host.
pub struct Host {
    inputs: mpsc::Sender<Input>,
    shared: Shared,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Host {
    /// Starts the driving thread for `replicas` (group name → replica),
    /// sending through `sender`, ticking every `tick`.
    pub fn start(replicas: HashMap<String, Replica>, sender: Sender, tick: Duration) -> Self {
        Self::start_with(replicas, HashMap::new(), sender, tick)
    }

    /// Like `start`, with appliers for the committed entries of some groups.
    pub fn start_with(
        replicas: HashMap<String, Replica>,
        appliers: HashMap<String, Applier>,
        sender: Sender,
        tick: Duration,
    ) -> Self {
        let (inputs, rx) = mpsc::channel();
        let shared = Shared::default();
        let thread = {
            let shared = shared.clone();
            let back = inputs.clone();
            std::thread::Builder::new()
                .name("raft-host".into())
                .spawn(move || drive(replicas, appliers, sender, rx, back, tick, shared))
                .expect("spawn the raft thread")
        };
        Self {
            inputs,
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Where the transport should hand received messages.
    pub fn deliver(&self) -> Deliver {
        let inputs = Mutex::new(self.inputs.clone());
        Arc::new(move |e| {
            inputs
                .lock()
                .map(|i| i.send(Input::Message(e)).is_ok())
                .unwrap_or(false)
        })
    }

    /// Proposes a produced batch to `group`; Ok once it is in the leader's
    /// log, with where (committed later: see [`Self::status`] and
    /// [`Proposal`]).
    pub fn propose(&self, group: &str, batch: Vec<u8>) -> Result<Proposal, ReplicaError> {
        let (reply, answer) = mpsc::channel();
        self.propose_then(
            group,
            batch,
            None,
            Box::new(move |r| {
                let _ = reply.send(r);
            }),
        );
        answer
            .recv()
            .unwrap_or(Err(ReplicaError::NotLeader { leader: None }))
    }

    /// Proposes without waiting: `reply` gets the outcome. With `expect`,
    /// the proposal is refused unless it lands exactly there (the proposer
    /// predicted its offsets; see [`Replica::propose_at`]).
    pub fn propose_then(
        &self,
        group: &str,
        batch: Vec<u8>,
        expect: Option<Proposal>,
        reply: Reply,
    ) {
        let input = Input::Propose {
            group: group.to_owned(),
            batch,
            expect,
            reply,
        };
        if let Err(mpsc::SendError(Input::Propose { reply, .. })) = self.inputs.send(input) {
            reply(Err(ReplicaError::NotLeader { leader: None }));
        }
    }

    /// Proposes a command for every replica of `group` (see
    /// [`Replica::propose_command`]); Ok once it is in the leader's log.
    pub fn propose_command(&self, group: &str, command: Command) -> Result<Proposal, ReplicaError> {
        let (reply, answer) = mpsc::channel();
        let input = Input::Command {
            group: group.to_owned(),
            command,
            reply: Box::new(move |r| {
                let _ = reply.send(r);
            }),
        };
        if self.inputs.send(input).is_err() {
            return Err(ReplicaError::NotLeader { leader: None });
        }
        answer
            .recv()
            .unwrap_or(Err(ReplicaError::NotLeader { leader: None }))
    }

    /// Waits until every proposal sent before this call has been written
    /// (or refused), and no sync of a group removed before it is still
    /// running.
    pub fn barrier(&self) {
        let (tx, rx) = mpsc::channel();
        if self.inputs.send(Input::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Runs `f` on `group`'s replica on the host thread, between rounds:
    /// what only the replica knows (its voters' progress). None when the
    /// group is not on this host (or the host stopped).
    pub async fn inspect<T: Send + 'static>(
        &self,
        group: &str,
        f: impl FnOnce(&Replica) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let f = Box::new(move |r: Option<&Replica>| {
            let _ = tx.send(r.map(f));
        });
        self.inputs
            .send(Input::Inspect {
                group: group.to_owned(),
                f,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Runs `f` on `group`'s replica on the host thread, between rounds,
    /// and wakes the group if it was quiet. Nothing happens when the group
    /// is not on this host.
    pub fn act(&self, group: &str, f: impl FnOnce(&mut Replica) + Send + 'static) {
        let _ = self.inputs.send(Input::Act {
            group: group.to_owned(),
            f: Box::new(f),
        });
    }

    /// Starts driving `replica` as `group` (a partition assigned to this
    /// node after start). A group already here is replaced.
    pub fn add_group(&self, group: &str, replica: Replica) {
        let _ = self.inputs.send(Input::Add {
            group: group.to_owned(),
            replica: Box::new(replica),
            watcher: None,
        });
    }

    /// Like `add_group`, with `watcher` told of every status change.
    pub fn add_group_watched(&self, group: &str, replica: Replica, watcher: Watcher) {
        let _ = self.inputs.send(Input::Add {
            group: group.to_owned(),
            replica: Box::new(replica),
            watcher: Some(watcher),
        });
    }

    /// Stops driving `group` (its partition moved away or was deleted); the
    /// replica is dropped, its files stay for the caller to remove.
    pub fn remove_group(&self, group: &str) {
        let _ = self.inputs.send(Input::Remove {
            group: group.to_owned(),
        });
    }

    /// Proposes from this node whether or not it leads `group`: a follower
    /// forwards to the leader. Nothing reports back: watch the state the
    /// record should change.
    pub fn propose_anywhere(&self, group: &str, batch: Vec<u8>) {
        let _ = self.inputs.send(Input::ProposeAnywhere {
            group: group.to_owned(),
            batch,
        });
    }

    pub fn status(&self, group: &str) -> Option<GroupStatus> {
        self.shared.status.lock().ok()?.get(group).copied()
    }

    /// When each peer was last heard from (any message, the pings every
    /// tick included), as of the last tick.
    pub fn peers_heard(&self) -> HashMap<u64, Instant> {
        self.shared
            .heard
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// How many of this host's groups were quiet at the last tick.
    pub fn quiet_groups(&self) -> usize {
        self.shared.quiet.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the thread after its current round and waits for it; the
    /// replicas are dropped without closing their logs, as a crash would
    /// leave them.
    pub fn shutdown(&self) {
        let _ = self.inputs.send(Input::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Like [`Self::shutdown`], consuming the handle.
    pub fn stop(self) {
        self.shutdown();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Stop);
    }
}

/// A group on the host.
struct Group {
    name: String,
    replica: Replica,
    last: GroupStatus,
    watcher: Option<Watcher>,
    /// Not ticked: its leader said nothing will happen until it wakes.
    quiet: bool,
    /// Ticks in a row this leader could have gone quiet.
    calm: usize,
    /// The ready waiting for the sync job of that round.
    syncing: Option<(u64, Unsynced)>,
    /// The first round that touched the group while it waited for a sync
    /// (its ready is not begun yet).
    pending_since: Option<u64>,
    /// The round whose sync job flushes the group in the background.
    flushing: Option<u64>,
}

impl Group {
    fn new(name: String, replica: Replica, watcher: Option<Watcher>) -> Self {
        Self {
            name,
            replica,
            last: GroupStatus::default(),
            watcher,
            quiet: false,
            calm: 0,
            syncing: None,
            pending_since: None,
            flushing: None,
        }
    }

    /// The ready that waited for the sync job of round `of`, if it is this
    /// group's (not a group since replaced under the same name).
    fn take_syncing(&mut self, of: u64) -> Option<Unsynced> {
        match &self.syncing {
            Some((round, _)) if *round == of => self.syncing.take().map(|(_, u)| u),
            _ => None,
        }
    }

    /// Notes the group's status in `changed` (and tells its watcher) when
    /// it moved.
    fn report(&mut self, changed: &mut Vec<(String, GroupStatus)>) {
        let r = &self.replica;
        let now = GroupStatus {
            leader: r.leader().map(super::broker_of),
            is_leader: r.is_leader(),
            term: r.term(),
            high_watermark: r.high_watermark(),
            commit_index: r.commit_index(),
            reachable: r.reachable_replicas(),
            fully_replicated: r.fully_replicated(),
            leader_ready: r.leader_ready(),
            in_sync_changes: r.in_sync_changes(),
        };
        if now != self.last {
            if now.is_leader != self.last.is_leader {
                let m = r.membership();
                tracing::debug!(group = %self.name, id = r.id, term = now.term, leads = now.is_leader,
                    voters = ?m.voters, outgoing = ?m.outgoing, "leadership changed");
            }
            self.last = now;
            if let Some(w) = &mut self.watcher {
                w(&now);
            }
            changed.push((self.name.clone(), now));
        }
    }

    fn wake(&mut self) {
        self.quiet = false;
        self.calm = 0;
    }
}

/// What a host knows of the other nodes: each tick it pings every peer (a
/// message of no group), and a peer heard from by no message for an
/// election timeout is taken for down. Quiet groups live on this: a quiet
/// follower elects a new leader only once its leader's node is down, and a
/// quiet leader wakes to see a follower go and to catch it up when it comes
/// back.
struct Liveness {
    peers: HashMap<u64, Peer>,
    down_after: Duration,
}

struct Peer {
    heard: Instant,
    live: bool,
}

impl Liveness {
    fn new(peers: Vec<u64>, down_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            peers: peers
                .into_iter()
                .map(|id| {
                    (
                        id,
                        Peer {
                            heard: now,
                            live: true,
                        },
                    )
                })
                .collect(),
            down_after,
        }
    }

    /// Follows the sender's peers (brokers that registered since).
    fn track(&mut self, peers: &[u64], now: Instant) {
        for &id in peers {
            self.peers.entry(id).or_insert(Peer {
                heard: now,
                live: true,
            });
        }
    }

    /// Notes a message from `id`; true if it had been taken for down.
    fn heard(&mut self, id: u64, now: Instant) -> bool {
        match self.peers.get_mut(&id) {
            Some(p) => {
                p.heard = now;
                !std::mem::replace(&mut p.live, true)
            }
            None => false,
        }
    }

    /// The peers that just went silent for too long.
    fn went_down(&mut self, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        for (&id, p) in &mut self.peers {
            if p.live && now.saturating_duration_since(p.heard) > self.down_after {
                p.live = false;
                out.push(id);
            }
        }
        out
    }

    /// Unknown nodes count as live (a quiet leader then waits for them).
    fn is_live(&self, id: u64) -> bool {
        self.peers.get(&id).is_none_or(|p| p.live)
    }
}

/// Ticks a leader must be able to go quiet, in election timeouts: long
/// enough for a follower that stopped answering to leave its reachable
/// replicas (and the ISR) first.
const CALM_ELECTIONS: usize = 2;

/// Wakes the quiet groups `peer` going down or coming back concerns: those
/// this node leads with `peer` among the voters, and, when it went down,
/// those it led.
fn wake_for(peer: u64, down: bool, groups: &mut [Group], touched: &mut [bool]) -> usize {
    let mut woken = 0;
    for (g, t) in groups.iter_mut().zip(touched.iter_mut()) {
        if !g.quiet {
            continue;
        }
        let r = &g.replica;
        if (r.is_leader() && r.has_voter_on(peer))
            || (down && r.leader().map(super::broker_of) == Some(peer))
        {
            g.wake();
            *t = true;
            woken += 1;
        }
    }
    woken
}

/// A round's fsyncs, for the sync thread.
struct SyncJob {
    round: u64,
    /// Groups whose ready waits for the sync.
    waiting: Vec<(String, sluice_storage::SyncPoint)>,
    /// Groups flushed in the background (Kafka's flush policy).
    flushes: Vec<(String, sluice_storage::SyncPoint)>,
}

type Synced = Vec<(String, sluice_storage::Result<i64>)>;

/// The sync thread: one job at a time, in the order the rounds sent them,
/// each one group commit (one syncfs for many files; see [`GroupSync`]).
/// The outcome goes back to the host thread as an input.
///
/// [`GroupSync`]: sluice_storage::GroupSync
fn sync_jobs(jobs: mpsc::Receiver<SyncJob>, back: mpsc::Sender<Input>) {
    let mut group_sync = sluice_storage::GroupSync::new(sluice_storage::SyncMethod::Auto);
    let mut sync = |points: Vec<(String, sluice_storage::SyncPoint)>| -> Synced {
        let (names, points): (Vec<String>, Vec<_>) = points.into_iter().unzip();
        names.into_iter().zip(group_sync.sync(points)).collect()
    };
    while let Ok(job) = jobs.recv() {
        let waiting = sync(job.waiting);
        let flushes = sync(job.flushes);
        let done = Input::Synced {
            round: job.round,
            waiting,
            flushes,
        };
        if back.send(done).is_err() {
            return;
        }
    }
}

fn drive(
    replicas: HashMap<String, Replica>,
    mut appliers: HashMap<String, Applier>,
    sender: Sender,
    inputs: mpsc::Receiver<Input>,
    back: mpsc::Sender<Input>,
    tick: Duration,
    shared: Shared,
) {
    let mut groups: Vec<Group> = replicas
        .into_iter()
        .map(|(name, r)| Group::new(name, r, None))
        .collect();
    let mut index: HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.clone(), i))
        .collect();
    let status = &shared.status;
    let mut peers = sender.peers();
    let mut liveness = Liveness::new(
        peers.clone(),
        tick * super::replica::Timing::default().election_ticks as u32,
    );
    // Only groups that got input (or a tick) need a `ready` this round.
    let mut touched = vec![true; groups.len()];
    let (jobs, job_inputs) = mpsc::channel();
    let syncer = match std::thread::Builder::new()
        .name("raft-sync".into())
        .spawn(move || sync_jobs(job_inputs, back))
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not start the raft sync thread");
            return;
        }
    };
    // The rounds whose sync job is not back yet, oldest first.
    let mut syncing: VecDeque<u64> = VecDeque::new();
    let mut round: u64 = 0;
    let mut next_tick = Instant::now() + tick;
    // Barriers with the round that took them.
    let mut barriers: Vec<(u64, mpsc::Sender<()>)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut changed = Vec::new();
    loop {
        round += 1;
        let wait = next_tick.saturating_duration_since(Instant::now());
        let first = match inputs.recv_timeout(wait) {
            Ok(i) => Some(i),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let now = Instant::now();
        let mut back = Vec::new();
        let mut stop = false;
        // Take everything already waiting, so one ready (one fsync) serves
        // many messages and proposals.
        for input in first.into_iter().chain(inputs.try_iter()) {
            match input {
                Input::Stop => {
                    stop = true;
                    break;
                }
                Input::Barrier(tx) => barriers.push((round, tx)),
                Input::Synced {
                    round: of,
                    waiting,
                    flushes,
                } => {
                    if syncing.front() == Some(&of) {
                        syncing.pop_front();
                    }
                    for (name, outcome) in flushes {
                        match (index.get(&name), outcome) {
                            (Some(&i), Ok(durable)) if groups[i].flushing == Some(of) => {
                                groups[i].flushing = None;
                                groups[i].replica.flushed(durable);
                            }
                            (Some(&i), Err(e)) if groups[i].flushing == Some(of) => {
                                groups[i].flushing = None;
                                tracing::error!(group = %name, error = %e, "fsync failed; retrying at the next tick");
                            }
                            _ => {}
                        }
                    }
                    for (name, outcome) in waiting {
                        let Some(&i) = index.get(&name) else {
                            continue;
                        };
                        let g = &mut groups[i];
                        let Some(unsynced) = g.take_syncing(of) else {
                            continue; // replaced since
                        };
                        touched[i] = true;
                        let durable = match outcome {
                            Ok(d) => d,
                            Err(e) => {
                                // Whether the entries reached the disk is
                                // unknown: Raft must not count them.
                                tracing::error!(group = %name, error = %e, "raft group failed to persist");
                                failed.push(name);
                                continue;
                            }
                        };
                        let r = &mut g.replica;
                        match catch_unwind(AssertUnwindSafe(|| {
                            r.ready_persisted(unsynced, Some(durable))
                        })) {
                            Ok(Ok(out)) => {
                                for m in out.messages {
                                    sender.send(&name, m);
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::error!(group = %name, error = %e, "raft group failed to persist")
                            }
                            Err(_) => failed.push(name),
                        }
                    }
                }
                Input::Inspect { group, f } => {
                    f(index.get(&group).map(|&i| &groups[i].replica));
                }
                Input::Act { group, f } => {
                    if let Some(&i) = index.get(&group) {
                        touched[i] = true;
                        let g = &mut groups[i];
                        let r = &mut g.replica;
                        if catch_unwind(AssertUnwindSafe(|| f(r))).is_err() {
                            failed.push(group);
                        } else {
                            g.wake();
                        }
                    }
                }
                Input::Message(e) => {
                    if liveness.heard(e.from, now) {
                        back.push(e.from);
                    }
                    if e.group.is_empty() {
                        continue; // a ping
                    }
                    match index.get(&e.group) {
                        Some(&i) => {
                            touched[i] = true;
                            let g = &mut groups[i];
                            // A follower's answer to a heartbeat changes
                            // nothing for a quiet leader; anything else
                            // means work.
                            let answer = e.message.get_msg_type()
                                == raft::eraftpb::MessageType::MsgHeartbeatResponse
                                && !e.message.reject;
                            let r = &mut g.replica;
                            match catch_unwind(AssertUnwindSafe(|| r.step(e.message))) {
                                Ok(Ok(())) => {}
                                Ok(Err(err)) => {
                                    tracing::warn!(group = %e.group, from = e.from, error = %err, "raft message refused")
                                }
                                Err(_) => failed.push(e.group.clone()),
                            }
                            if g.replica.take_quiet_asked() {
                                g.quiet = true;
                            } else if !answer {
                                g.wake();
                            }
                        }
                        None => {
                            tracing::debug!(group = %e.group, "raft message for a group not here")
                        }
                    }
                }
                Input::Add {
                    group,
                    replica,
                    watcher,
                } => match index.get(&group) {
                    Some(&i) => {
                        groups[i] = Group::new(group, *replica, watcher);
                        touched[i] = true;
                    }
                    None => {
                        index.insert(group.clone(), groups.len());
                        groups.push(Group::new(group, *replica, watcher));
                        touched.push(true);
                    }
                },
                Input::Remove { group } => {
                    drop_group(&group, &mut groups, &mut index, &mut touched, status);
                }
                Input::ProposeAnywhere { group, batch } => {
                    if let Some(&i) = index.get(&group) {
                        touched[i] = true;
                        groups[i].wake();
                        if let Err(e) = groups[i].replica.propose_anywhere(batch) {
                            tracing::debug!(%group, error = %e, "proposal dropped (no leader yet)");
                        }
                    }
                }
                Input::Propose {
                    group,
                    batch,
                    expect,
                    reply,
                } => {
                    let r = match index.get(&group) {
                        Some(&i) => {
                            touched[i] = true;
                            groups[i].wake();
                            let r = &mut groups[i].replica;
                            match expect {
                                Some(at) => r.propose_at(batch, at),
                                None => r.propose(batch),
                            }
                        }
                        None => Err(ReplicaError::NotLeader { leader: None }),
                    };
                    reply(r);
                }
                Input::Command {
                    group,
                    command,
                    reply,
                } => {
                    let r = match index.get(&group) {
                        Some(&i) => {
                            touched[i] = true;
                            groups[i].wake();
                            groups[i].replica.propose_command(command)
                        }
                        None => Err(ReplicaError::NotLeader { leader: None }),
                    };
                    reply(r);
                }
            }
        }
        if stop {
            break;
        }
        for peer in back {
            let woken = wake_for(peer, false, &mut groups, &mut touched);
            tracing::info!(peer, woken, "raft peer answers again");
        }
        let ticked = now >= next_tick;
        let mut flushes = Vec::new();
        if ticked {
            for (t, g) in touched.iter_mut().zip(groups.iter_mut()) {
                if !g.quiet {
                    g.replica.tick();
                    *t = true;
                }
                // Kafka's flush policy: flush.ms (or flush.messages) asks
                // for an fsync that nothing waits for.
                if g.flushing.is_none() && g.syncing.is_none() {
                    match g.replica.flush_point() {
                        Ok(Some(point)) => {
                            g.flushing = Some(round);
                            flushes.push((g.name.clone(), point));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(group = %g.name, error = %e, "flush failed"),
                    }
                }
            }
            let now_peers = sender.peers();
            if now_peers.len() != peers.len() {
                liveness.track(&now_peers, now);
                peers = now_peers;
            }
            for &to in &peers {
                let ping = raft::eraftpb::Message {
                    to,
                    ..Default::default()
                };
                sender.send("", ping);
            }
            if let Ok(mut heard) = shared.heard.lock() {
                heard.clear();
                heard.extend(liveness.peers.iter().map(|(&id, p)| (id, p.heard)));
            }
            for peer in liveness.went_down(now) {
                let woken = wake_for(peer, true, &mut groups, &mut touched);
                tracing::warn!(
                    peer,
                    woken,
                    "raft peer silent for an election timeout: taken for down"
                );
            }
            next_tick += tick;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick;
            }
        }
        let live = |id| liveness.is_live(super::broker_of(id));
        // Every touched group writes its new entries and sends what may
        // leave before they are durable (a leader's appends); the sync
        // thread then makes all of them durable in one round (group commit
        // across Raft groups) while this thread goes on, and each group
        // sends what waited for the disk when the round comes back. A group
        // waiting for its sync takes messages and proposals meanwhile; its
        // next ready waits for the sync.
        let mut waiting = Vec::new();
        for (t, g) in touched.iter_mut().zip(groups.iter_mut()) {
            if !*t || failed.contains(&g.name) {
                continue;
            }
            if g.syncing.is_some() {
                g.pending_since.get_or_insert(round);
                continue;
            }
            *t = false;
            g.pending_since = None;
            let name = &g.name;
            let r = &mut g.replica;
            let begun = match catch_unwind(AssertUnwindSafe(|| r.ready_begin())) {
                Ok(b) => b,
                Err(_) => {
                    failed.push(name.clone());
                    continue;
                }
            };
            match begun {
                Ok((out, unsynced)) => {
                    for m in out.messages {
                        sender.send(name, m);
                    }
                    if let Some(apply) = appliers.get_mut(name.as_str()) {
                        out.committed.iter().for_each(apply);
                    }
                    if let Some(mut u) = unsynced {
                        if let Some(point) = u.take_sync_point() {
                            waiting.push((name.clone(), point));
                        }
                        g.syncing = Some((round, u));
                    }
                }
                Err(e) => {
                    tracing::error!(group = %name, error = %e, "raft group failed to persist")
                }
            }
            if g.syncing.is_none() && ticked && !g.quiet && r.may_quiesce() && r.is_leader() {
                if r.can_quiesce(&live) {
                    g.calm += 1;
                } else {
                    g.calm = 0;
                }
                if g.calm >= CALM_ELECTIONS * r.timing().election_ticks {
                    for m in r.quiesce(&live) {
                        sender.send(name, m);
                    }
                    g.quiet = true;
                    g.calm = 0;
                }
            }
            g.report(&mut changed);
        }
        if !waiting.is_empty() || !flushes.is_empty() {
            let job = SyncJob {
                round,
                waiting,
                flushes,
            };
            if jobs.send(job).is_err() {
                tracing::error!("the raft sync thread stopped");
                break;
            }
            syncing.push_back(round);
        }
        if !changed.is_empty()
            && let Ok(mut s) = status.lock()
        {
            s.extend(changed.drain(..));
        }
        if ticked {
            let quiet = groups.iter().filter(|g| g.quiet).count();
            shared
                .quiet
                .store(quiet, std::sync::atomic::Ordering::Relaxed);
        }
        // A barrier is answered once everything taken up to its round is
        // written and what was begun up to then is synced.
        let oldest_pending = groups.iter().filter_map(|g| g.pending_since).min();
        let oldest_syncing = syncing.front().copied();
        barriers.retain(|(at, tx)| {
            let done =
                oldest_pending.is_none_or(|p| p > *at) && oldest_syncing.is_none_or(|s| s > *at);
            if done {
                let _ = tx.send(());
            }
            !done
        });
        // A group whose Raft code panicked is in no state to go on: it
        // stops here (its partition reports no leader), the others go on.
        for group in failed.drain(..) {
            tracing::error!(%group, "raft group failed and was stopped on this broker; restart the broker to reopen it");
            if let Some(&i) = index.get(&group)
                && let Some(w) = &mut groups[i].watcher
            {
                w(&GroupStatus::default());
            }
            drop_group(&group, &mut groups, &mut index, &mut touched, status);
        }
    }
    drop(jobs);
    let _ = syncer.join();
}

/// Stops driving `group` on this host (its replica is dropped).
fn drop_group(
    group: &str,
    groups: &mut Vec<Group>,
    index: &mut HashMap<String, usize>,
    touched: &mut Vec<bool>,
    status: &Mutex<HashMap<String, GroupStatus>>,
) {
    if let Some(i) = index.remove(group) {
        groups.swap_remove(i);
        touched.swap_remove(i);
        if let Some(moved) = groups.get(i) {
            index.insert(moved.name.clone(), i);
        }
        if let Ok(mut s) = status.lock() {
            s.remove(group);
        }
    }
}
