//! A broker in a cluster: the controller quorum and the node's Raft host.
//!
//! Every broker listed in `controller.quorum.voters` runs:
//! - the internal listener (broker-to-broker Raft traffic, and the Kafka
//!   requests other brokers send, see [`crate::replication::transport`]) and
//!   one [`Host`] thread that drives every Raft group of this node;
//! - a replica of the controller group `__cluster_metadata`, whose committed
//!   records ([`MetadataRecord`]) every broker applies to its
//!   [`ClusterImage`] — rebuilt from the group's log at start;
//! - a registration loop that proposes this broker's client address until the
//!   image holds it.
//!
//! Admin requests propose a record and wait until the image shows its effect
//! (records are applied in the same order everywhere, so the image answers
//! whether the proposal won). The broker opens and closes its partition
//! replicas to match the image ([`crate::broker::Broker::reconcile`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_storage::{Clock, LogConfig};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::error::BrokerError;
use crate::replication::host::{Applier, Host};
use crate::replication::metadata::{self, ClusterImage, ListenerEndpoint, MetadataRecord};
use crate::replication::replica::{Replica, Timing};
use crate::replication::store::ReplicaStore;
use crate::replication::transport::{self, KafkaLink, Sender};
use crate::security::tls::TlsContext;

/// The controller group's name (its folder in the data folder too).
pub const CONTROLLER_GROUP: &str = "__cluster_metadata";

/// How soon an unanswered proposal is sent again while waiting for its
/// effect (a proposal made while there is no leader is dropped); the wait
/// doubles after each try up to [`REPROPOSE_AT_MOST`], so a large record
/// that takes long to commit and apply (a topic of 20,000 partitions) is
/// not appended again and again meanwhile.
const REPROPOSE_EVERY: Duration = Duration::from_millis(500);
const REPROPOSE_AT_MOST: Duration = Duration::from_secs(4);

/// Inter-broker Kafka connections accepted on the internal listener and
/// not yet taken by the server (it takes them once it serves clients).
const KAFKA_LINKS_QUEUED: usize = 64;

pub struct Cluster {
    pub me: u64,
    pub voters: Vec<(u64, SocketAddr)>,
    /// Whether this node votes in the controller quorum; a broker that does
    /// not (Kafka's `process.roles=broker`) follows the metadata log as a
    /// Raft learner once the active controller has added it.
    pub voter: bool,
    /// Where this node's internal listener listens.
    internal: SocketAddr,
    /// The data folder's directory id (`meta.properties`), in Kafka's
    /// text form: registered with the broker, so the cluster tells a
    /// broker that lost its disk from one that did not.
    pub directory_id: String,
    /// The Raft transport's sender (the host has a clone): peers learnt
    /// from the image are added to it.
    sender: Sender,
    pub host: Arc<Host>,
    pub timing: Timing,
    image: watch::Sender<ClusterImage>,
    /// When (ms since the epoch) a controller leader was last known here.
    quorum_seen: AtomicU64,
    /// Inter-broker Kafka connections from the internal listener, until the
    /// server takes them ([`Self::take_kafka_links`]).
    kafka_links: std::sync::Mutex<Option<mpsc::Receiver<KafkaLink>>>,
    /// The internal listener's mutual TLS, when `inter.broker.listener.name`
    /// names a TLS listener; None: plaintext.
    pub internal_tls: Option<Arc<TlsContext>>,
    /// Each voter's host as `controller.quorum.voters` writes it: the name
    /// its certificate is checked against.
    voter_hosts: HashMap<u64, String>,
    /// When (ms since the epoch) the brokers' liveness was last reviewed
    /// here as the active controller.
    liveness_reviewed: AtomicU64,
    /// When this broker, as the active controller, last reviewed the
    /// balance of leaderships (0: not yet).
    balance_reviewed: AtomicU64,
    /// When the active controller last looked for partitions that need an
    /// unclean election.
    unclean_reviewed: AtomicU64,
    /// This controller voter's replica does not answer vote requests
    /// until the image says it may (see [`Self::review_abstention`]):
    /// the commit index its log had at start (the image must have
    /// replayed that far first), and whether that log was empty.
    abstention: std::sync::Mutex<Option<Abstention>>,
}

