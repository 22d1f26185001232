//! The controller quorum's state machine: cluster metadata records and the
//! image every broker builds by applying them in log order.
//!
//! Records travel in the controller group's Raft log like any entry: one
//! record batch holding one record whose value is the record in JSON (the
//! log stays a Kafka log, readable by the same tools). Applying is pure and
//! deterministic: every broker that applies the same committed records holds
//! the same image, and a record that does not apply (a topic created twice,
//! one deleted that is not there) is skipped the same way everywhere, with
//! the reason returned for the proposer to report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::security::listener::ListenerEndpoint;
use sluice_storage::BatchHeader;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};

use crate::security::acl::AclBinding;
use crate::security::sasl::scram::{CredentialMap, ScramCredential, ScramMechanism};

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker announces itself and where clients reach it: `host` and
    /// `port` are its first listener's, `listeners` every listener's
    /// (absent from the records of brokers that predate listeners, which
    /// had one PLAINTEXT listener: `host` and `port`).
    RegisterBroker {
        node_id: u64,
        host: String,
        port: u16,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        listeners: Vec<ListenerEndpoint>,
        /// Its `broker.rack` (absent when it has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rack: Option<String>,
        /// Where other brokers reach its internal listener: set by a broker
        /// that is not a controller voter (voters are reached at their
        /// `controller.quorum.voters` address).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        internal: Option<String>,
        /// Its data folder's directory id (`meta.properties`); absent from
        /// the records of brokers that predate directory ids.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directory_id: Option<String>,
    },
    /// A topic with its replica assignment (partition → replicas, the first
    /// being the preferred leader) and its config overrides. `dense_offsets`:
    /// its partitions' Raft entries of their own take no offset (see
    /// `store::entry_to_batch`); absent (false) in the records of topics
    /// created before that, whose logs keep numbering as they did.
    CreateTopic {
        name: String,
        topic_id: String,
        assignment: Vec<Vec<u64>>,
        configs: BTreeMap<String, String>,
        #[serde(default)]
        dense_offsets: bool,
    },
    DeleteTopic {
        name: String,
    },
    /// Partitions added to a topic that has `from` partitions, with their
    /// replicas (applies once: a retried proposal finds the count moved).
    CreatePartitions {
        name: String,
        from: usize,
        added: Vec<Vec<u64>>,
    },
    /// The topic's config overrides, replaced as a whole.
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A group's config overrides (ConfigResource GROUP), replaced as a
    /// whole; empty removes them. The group need not exist.
    AlterGroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// SCRAM credentials set (`credential` Some) or removed (None), all
    /// at once (AlterUserScramCredentials). With `if_absent`, a credential
    /// is set only where the user has none for that mechanism yet: the
    /// bootstrap credentials of `sluice scram add`, which every broker
    /// proposes at its start.
    AlterScramCredentials {
        changes: Vec<ScramChange>,
        #[serde(default)]
        if_absent: bool,
    },
    /// A partition's Raft group elected `leader` in term `epoch` (published
    /// by the leader, for the brokers that hold no replica of it).
    PartitionLeader {
        name: String,
        topic_id: String,
        partition: i32,
        leader: u64,
        epoch: u64,
    },
    /// Many `PartitionLeader`s in one record: a broker that just took the
    /// leadership of thousands of partitions (a restart) publishes them in
    /// a few entries, not one each.
    PartitionLeaders {
        leaders: Vec<LeaderOf>,
    },
    /// ACLs added (CreateAcls); one already there is left as it is.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// ACLs removed (DeleteAcls, the bindings its filters matched); one not
    /// there is left out.
    DeleteAcls {
        acls: Vec<AclBinding>,
    },
    /// The brokers fenced now (the whole set, replacing the one before):
    /// the active controller has not heard from them for
    /// `broker.session.timeout.ms`. They leave Metadata, DescribeCluster
    /// and every ISR until it hears from them again.
    FenceBrokers {
        fenced: Vec<u64>,
    },
    /// A preferred leader election (ElectLeaders, or the active
    /// controller's leader balancing): the leaders of these partitions hand
    /// over to their preferred replica once it is caught up. `at_ms` is
    /// when it was asked (the proposer's clock): leaders act on it only
    /// while it is recent, so an old request does not move a leadership
    /// that a later failover placed.
    ElectPreferred {
        partitions: Vec<PartitionRef>,
        at_ms: u64,
        /// The leader epoch the proposer saw for each partition (empty
        /// from the leader balancing, and in records of earlier releases):
        /// an image whose published leadership is older than that (the
        /// new leader's record not in yet) does not take the preferred
        /// replica for the leader.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        seen_epochs: Vec<u64>,
    },
    /// A broker leaves the cluster (UnregisterBroker): gone from the
    /// brokers and the fenced set. Refused while it holds a replica.
    UnregisterBroker {
        node_id: u64,
    },
    /// A reassignment of one partition (AlterPartitionReassignments):
    /// `target` Some starts one, or replaces the one under way; None
    /// cancels it (the group goes back to its assigned replicas).
    AlterReassignment {
        partition: PartitionRef,
        target: Option<Vec<u64>>,
    },
    /// The controller quorum's voters change (AddRaftVoter,
    /// RemoveRaftVoter) from `before` — the set the proposer saw: the
    /// configured `controller.quorum.voters` while none was made — to
    /// `after`. Applies only while the voters are still `before` (two
    /// concurrent changes: the second changes nothing). The active
    /// controller then takes the controller group there.
    ControllerVoters {
        before: Vec<u64>,
        after: Vec<u64>,
    },
    /// The partition's Raft group reached the reassignment's target
    /// (published by its leader): `replicas` become its assignment.
    CompleteReassignment {
        partition: PartitionRef,
        replicas: Vec<u64>,
    },
    /// An unclean leader election (ElectLeaders UNCLEAN, or the active
    /// controller for a topic with `unclean.leader.election.enable`): the
    /// partition's Raft group lost a majority of its voters, and
    /// `survivor`, one of its assigned brokers, starts the next generation
    /// of the group alone with what its log holds; the other replicas drop
    /// theirs and join the new group empty. What only the lost replicas
    /// held is gone. Applies only while the partition is still in
    /// generation `seen` (two elections asked at once: one happens).
    UncleanElection {
        partition: PartitionRef,
        survivor: u64,
        seen: u32,
        at_ms: u64,
    },
}

/// A partition's group after an unclean election (see
/// [`MetadataRecord::UncleanElection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// 1 for the first unclean election, and so on (0: the group as
    /// created).
    pub number: u32,
    /// The survivor's Raft id: the new group's only voter at its start.
    pub survivor: u64,
    /// The highest leader epoch published before: the new group's terms
    /// are above it, so clients see the epoch grow.
    pub epoch_floor: u64,
    pub at_ms: u64,
    /// The brokers known to vote in the new group: the survivor, and each
    /// replica its leaders have since reported in sync (only voters are).
    pub members: Vec<u64>,
}

/// One partition of a topic (by name and id, so a record outlived by its
/// topic does not touch a new topic of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRef {
    pub name: String,
    pub topic_id: String,
    pub partition: i32,
}

/// A reassignment under way: the replicas the partition moves to. A
/// cancelled one moves back to the assigned replicas and is no longer
/// listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub target: Vec<u64>,
    pub cancelled: bool,
    /// Replicas of an earlier target (replaced or cancelled) that may still
    /// be in the group: they keep their replica until the move is done.
    pub leaving: Vec<u64>,
}

/// A preferred election asked for one partition: the index of the record
/// that asked (so a leader acts on each request once) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Election {
    pub index: u64,
    pub at_ms: u64,
}

/// One credential change of `AlterScramCredentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramChange {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: Option<ScramCredential>,
}

/// One partition's leader and epoch, as `PartitionLeaders` carries them,
/// and the brokers whose replicas the leader finds in sync (Kafka's ISR;
/// absent from records of brokers that did not report it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderOf {
    pub name: String,
    pub topic_id: String,
    pub partition: i32,
    pub leader: u64,
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<u64>>,
    /// The group's generation (see [`Generation`]; absent: 0): a leader of
    /// an earlier generation is not taken in.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub host: String,
    pub port: u16,
    /// Every listener's advertised address; empty for a broker that
    /// registered before listeners existed.
    pub listeners: Vec<ListenerEndpoint>,
    pub rack: Option<String>,
    /// A broker that is not a controller voter: its internal listener.
    pub internal: Option<String>,
    /// Its data folder's directory id (None: registered before directory
    /// ids).
    pub directory_id: Option<String>,
}