/// See [`Cluster::review_abstention`].
struct Abstention {
    replay_to: u64,
    fresh: bool,
    warned: bool,
}

/// How long without a controller leader before a broker counts itself cut
/// off (a few election timeouts).
pub const CUT_OFF_AFTER: Duration = Duration::from_secs(3);

/// A broker heard from within this long is up (brokers hear from each
/// other on every Raft tick).
const HEARD_NOW: Duration = Duration::from_secs(1);

/// How long the survivor of an unclean election has to publish its
/// leadership before the partition may be elected again.
const UNCLEAN_GRACE_MS: u64 = 30_000;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// Binds the internal listener and starts the host with the controller
    /// replica. Runs inside the Tokio runtime (the transport's tasks).
    pub async fn start(
        config: &Config,
        voters: Vec<(u64, SocketAddr)>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, BrokerError> {
        let me = config.node_id as u64;
        let own = voters.iter().find(|(id, _)| *id == me).map(|(_, a)| *a);
        let voter = own.is_some();
        // A broker that is not a voter has its own internal listener
        // (`Config::voters` checked that it is given).
        let bind = config.internal_listen.or(own).ok_or_else(|| {
            BrokerError::InvalidRequest(
                "a broker that is not a controller voter needs --internal-listen".into(),
            )
        })?;
        let directory_id = crate::replication::directory::load_or_create(&config.data_dir, me)
            .map(crate::replication::directory::format_id)
            .map_err(BrokerError::InvalidRequest)?;
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            BrokerError::InvalidRequest(format!("cannot bind the internal listener {bind}: {e}"))
        })?;
        let timing = Timing {
            election_ticks: 10,
            heartbeat_ticks: 2,
            lag_ticks: (config.replica_lag_time_max_ms / config.raft_tick_ms.max(1)).max(1),
        };
        let ids: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
        let store = ReplicaStore::open(
            &config.data_dir.join(CONTROLLER_GROUP),
            LogConfig::default(),
            clock,
            &ids,
            // Nothing reads the metadata log by offset: it keeps the
            // numbering it always had.
            false,
        )
        .map_err(|e| BrokerError::InvalidRequest(format!("controller log: {e}")))?;
        // Replay: the image is rebuilt from every committed record.
        let replay_to = store.commit_index();
        let fresh = store.hard_term() == 0 && store.with_log(|l| l.last_entry_index()) == 0;
        let mut replica = Replica::with_replay(me, store, timing, true)
            .map_err(|e| BrokerError::InvalidRequest(format!("controller replica: {e}")))?;
        replica.keep_learners();
        // A voter's memory of its votes is its data folder: it answers
        // vote requests only once the image (its own log replayed, then
        // the quorum's) shows this folder is the one it votes from. So
        // does a broker that does not vote now (AddRaftVoter may have made
        // it a voter before its disk was lost; Raft answers vote requests
        // whoever asks).
        replica.abstain();
        let abstention = Some(Abstention {
            replay_to,
            fresh,
            warned: false,
        });
        let (image, _) = watch::channel(ClusterImage::default());
        let applier: Applier = {
            let image = image.clone();
            Box::new(move |entry| apply_entry(&image, entry))
        };
        let internal_tls =
            TlsContext::for_internal_listener(config).map_err(BrokerError::InvalidRequest)?;
        let voter_hosts = config.voter_hosts();
        let peers: HashMap<u64, SocketAddr> = voters.iter().copied().collect();
        let sender = Sender::start_with_tls(me, &peers, &voter_hosts, internal_tls.clone());
        let host = Arc::new(Host::start_with(
            HashMap::from([(CONTROLLER_GROUP.to_owned(), replica)]),
            HashMap::from([(CONTROLLER_GROUP.to_owned(), applier)]),
            sender.clone(),
            Duration::from_millis(config.raft_tick_ms.max(1)),
        ));
        let (kafka_tx, kafka_rx) = mpsc::channel(KAFKA_LINKS_QUEUED);
        tokio::spawn(transport::serve_with_kafka(
            listener,
            host.deliver(),
            kafka_tx,
            internal_tls.clone(),
        ));
        if voter {
            tracing::info!(node = me, internal = %bind, voters = ?ids, mutual_tls = internal_tls.is_some(), "joined the controller quorum");
        } else {
            tracing::info!(node = me, internal = %bind, voters = ?ids, mutual_tls = internal_tls.is_some(),
                "a broker that is not a controller voter (process.roles=broker): following the controller quorum");
        }
        Ok(Arc::new(Self {
            me,
            voters,
            voter,
            internal: bind,
            directory_id,
            sender,
            host,
            timing,
            image,
            quorum_seen: AtomicU64::new(now_ms()),
            kafka_links: std::sync::Mutex::new(Some(kafka_rx)),
            internal_tls,
            voter_hosts,
            liveness_reviewed: AtomicU64::new(0),
            balance_reviewed: AtomicU64::new(0),
            unclean_reviewed: AtomicU64::new(0),
            abstention: std::sync::Mutex::new(abstention),
        }))
    }

    /// A controller voter starts abstaining (its replica answers no vote
    /// request) and stops once the image, having replayed its own log,
    /// says which data folder it votes from (`voter_directories`): this
    /// one, so it votes; or another one, the folder it voted from before
    /// this one replaced it (a wiped or replaced disk), so a vote now
    /// could be its second in a term, and it follows the quorum without
    /// voting until RemoveRaftVoter and AddRaftVoter name this folder. A
    /// log from before directory ids (none in the image) votes as before;
    /// an empty one waits for its first registration, or votes at once
    /// when a majority of the voters start empty (a new quorum: see
    /// `Replica::abstain`). Called every quarter second.
    pub fn review_abstention(&self) {
        let mut guard = self.abstention.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = guard.as_mut() else { return };
        let (applied, known, any) = self.with_image(|img| {
            (
                img.applied,
                img.voter_directories.get(&self.me).cloned(),
                !img.voter_directories.is_empty(),
            )
        });
        if applied < a.replay_to {
            return;
        }
        let votes = match &known {
            Some(dir) => *dir == self.directory_id,
            None => !a.fresh && !any,
        };
        if votes {
            self.host
                .act(CONTROLLER_GROUP, |r: &mut Replica| r.stop_abstaining());
            *guard = None;
            return;
        }
        let voter = self
            .with_image(|img| img.controller_voters.clone())
            .unwrap_or_else(|| self.voters.iter().map(|(id, _)| *id).collect())
            .contains(&self.me);
        if let Some(dir) = known
            && voter
            && !a.warned
        {
            a.warned = true;
            tracing::warn!(node = self.me, folder = %self.directory_id, votes_from = %dir,
                "this controller voter is back on another data folder than the one it voted from: \
                 it follows the quorum without voting until RemoveRaftVoter (directory {dir}) and \
                 AddRaftVoter (directory {}) make this folder its own", self.directory_id);
        }
    }

    /// Node `node`'s internal address (its `controller.quorum.voters`
    /// entry), where the Raft transport and other brokers' Kafka requests
    /// reach it.
    pub fn internal_address(&self, node: u64) -> Option<SocketAddr> {
        self.voters
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, a)| *a)
            .or_else(|| {
                self.with_image(|img| img.brokers.get(&node)?.internal.as_deref()?.parse().ok())
            })
    }

    /// Reaches every registered broker that is not a voter at the internal
    /// address it registered (called as the image changes).
    pub fn follow_brokers(&self) {
        let others: Vec<(u64, SocketAddr)> = self.with_image(|img| {
            img.brokers
                .iter()
                .filter_map(|(&id, b)| Some((id, b.internal.as_deref()?.parse().ok()?)))
                .collect()
        });
        for (id, addr) in others {
            if !self.voters.iter().any(|(v, _)| *v == id) {
                self.sender.add_peer(id, addr);
            }
        }
    }

    /// The controller quorum's voters: the configured ones until an
    /// AddRaftVoter or RemoveRaftVoter changed them.
    pub fn controller_voters(&self) -> Vec<u64> {
        self.with_image(|img| img.controller_voters.clone())
            .unwrap_or_else(|| {
                let mut ids: Vec<u64> = self.voters.iter().map(|(id, _)| *id).collect();
                ids.sort_unstable();
                ids
            })
    }

    /// As the active controller: takes the controller group to the voters
    /// the image names (AddRaftVoter, RemoveRaftVoter: a joint change, the
    /// leaving voters staying observers), and makes every other registered
    /// broker a learner of it, so that it receives the metadata log (one
    /// membership change at a time).
    pub fn admit_brokers(&self) {
        if !self.is_active_controller() || !self.caught_up() {
            return;
        }
        let (registered, changed): (Vec<u64>, Option<Vec<u64>>) = self.with_image(|img| {
            (
                img.brokers.keys().copied().collect(),
                img.controller_voters.clone(),
            )
        });
        let target = changed.clone().unwrap_or_else(|| self.controller_voters());
        self.host.act(CONTROLLER_GROUP, move |r| {
            if changed.is_some() {
                r.set_target_voters(changed);
            }
            let m = r.membership();
            let voting = |id: &u64| m.voters.contains(id) || m.outgoing.contains(id);
            if let Some(&id) = registered
                .iter()
                .find(|id| !voting(id) && !m.learners.contains(id))
            {
                r.add_learner(id);
            } else if let Some(&gone) = m
                .learners
                .iter()
                .find(|id| !registered.contains(id) && !target.contains(id))
            {
                // An unregistered broker no longer receives the log.
                r.remove_learner(gone);
            }
        });
    }

    /// The name node `node`'s certificate is checked against: the host of
    /// its `controller.quorum.voters` entry.
    pub fn server_name(&self, node: u64) -> Option<rustls::pki_types::ServerName<'static>> {
        let addr = self.internal_address(node)?;
        Some(transport::server_name(
            self.voter_hosts.get(&node).map(String::as_str),
            addr,
        ))
    }

    /// The inter-broker Kafka connections the internal listener accepts,
    /// for the one server that serves them (None once taken).
    pub fn take_kafka_links(&self) -> Option<mpsc::Receiver<KafkaLink>> {
        self.kafka_links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn image(&self) -> ClusterImage {
        self.image.borrow().clone()
    }

    /// Runs `f` on the current image without copying it (keep it short:
    /// the controller's applier waits meanwhile).
    pub fn with_image<T>(&self, f: impl FnOnce(&ClusterImage) -> T) -> T {
        f(&self.image.borrow())
    }

    pub fn subscribe(&self) -> watch::Receiver<ClusterImage> {
        self.image.subscribe()
    }

    /// The controller group's leader, if known here.
    pub fn controller(&self) -> Option<u64> {
        self.host.status(CONTROLLER_GROUP).and_then(|s| s.leader)
    }

    /// Whether the controller group has a leader and this broker's image
    /// holds every record committed so far.
    pub fn caught_up(&self) -> bool {
        self.host
            .status(CONTROLLER_GROUP)
            .is_some_and(|s| s.leader.is_some() && self.image.borrow().applied >= s.commit_index)
    }

    /// Whether this broker leads the controller quorum (Kafka's active
    /// controller).
    pub fn is_active_controller(&self) -> bool {
        self.host
            .status(CONTROLLER_GROUP)
            .is_some_and(|s| s.is_leader)
    }

    /// Notes whether the quorum is in sight (called every quarter second).
    pub fn note_quorum(&self) {
        if self.controller().is_some() {
            self.quorum_seen.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// True when this broker has seen no controller leader for
    /// [`CUT_OFF_AFTER`]: it is cut off from the majority, and what it knows
    /// of leaders is stale.
    pub fn cut_off(&self) -> bool {
        self.controller().is_none()
            && now_ms().saturating_sub(self.quorum_seen.load(Ordering::Relaxed))
                > CUT_OFF_AFTER.as_millis() as u64
    }

    /// As the active controller (caught up with the quorum), at most every
    /// `every`: fences the registered brokers not heard from for `session`
    /// (`broker.session.timeout.ms`) and unfences those heard again, by
    /// proposing the whole fenced set when it differs from the image's.
    /// Brokers hear from each other on every Raft tick (a ping when there is
    /// nothing else to send), so silence means the broker is down or cut
    /// off. A lost proposal is made again at the next review.
    pub fn review_liveness(&self, session: Duration, every: Duration) {
        if !self.is_active_controller() || !self.caught_up() {
            return;
        }
        let now = now_ms();
        if now.saturating_sub(self.liveness_reviewed.load(Ordering::Relaxed))
            < every.as_millis() as u64
        {
            return;
        }
        self.liveness_reviewed.store(now, Ordering::Relaxed);
        let heard = self.host.peers_heard();
        let at = std::time::Instant::now();
        let silent = |id: &u64| {
            heard
                .get(id)
                .is_some_and(|&t| at.saturating_duration_since(t) > session)
        };
        let (want, have): (BTreeSet<u64>, BTreeSet<u64>) = self.with_image(|img| {
            let want = img
                .brokers
                .keys()
                .filter(|&&id| id != self.me && silent(&id))
                .copied()
                .collect();
            (want, img.fenced.clone())
        });
        if want == have {
            return;
        }
        for id in want.difference(&have) {
            tracing::warn!(
                broker = id,
                session_ms = session.as_millis() as u64,
                "fencing a broker not heard from for broker.session.timeout.ms"
            );
        }
        for id in have.difference(&want) {
            tracing::info!(broker = id, "unfencing a broker heard from again");
        }
        let record = MetadataRecord::FenceBrokers {
            fenced: want.into_iter().collect(),
        };
        self.host
            .propose_anywhere(CONTROLLER_GROUP, metadata::encode(&record));
    }

    /// Whether this broker heard from broker `id` within the last second
    /// (brokers hear from each other on every Raft tick); itself always.
    pub fn heard_now(&self, id: u64) -> bool {
        id == self.me
            || self
                .host
                .peers_heard()
                .get(&id)
                .is_some_and(|t| t.elapsed() < HEARD_NOW)
    }

    /// [`Self::heard_now`] for many brokers: what this broker heard, as
    /// of this call.
    pub fn heard_now_all(&self) -> impl Fn(u64) -> bool + use<'_> {
        let heard = self.host.peers_heard();
        move |id| id == self.me || heard.get(&id).is_some_and(|t| t.elapsed() < HEARD_NOW)
    }

    /// As the active controller, every `interval`
    /// (`leader.imbalance.check.interval.seconds`; the first review one
    /// interval after this broker became active): asks for a preferred
    /// election of the partitions whose preferred broker leads too few of
    /// its own (`leader.imbalance.per.broker.percentage`, see
    /// [`ClusterImage::imbalanced`]).
    pub fn review_balance(&self, interval: Duration, percentage: u32) {
        if !self.is_active_controller() || !self.caught_up() {
            self.balance_reviewed.store(0, Ordering::Relaxed);
            return;
        }
        let now = now_ms();
        let last = self.balance_reviewed.load(Ordering::Relaxed);
        if last == 0 {
            self.balance_reviewed.store(now, Ordering::Relaxed);
            return;
        }
        if now.saturating_sub(last) < interval.as_millis() as u64 {
            return;
        }
        self.balance_reviewed.store(now, Ordering::Relaxed);
        let heard = self.host.peers_heard();
        let live =
            |id: u64| id == self.me || heard.get(&id).is_some_and(|t| t.elapsed() < HEARD_NOW);
        let partitions = self.with_image(|img| img.imbalanced(percentage, live));
        if partitions.is_empty() {
            return;
        }
        tracing::info!(
            partitions = partitions.len(),
            "leaderships out of balance: asking for a preferred leader election"
        );
        let record = MetadataRecord::ElectPreferred {
            partitions,
            at_ms: now,
            seen_epochs: Vec::new(),
        };
        self.host
            .propose_anywhere(CONTROLLER_GROUP, metadata::encode(&record));
    }

    /// As the active controller, once a second: starts an unclean election
    /// (see `MetadataRecord::UncleanElection`) of each partition whose
    /// topic allows it (`unclean.leader.election.enable`) and whose
    /// assigned brokers are fenced but for fewer than a majority, from the
    /// first of those left that this broker hears from. Fencing takes
    /// `broker.session.timeout.ms`: a broker that merely paused for a
    /// moment does not cost its partitions their log.
    pub fn review_unclean(&self, allowed: impl Fn(&str, i32, &metadata::TopicInfo) -> bool) {
        if !self.is_active_controller() || !self.caught_up() {
            return;
        }
        let now = now_ms();
        if now.saturating_sub(self.unclean_reviewed.load(Ordering::Relaxed)) < 1000 {
            return;
        }
        self.unclean_reviewed.store(now, Ordering::Relaxed);
        let heard = self.heard_now_all();
        let found = self.with_image(|img| {
            img.unclean_candidates(allowed, |_| true, &heard, now, UNCLEAN_GRACE_MS)
        });
        for (partition, survivor, seen) in found {
            tracing::warn!(topic = %partition.name, partition = partition.partition, survivor,
                "a majority of the partition's replicas is fenced and unclean.leader.election.enable is set: \
                 electing a replica left, which loses what only the others held");
            let record = MetadataRecord::UncleanElection {
                partition,
                survivor,
                seen,
                at_ms: now,
            };
            self.host
                .propose_anywhere(CONTROLLER_GROUP, metadata::encode(&record));
        }
    }

    /// Proposes `record` (again every half second, until `done` holds for
    /// the image or `timeout` passes) and returns the image that satisfied
    /// `done`.
    pub async fn propose_until(
        &self,
        record: &MetadataRecord,
        timeout: Duration,
        mut done: impl FnMut(&ClusterImage) -> bool,
    ) -> Result<ClusterImage, BrokerError> {
        let batch = metadata::encode(record);
        let mut rx = self.image.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut wait = REPROPOSE_EVERY;
        loop {
            if done(&rx.borrow_and_update()) {
                return Ok(rx.borrow().clone());
            }
            self.host.propose_anywhere(CONTROLLER_GROUP, batch.clone());
            if !self.voter {
                // Until the active controller has made this broker a learner
                // of the controller group, its replica knows no leader to
                // forward to: the voters forward the proposal themselves.
                self.propose_to_voters(&batch);
            }
            let next = (tokio::time::Instant::now() + wait).min(deadline);
            wait = (wait * 2).min(REPROPOSE_AT_MOST);
            loop {
                match tokio::time::timeout_at(next, rx.changed()).await {
                    Ok(Ok(())) => {
                        if done(&rx.borrow_and_update()) {
                            return Ok(rx.borrow().clone());
                        }
                    }
                    Ok(Err(_)) => return Err(BrokerError::RequestTimedOut),
                    Err(_) => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?record, "no controller quorum answered in time");
                return Err(BrokerError::RequestTimedOut);
            }
        }
    }

    /// Sends a proposal of the controller group straight to every voter
    /// (a follower forwards it to its leader; the records are idempotent).
    fn propose_to_voters(&self, batch: &[u8]) {
        for &(id, _) in &self.voters {
            let entry = raft::eraftpb::Entry {
                data: batch.to_vec().into(),
                ..Default::default()
            };
            let mut m = raft::eraftpb::Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
            m.from = self.me;
            m.to = id;
            m.set_entries(vec![entry].into());
            self.sender.send(CONTROLLER_GROUP, m);
        }
    }

    /// Waits (at most `limit`) until the controller group has a leader and
    /// this broker's image holds every record committed so far, so the
    /// broker does not answer clients from an image still being rebuilt
    /// (existing topics would look unknown). False when the limit passed.
    pub async fn wait_caught_up(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.caught_up() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Registers this broker's listeners (their advertised addresses; the
    /// first is also the record's host and port), retrying until the image
    /// holds them (runs for the broker's life: a re-registration after a
    /// change of address goes through the same loop).
    pub async fn register(self: Arc<Self>, listeners: Vec<ListenerEndpoint>, rack: Option<String>) {
        let Some(first) = listeners.first().cloned() else {
            return;
        };
        let internal = (!self.voter).then(|| self.internal.to_string());
        let record = MetadataRecord::RegisterBroker {
            node_id: self.me,
            host: first.host.clone(),
            port: first.port,
            listeners: listeners.clone(),
            rack: rack.clone(),
            internal: internal.clone(),
            directory_id: Some(self.directory_id.clone()),
        };
        let me = self.me;
        let directory_id = Some(self.directory_id.clone());
        loop {
            let registered = |img: &ClusterImage| {
                img.brokers.get(&me).is_some_and(|b| {
                    b.host == first.host
                        && b.port == first.port
                        && b.listeners == listeners
                        && b.rack == rack
                        && b.internal == internal
                        && b.directory_id == directory_id
                })
            };
            match self
                .propose_until(&record, Duration::from_secs(3600), registered)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = me, host = %first.host, port = first.port, listeners = listeners.len(), "registered with the controller quorum");
                    // Unregistered (UnregisterBroker) while running: as in
                    // Kafka, the broker registers again.
                    let mut rx = self.image.subscribe();
                    if rx.wait_for(|img| !registered(img)).await.is_err() {
                        return;
                    }
                    tracing::warn!(
                        node = me,
                        "this broker's registration was removed while it runs: registering again"
                    );
                }
                Err(_) => tokio::time::sleep(REPROPOSE_EVERY).await,
            }
        }
    }

    /// Stops the host thread (the replicas' logs stay as they are; the
    /// partitions close them).
    pub fn stop(&self) {
        self.host.shutdown();
    }
}

fn apply_entry(image: &watch::Sender<ClusterImage>, entry: &raft::eraftpb::Entry) {
    if entry.data.is_empty() || entry.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
        // Raft's own entry: nothing to apply, but the image is now current
        // up to it (quietly: nothing to reconcile).
        image.send_if_modified(|img| {
            img.applied = img.applied.max(entry.index);
            false
        });
        return;
    }
    match metadata::decode(&bytes::Bytes::copy_from_slice(&entry.data)) {
        Ok(record) => image.send_modify(|img| {
            if let Err(reason) = img.apply(entry.index, &record) {
                tracing::debug!(index = entry.index, %reason, "metadata record skipped");
            }
        }),
        Err(e) => tracing::error!(index = entry.index, error = %e, "undecodable metadata record"),
    }
}

/// A cluster id every broker of one quorum derives alike (unless
/// `cluster.id` sets one): from the voters.
pub fn derived_cluster_id(voters: &[(u64, SocketAddr)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in voters {
        for b in format!("{id}@{addr},").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("sluice-{h:016x}")
}