impl BrokerInfo {
    /// Where clients of listener `name` reach this broker; None when the
    /// broker has no such listener. A broker registered without listeners
    /// has the one PLAINTEXT listener `host:port`, served to every client.
    pub fn endpoint(&self, name: &str) -> Option<(String, u16)> {
        if self.listeners.is_empty() {
            return Some((self.host.clone(), self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name))
            .map(|l| (l.host.clone(), l.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic_id: String,
    pub assignment: Vec<Vec<u64>>,
    pub configs: BTreeMap<String, String>,
    /// Raft's own entries take no offset in its partitions' logs.
    pub dense_offsets: bool,
    /// Each partition's first voters as Raft ids (see
    /// [`super::raft_id`]), as the group started: a replica opened empty
    /// starts from them and replays the membership changes after.
    pub first_voters: Vec<Vec<u64>>,
}

/// What every broker knows of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterImage {
    pub brokers: BTreeMap<u64, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// The last published (leader, epoch) of each (topic, partition).
    pub leaders: BTreeMap<(String, i32), (u64, u64)>,
    /// The in-sync replicas (brokers) the leader of that epoch last
    /// published; none until it does.
    pub isr: BTreeMap<(String, i32), Vec<u64>>,
    /// Groups' config overrides.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The ACLs every broker authorizes with (shared: images are cloned
    /// often, ACLs change rarely).
    pub acls: Arc<BTreeSet<AclBinding>>,
    /// Users' SCRAM credentials.
    pub scram_credentials: CredentialMap,
    /// Brokers fenced (see [`MetadataRecord::FenceBrokers`]).
    pub fenced: BTreeSet<u64>,
    /// Preferred elections asked for and not done yet (the preferred
    /// replica does not lead), by (topic, partition).
    pub elections: BTreeMap<(String, i32), Election>,
    /// Reassignments under way, by (topic, partition).
    pub reassignments: BTreeMap<(String, i32), Reassignment>,
    /// Each broker's incarnation: how many times it registered with a
    /// directory id other than the one before (a wiped or replaced disk).
    /// Kept after UnregisterBroker, so an id never comes back as an
    /// incarnation it had before.
    pub incarnations: BTreeMap<u64, u32>,
    /// The directory ids each broker registered before its current one
    /// (its earlier data folders).
    pub past_directories: BTreeMap<u64, Vec<String>>,
    /// The controller quorum's voters since an AddRaftVoter or
    /// RemoveRaftVoter (None: the configured `controller.quorum.voters`).
    pub controller_voters: Option<Vec<u64>>,
    /// The data folder (directory id) each node may vote from in the
    /// controller quorum: the first it registered with, or the one it had
    /// when AddRaftVoter made it a voter (gone with RemoveRaftVoter). A
    /// voter back on another folder does not vote (see
    /// `Cluster::review_abstention`).
    pub voter_directories: BTreeMap<u64, String>,
    /// Partitions whose group was started again by an unclean election,
    /// by (topic, partition).
    pub generations: BTreeMap<(String, i32), Generation>,
    /// Raft index of the last record applied.
    pub applied: u64,
}

impl ClusterImage {
    fn apply_leader(&mut self, l: &LeaderOf) -> Result<(), String> {
        let LeaderOf {
            name,
            topic_id,
            partition,
            leader,
            epoch,
            generation,
            ..
        } = l;
        let (partition, leader, epoch, generation) = (*partition, *leader, *epoch, *generation);
        let isr = l.isr.as_deref();
        let current = self.generation(name, partition);
        if generation < current {
            return Err(format!(
                "{name}-{partition}: a leader of generation {generation}, the group is in {current}"
            ));
        }
        let known = self
            .topics
            .get(name)
            .filter(|t| t.topic_id == *topic_id)
            .is_some_and(|t| (0..t.assignment.len() as i32).contains(&partition));
        if !known {
            return Err(format!(
                "no partition {name}-{partition} with id {topic_id}"
            ));
        }
        let key = (name.to_owned(), partition);
        match self.leaders.get(&key) {
            // The same leadership, its in-sync replicas changed.
            Some(&(l, e)) if e == epoch && l == leader => {
                let Some(isr) = isr.filter(|isr| self.isr.get(&key).is_none_or(|i| i != isr))
                else {
                    return Err(format!("{name}-{partition}: epoch {epoch} is not newer"));
                };
                self.note_members(&key, isr);
                self.isr.insert(key, isr.to_vec());
                return Ok(());
            }
            Some((_, e)) if *e >= epoch => {
                return Err(format!("{name}-{partition}: epoch {epoch} is not newer"));
            }
            _ => {}
        }
        if self.preferred(name, partition) == Some(leader) {
            self.elections.remove(&key);
        }
        // An earlier leader's view of who is in sync is not this one's.
        match isr {
            Some(isr) => {
                self.note_members(&key, isr);
                self.isr.insert(key.clone(), isr.to_vec())
            }
            None => self.isr.remove(&key),
        };
        self.leaders.insert(key, (leader, epoch));
        Ok(())
    }

    /// After an unclean election, the replicas its leaders report in sync
    /// are voters of the new group (see [`Generation::members`]).
    fn note_members(&mut self, key: &(String, i32), isr: &[u64]) {
        if let Some(g) = self.generations.get_mut(key) {
            for id in isr {
                if !g.members.contains(id) {
                    g.members.push(*id);
                }
            }
        }
    }

    /// Applies the record at Raft `index`. Indexes at or below `applied` are
    /// ignored (a replay after a restart). Err says why the record changed
    /// nothing; the image is unchanged then, on every broker alike.
    pub fn apply(&mut self, index: u64, record: &MetadataRecord) -> Result<(), String> {
        if index <= self.applied {
            return Ok(());
        }
        self.applied = index;
        match record {
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                listeners,
                rack,
                internal,
                directory_id,
            } => {
                let before = self
                    .brokers
                    .get(node_id)
                    .and_then(|b| b.directory_id.clone());
                let directory_id = directory_id.clone().or(before.clone());
                if let (Some(before), Some(now)) = (&before, &directory_id)
                    && before != now
                {
                    self.past_directories
                        .entry(*node_id)
                        .or_default()
                        .push(before.clone());
                    let incarnation = self.incarnations.entry(*node_id).or_default();
                    *incarnation += 1;
                    // Logged again whenever a broker replays the metadata
                    // log: the index tells an old change from a new one.
                    tracing::warn!(node = node_id, before = %before, now = %now, incarnation = *incarnation, index,
                        "broker came back with a new data folder: its replicas rejoin their groups as new members");
                }
                if let Some(dir) = &directory_id {
                    self.voter_directories
                        .entry(*node_id)
                        .or_insert_with(|| dir.clone());
                }
                self.brokers.insert(
                    *node_id,
                    BrokerInfo {
                        host: host.clone(),
                        port: *port,
                        listeners: listeners.clone(),
                        rack: rack.clone(),
                        internal: internal.clone(),
                        directory_id,
                    },
                );
                Ok(())
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                assignment,
                configs,
                dense_offsets,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("topic '{name}' already exists"));
                }
                if assignment.is_empty() || assignment.iter().any(|r| r.is_empty()) {
                    return Err(format!("topic '{name}' has a partition without replicas"));
                }
                let first_voters = assignment.iter().map(|r| self.raft_ids(r)).collect();
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        topic_id: topic_id.clone(),
                        assignment: assignment.clone(),
                        configs: configs.clone(),
                        dense_offsets: *dense_offsets,
                        first_voters,
                    },
                );
                Ok(())
            }
            MetadataRecord::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| format!("topic '{name}' does not exist"))?;
                self.leaders.retain(|(t, _), _| t != name);
                self.isr.retain(|(t, _), _| t != name);
                self.elections.retain(|(t, _), _| t != name);
                self.reassignments.retain(|(t, _), _| t != name);
                self.generations.retain(|(t, _), _| t != name);
                Ok(())
            }
            MetadataRecord::CreatePartitions { name, from, added } => {
                let first_voters: Vec<Vec<u64>> = added.iter().map(|r| self.raft_ids(r)).collect();
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("topic '{name}' does not exist"))?;
                if t.assignment.len() != *from {
                    return Err(format!(
                        "topic '{name}' has {} partitions, not {from}",
                        t.assignment.len()
                    ));
                }
                if added.iter().any(|r| r.is_empty()) {
                    return Err(format!("topic '{name}': a new partition without replicas"));
                }
                t.assignment.extend(added.iter().cloned());
                t.first_voters.extend(first_voters);
                Ok(())
            }
            MetadataRecord::PartitionLeader {
                name,
                topic_id,
                partition,
                leader,
                epoch,
            } => self.apply_leader(&LeaderOf {
                name: name.clone(),
                topic_id: topic_id.clone(),
                partition: *partition,
                leader: *leader,
                epoch: *epoch,
                isr: None,
                generation: 0,
            }),
            MetadataRecord::PartitionLeaders { leaders } => {
                let applied = leaders
                    .iter()
                    .filter(|l| self.apply_leader(l).is_ok())
                    .count();
                if applied == 0 {
                    return Err(format!("none of {} leaderships is new", leaders.len()));
                }
                Ok(())
            }
            MetadataRecord::AlterGroupConfigs { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), configs.clone());
                }
                Ok(())
            }
            MetadataRecord::CreateAcls { acls } => {
                let set = Arc::make_mut(&mut self.acls);
                for a in acls {
                    set.insert(a.clone());
                }
                Ok(())
            }
            MetadataRecord::DeleteAcls { acls } => {
                let set = Arc::make_mut(&mut self.acls);
                for a in acls {
                    set.remove(a);
                }
                Ok(())
            }
            MetadataRecord::FenceBrokers { fenced } => {
                self.fenced = fenced.iter().copied().collect();
                Ok(())
            }
            MetadataRecord::AlterReassignment { partition, target } => {
                let assigned = self.assigned(partition)?;
                let key = (partition.name.clone(), partition.partition);
                match target {
                    Some(target) => {
                        if target.is_empty() {
                            return Err("a reassignment to no replica".into());
                        }
                        let before = self.reassignments.get(&key);
                        if before.is_none() && *target == assigned {
                            return Err("the partition has those replicas already".into());
                        }
                        let mut leaving: Vec<u64> = before
                            .map(|r| r.leaving.iter().chain(&r.target).copied().collect())
                            .unwrap_or_default();
                        leaving.retain(|id| !target.contains(id) && !assigned.contains(id));
                        leaving.dedup();
                        let r = Reassignment {
                            target: target.clone(),
                            cancelled: false,
                            leaving,
                        };
                        self.reassignments.insert(key, r);
                    }
                    None => {
                        let r = self
                            .reassignments
                            .get_mut(&key)
                            .filter(|r| !r.cancelled)
                            .ok_or("no reassignment in progress")?;
                        let old = std::mem::replace(&mut r.target, assigned.clone());
                        r.leaving
                            .extend(old.into_iter().filter(|id| !assigned.contains(id)));
                        r.leaving.sort_unstable();
                        r.leaving.dedup();
                        r.cancelled = true;
                    }
                }
                Ok(())
            }
            MetadataRecord::ControllerVoters { before, after } => {
                let sorted = |v: &[u64]| {
                    let mut v = v.to_vec();
                    v.sort_unstable();
                    v.dedup();
                    v
                };
                let current = self.controller_voters.clone().unwrap_or(sorted(before));
                if current != sorted(before) {
                    return Err(format!(
                        "the controller voters are {current:?} now, not {before:?}"
                    ));
                }
                if after.is_empty() {
                    return Err("the controller quorum needs a voter".into());
                }
                let after = sorted(after);
                for gone in current.iter().filter(|id| !after.contains(id)) {
                    self.voter_directories.remove(gone);
                }
                for new in after.iter().filter(|id| !current.contains(id)) {
                    if let Some(dir) = self.brokers.get(new).and_then(|b| b.directory_id.clone()) {
                        self.voter_directories.insert(*new, dir);
                    }
                }
                self.controller_voters = Some(after);
                Ok(())
            }
            MetadataRecord::CompleteReassignment {
                partition,
                replicas,
            } => {
                self.assigned(partition)?;
                let key = (partition.name.clone(), partition.partition);
                let same = |a: &[u64], b: &[u64]| {
                    let (mut a, mut b) = (a.to_vec(), b.to_vec());
                    a.sort_unstable();
                    b.sort_unstable();
                    a == b
                };
                match self.reassignments.get(&key) {
                    Some(r) if same(&r.target, replicas) => {
                        let target = r.target.clone();
                        self.reassignments.remove(&key);
                        if let Some(g) = self.generations.get_mut(&key) {
                            g.members = target.clone();
                        }
                        let t = self.topics.get_mut(&partition.name).expect("checked");
                        t.assignment[partition.partition as usize] = target;
                        Ok(())
                    }
                    _ => Err("not the reassignment under way".into()),
                }
            }
            MetadataRecord::UncleanElection {
                partition,
                survivor,
                seen,
                at_ms,
            } => {
                let assigned = self.assigned(partition)?;
                if !assigned.contains(survivor) {
                    return Err(format!(
                        "broker {survivor} holds no replica of {}-{}",
                        partition.name, partition.partition
                    ));
                }
                let key = (partition.name.clone(), partition.partition);
                let current = self.generation(&key.0, key.1);
                if current != *seen {
                    return Err(format!(
                        "{}-{} is in generation {current} now, not {seen}",
                        key.0, key.1
                    ));
                }
                let generation = Generation {
                    number: current + 1,
                    survivor: self.raft_id(*survivor),
                    epoch_floor: self.leaders.get(&key).map_or(0, |l| l.1),
                    at_ms: *at_ms,
                    members: vec![*survivor],
                };
                tracing::warn!(topic = %key.0, partition = key.1, survivor, generation = generation.number, index,
                    "unclean leader election: the survivor's log is the partition's now");
                self.generations.insert(key.clone(), generation);
                // The group starts again from the assigned replicas.
                self.reassignments.remove(&key);
                self.elections.remove(&key);
                self.isr.remove(&key);
                Ok(())
            }
            MetadataRecord::UnregisterBroker { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(format!("broker {node_id} is not registered"));
                }
                let held = self.replicas_held(*node_id);
                if held > 0 {
                    return Err(format!("broker {node_id} still holds {held} replicas"));
                }
                self.brokers.remove(node_id);
                self.fenced.remove(node_id);
                Ok(())
            }
            MetadataRecord::ElectPreferred {
                partitions,
                at_ms,
                seen_epochs,
            } => {
                let mut asked = 0;
                for (i, p) in partitions.iter().enumerate() {
                    let known = self
                        .topics
                        .get(&p.name)
                        .is_some_and(|t| t.topic_id == p.topic_id);
                    let preferred = self.preferred(&p.name, p.partition);
                    if !known || preferred.is_none() {
                        continue;
                    }
                    let key = (p.name.clone(), p.partition);
                    let seen = seen_epochs.get(i).copied().unwrap_or(0);
                    if self
                        .leaders
                        .get(&key)
                        .is_some_and(|&(l, e)| Some(l) == preferred && e >= seen)
                    {
                        self.elections.remove(&key);
                        continue;
                    }
                    let election = Election {
                        index,
                        at_ms: *at_ms,
                    };
                    self.elections.insert(key, election);
                    asked += 1;
                }
                if asked == 0 {
                    return Err("no partition needs a preferred election".into());
                }
                Ok(())
            }
            MetadataRecord::AlterScramCredentials { changes, if_absent } => {
                for c in changes {
                    match &c.credential {
                        Some(cred) => {
                            let of_user = self.scram_credentials.entry(c.user.clone()).or_default();
                            if !(*if_absent && of_user.contains_key(&c.mechanism)) {
                                of_user.insert(c.mechanism, cred.clone());
                            }
                        }
                        None => {
                            if let Some(of_user) = self.scram_credentials.get_mut(&c.user) {
                                of_user.remove(&c.mechanism);
                                if of_user.is_empty() {
                                    self.scram_credentials.remove(&c.user);
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            MetadataRecord::AlterTopicConfigs { name, configs } => {
                let t = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("topic '{name}' does not exist"))?;
                t.configs = configs.clone();
                Ok(())
            }
        }
    }
}

/// A record as the batch stored in the controller's log.
pub fn encode(record: &MetadataRecord) -> Vec<u8> {
    let value = serde_json::to_vec(record).expect("metadata records serialize");
    batch::build(
        &[RecordSpec {
            key: None,
            value: Some(&value),
            timestamp: -1,
        }],
        BuildOptions::default(),
    )
}

/// The record in a stored batch.
pub fn decode(batch: &bytes::Bytes) -> Result<MetadataRecord, String> {
    let h = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
    let recs = crate::cleaner::records::records(batch, &h)?;
    let [r] = &recs[..] else {
        return Err(format!("{} records in a metadata batch", recs.len()));
    };
    let value = r
        .value
        .as_deref()
        .ok_or("a metadata record without a value")?;
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

mod partitions;

pub use partitions::{assign, assign_over_racks, rack_alternated};

#[cfg(test)]
mod tests;
