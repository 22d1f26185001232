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

    /// The partitions whose leadership should move back to their preferred
    /// replica, as Kafka's leader balancing judges: for each registered,
    /// unfenced broker that is `live` (heard from just now), the partitions
    /// it is the preferred replica of and does not lead, when they are more
    /// than `percentage` % of those it is the preferred replica of.
    pub fn imbalanced(&self, percentage: u32, live: impl Fn(u64) -> bool) -> Vec<PartitionRef> {
        let mut preferred: BTreeMap<u64, (usize, Vec<PartitionRef>)> = BTreeMap::new();
        for (name, t) in &self.topics {
            for (i, replicas) in t.assignment.iter().enumerate() {
                let Some(&first) = replicas.first() else {
                    continue;
                };
                if !self.brokers.contains_key(&first)
                    || self.fenced.contains(&first)
                    || !live(first)
                {
                    continue;
                }
                let entry = preferred.entry(first).or_default();
                entry.0 += 1;
                let leader = self.leaders.get(&(name.clone(), i as i32)).map(|l| l.0);
                if leader != Some(first) {
                    entry.1.push(PartitionRef {
                        name: name.clone(),
                        topic_id: t.topic_id.clone(),
                        partition: i as i32,
                    });
                }
            }
        }
        preferred
            .into_values()
            .filter(|(total, away)| away.len() * 100 > *total * percentage as usize)
            .flat_map(|(_, away)| away)
            .collect()
    }

    /// A partition's assigned replicas (None: no such partition).
    fn assignment_of(&self, name: &str, partition: i32) -> Option<&Vec<u64>> {
        self.topics
            .get(name)?
            .assignment
            .get(usize::try_from(partition).ok()?)
    }

    /// The brokers voting in a partition's group as far as the image knows:
    /// its assigned replicas, or after an unclean election those of them
    /// known to be members (see [`Generation::members`]).
    pub fn group_voters(&self, name: &str, partition: i32) -> Vec<u64> {
        let Some(assigned) = self.assignment_of(name, partition) else {
            return Vec::new();
        };
        match self.generations.get(&(name.to_owned(), partition)) {
            Some(g) => assigned
                .iter()
                .copied()
                .filter(|id| g.members.contains(id))
                .collect(),
            None => assigned.clone(),
        }
    }

    /// The partitions that need an unclean election and may have one: their
    /// topic allows it (`allowed`), no reassignment moves them, fewer than
    /// a majority of their group's voters (the assigned replicas, or after
    /// an unclean election its members) are alive (registered, not fenced,
    /// and `alive`), so Raft elects nobody, and one of those voters is
    /// alive and `reachable`: the first such is the survivor. A partition
    /// whose last unclean election is younger than `grace_ms` and whose
    /// survivor has not published its leadership yet is left to it.
    pub fn unclean_candidates(
        &self,
        allowed: impl Fn(&str, i32, &TopicInfo) -> bool,
        alive: impl Fn(u64) -> bool,
        reachable: impl Fn(u64) -> bool,
        now_ms: u64,
        grace_ms: u64,
    ) -> Vec<(PartitionRef, u64, u32)> {
        let up =
            |id: u64| self.brokers.contains_key(&id) && !self.fenced.contains(&id) && alive(id);
        let mut found = Vec::new();
        for (name, t) in &self.topics {
            for i in 0..t.assignment.len() {
                if !allowed(name, i as i32, t) {
                    continue;
                }
                let key = (name.clone(), i as i32);
                if self.reassignments.contains_key(&key) {
                    continue;
                }
                let generation = self.generations.get(&key);
                let voters = self.group_voters(name, i as i32);
                if voters.iter().filter(|&&id| up(id)).count() * 2 > voters.len() {
                    continue;
                }
                if let Some(g) = generation
                    && self
                        .leaders
                        .get(&key)
                        .is_none_or(|&(_, e)| e <= g.epoch_floor)
                    && now_ms.saturating_sub(g.at_ms) < grace_ms
                {
                    continue;
                }
                let Some(&survivor) = voters.iter().find(|&&id| up(id) && reachable(id)) else {
                    continue;
                };
                found.push((
                    PartitionRef {
                        name: name.clone(),
                        topic_id: t.topic_id.clone(),
                        partition: i as i32,
                    },
                    survivor,
                    self.generation(name, i as i32),
                ));
            }
        }
        found
    }

    /// A partition's assigned replicas, if the topic (with that id) has it.
    fn assigned(&self, p: &PartitionRef) -> Result<Vec<u64>, String> {
        self.topics
            .get(&p.name)
            .filter(|t| t.topic_id == p.topic_id)
            .and_then(|t| t.assignment.get(usize::try_from(p.partition).ok()?))
            .cloned()
            .ok_or_else(|| format!("no partition {}-{}", p.name, p.partition))
    }

    /// How many partitions broker `id` holds a replica of (assigned, or
    /// joining or leaving in a reassignment).
    pub fn replicas_held(&self, id: u64) -> usize {
        self.topics
            .iter()
            .flat_map(|(name, t)| (0..t.assignment.len() as i32).map(move |p| (name, p)))
            .filter(|(name, p)| self.holders(name, *p).contains(&id))
            .count()
    }

    /// The replicas that hold a partition now: during a reassignment the
    /// target's, then the assigned ones leaving (as Kafka lists them);
    /// otherwise the assigned ones.
    /// Broker `broker`'s Raft id in the groups it joins now (see
    /// [`super::raft_id`]).
    pub fn raft_id(&self, broker: u64) -> u64 {
        super::raft_id(broker, self.incarnations.get(&broker).copied().unwrap_or(0))
    }

    pub fn raft_ids(&self, brokers: &[u64]) -> Vec<u64> {
        brokers.iter().map(|&b| self.raft_id(b)).collect()
    }

    /// The Raft ids a partition's group started with (its assigned brokers
    /// for a topic created before incarnations were recorded).
    pub fn first_voters(&self, name: &str, partition: i32) -> Vec<u64> {
        if let Some(g) = self.generations.get(&(name.to_owned(), partition)) {
            return vec![g.survivor];
        }
        let Some(t) = self.topics.get(name) else {
            return Vec::new();
        };
        let i = usize::try_from(partition).unwrap_or(usize::MAX);
        t.first_voters
            .get(i)
            .or_else(|| t.assignment.get(i))
            .cloned()
            .unwrap_or_default()
    }

    pub fn holders(&self, name: &str, partition: i32) -> Vec<u64> {
        let Some(assigned) = self.assignment_of(name, partition) else {
            return Vec::new();
        };
        match self.reassignments.get(&(name.to_owned(), partition)) {
            Some(r) => {
                let mut all = r.target.clone();
                for id in assigned.iter().chain(&r.leaving) {
                    if !all.contains(id) {
                        all.push(*id);
                    }
                }
                all
            }
            None => assigned.clone(),
        }
    }

    /// A partition's preferred replica (the first assigned), if it exists.
    /// The partition's group generation (see [`Generation`]).
    pub fn generation(&self, name: &str, partition: i32) -> u32 {
        self.generations
            .get(&(name.to_owned(), partition))
            .map_or(0, |g| g.number)
    }

    pub fn preferred(&self, name: &str, partition: i32) -> Option<u64> {
        let t = self.topics.get(name)?;
        t.assignment
            .get(usize::try_from(partition).ok()?)?
            .first()
            .copied()
    }

    /// The partitions (topic, index) that have `node` among their replicas.
    pub fn partitions_of(&self, node: u64) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                t.assignment
                    .iter()
                    .enumerate()
                    .filter(move |(_, r)| r.contains(&node))
                    .map(move |(p, _)| (name.clone(), p as i32))
            })
            .collect()
    }
}

/// Replicas for `partitions` new partitions numbered from `first_partition`,
/// over `brokers` (sorted ids), `replication_factor` each: see
/// [`assign_over_racks`], with no racks.
pub fn assign(
    topic: &str,
    first_partition: usize,
    partitions: usize,
    replication_factor: usize,
    brokers: &[u64],
) -> Result<Vec<Vec<u64>>, String> {
    let brokers: Vec<(u64, Option<String>)> = brokers.iter().map(|&id| (id, None)).collect();
    assign_over_racks(
        topic,
        first_partition,
        partitions,
        replication_factor,
        &brokers,
    )
}

/// Replicas for `partitions` new partitions numbered from `first_partition`,
/// over `brokers` (id, `broker.rack`), `replication_factor` each, as Kafka's
/// rack-aware placement does. The brokers go in a ring, one of each rack in
/// turn (see [`rack_alternated`]); each partition starts one step further
/// round the ring than the one before, from a point derived from the topic
/// name, so preferred leaders (the first replica) spread evenly over brokers
/// and topics. Going round, a partition takes no second broker of a rack
/// until every rack holds one of its replicas, and never one broker twice.
pub fn assign_over_racks(
    topic: &str,
    first_partition: usize,
    partitions: usize,
    replication_factor: usize,
    brokers: &[(u64, Option<String>)],
) -> Result<Vec<Vec<u64>>, String> {
    let n = brokers.len();
    if replication_factor == 0 || replication_factor > n {
        return Err(format!(
            "replication factor {replication_factor} needs that many brokers; {n} are registered and unfenced"
        ));
    }
    let ring = rack_alternated(brokers);
    let rack_of: BTreeMap<u64, Option<&str>> =
        brokers.iter().map(|(id, r)| (*id, r.as_deref())).collect();
    let racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let start = topic
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Ok((first_partition..first_partition + partitions)
        .map(|p| {
            let from = start.wrapping_add(p);
            let mut replicas: Vec<u64> = Vec::with_capacity(replication_factor);
            let mut used = BTreeSet::new();
            for k in 0..2 * n {
                let id = ring[from.wrapping_add(k) % n];
                let rack = rack_of[&id];
                if replicas.contains(&id) || (used.len() < racks && used.contains(&rack)) {
                    continue;
                }
                replicas.push(id);
                used.insert(rack);
                if replicas.len() == replication_factor {
                    break;
                }
            }
            replicas
        })
        .collect())
}

/// Brokers (id, rack) in the ring [`assign_over_racks`] goes round, as
/// Kafka's rack-aware placement orders them: one broker of each rack in
/// turn (racks by name, brokers by id within a rack). Brokers without a
/// rack make one rack of their own.
pub fn rack_alternated(brokers: &[(u64, Option<String>)]) -> Vec<u64> {
    let mut racks: BTreeMap<Option<&str>, Vec<u64>> = BTreeMap::new();
    for (id, rack) in brokers {
        racks.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in racks.values_mut() {
        ids.sort_unstable();
    }
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| racks.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, assignment: Vec<Vec<u64>>) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: format!("id-{name}"),
            assignment,
            configs: BTreeMap::new(),
            dense_offsets: true,
        }
    }

    /// Broker `id` registering at h:9092, with its internal listener when
    /// it does not vote.
    fn register(id: u64, internal: Option<&str>) -> MetadataRecord {
        register_from(id, internal, None)
    }

    /// The same from the data folder with directory id `dir`.
    fn register_from(id: u64, internal: Option<&str>, dir: Option<&str>) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id: id,
            host: "h".into(),
            port: 9092,
            listeners: Vec::new(),
            rack: None,
            internal: internal.map(str::to_owned),
            directory_id: dir.map(str::to_owned),
        }
    }

    #[test]
    fn a_broker_with_a_new_data_folder_is_a_new_incarnation() {
        let with_dir = |id: u64, dir: Option<&str>| register_from(id, None, dir);
        let mut img = ClusterImage::default();
        // A registration from before directory ids, then the same folder
        // with its new id: still the first incarnation.
        img.apply(1, &with_dir(1, None)).unwrap();
        img.apply(2, &with_dir(1, Some("a"))).unwrap();
        img.apply(3, &with_dir(2, Some("b"))).unwrap();
        img.apply(4, &with_dir(1, Some("a"))).unwrap();
        assert_eq!(img.raft_id(1), 1);
        img.apply(5, &topic("t", vec![vec![1, 2]])).unwrap();
        assert_eq!(img.first_voters("t", 0), vec![1, 2]);
        // Broker 1 comes back wiped: a new incarnation, a new Raft id; the
        // partition's first voters stay as they were.
        img.apply(6, &with_dir(1, Some("c"))).unwrap();
        assert_eq!(img.raft_id(1), super::super::raft_id(1, 1));
        assert_eq!(super::super::broker_of(img.raft_id(1)), 1);
        assert_eq!(img.first_voters("t", 0), vec![1, 2]);
        // A registration without an id (an older release) keeps the id.
        img.apply(7, &with_dir(1, None)).unwrap();
        assert_eq!(img.brokers[&1].directory_id.as_deref(), Some("c"));
        img.apply(
            8,
            &MetadataRecord::CreatePartitions {
                name: "t".into(),
                from: 1,
                added: vec![vec![2, 1]],
            },
        )
        .unwrap();
        assert_eq!(img.first_voters("t", 1), vec![2, 1 | (1 << 32)]);
    }

    #[test]
    fn a_voter_votes_from_its_first_folder_until_removed_and_added_again() {
        let mut img = ClusterImage::default();
        img.apply(1, &register_from(1, None, Some("a"))).unwrap();
        assert_eq!(img.voter_directories[&1], "a");
        // Back on a wiped disk: still known by the folder it voted from.
        img.apply(2, &register_from(1, None, Some("b"))).unwrap();
        assert_eq!(img.voter_directories[&1], "a");
        let voters = |before: &[u64], after: &[u64]| MetadataRecord::ControllerVoters {
            before: before.to_vec(),
            after: after.to_vec(),
        };
        img.apply(3, &voters(&[1, 2, 3], &[2, 3])).unwrap();
        assert!(!img.voter_directories.contains_key(&1));
        img.apply(4, &voters(&[2, 3], &[1, 2, 3])).unwrap();
        assert_eq!(img.voter_directories[&1], "b");
    }

    #[test]
    fn a_broker_is_unregistered_only_once_it_holds_no_replica() {
        let mut img = ClusterImage::default();
        let mut index = 0;
        let mut apply = |img: &mut ClusterImage, r: MetadataRecord| {
            index += 1;
            img.apply(index, &r)
        };
        for id in 1..=4 {
            apply(
                &mut img,
                register(id, (id == 4).then_some("127.0.0.1:9999")),
            )
            .unwrap();
        }
        apply(&mut img, topic("t", vec![vec![1, 2, 3], vec![4, 1, 2]])).unwrap();
        let leave = MetadataRecord::UnregisterBroker { node_id: 4 };
        assert_eq!(img.replicas_held(4), 1);
        assert!(
            apply(&mut img, leave.clone())
                .unwrap_err()
                .contains("holds 1 replicas")
        );
        // Moving its replica off: while the move is under way it still holds it.
        let partition = PartitionRef {
            name: "t".into(),
            topic_id: "id-t".into(),
            partition: 1,
        };
        let target = vec![3, 1, 2];
        apply(
            &mut img,
            MetadataRecord::AlterReassignment {
                partition: partition.clone(),
                target: Some(target.clone()),
            },
        )
        .unwrap();
        assert_eq!(img.replicas_held(4), 1);
        assert!(apply(&mut img, leave.clone()).is_err());
        apply(
            &mut img,
            MetadataRecord::CompleteReassignment {
                partition,
                replicas: target,
            },
        )
        .unwrap();
        assert_eq!(img.replicas_held(4), 0);
        apply(&mut img, leave.clone()).unwrap();
        assert!(!img.brokers.contains_key(&4));
        assert!(
            apply(&mut img, leave)
                .unwrap_err()
                .contains("not registered")
        );
        assert_eq!(img.brokers.len(), 3);
    }

    #[test]
    fn records_apply_in_order_and_bad_ones_change_nothing() {
        let mut img = ClusterImage::default();
        let log = [
            MetadataRecord::RegisterBroker {
                node_id: 1,
                host: "a".into(),
                port: 9092,
                listeners: Vec::new(),
                rack: None,
                internal: None,
                directory_id: None,
            },
            topic("orders", vec![vec![1, 2], vec![2, 1]]),
            topic("orders", vec![vec![1]]),
            MetadataRecord::CreatePartitions {
                name: "orders".into(),
                from: 2,
                added: vec![vec![2, 3]],
            },
            MetadataRecord::CreatePartitions {
                name: "orders".into(),
                from: 2,
                added: vec![vec![3, 1]],
            },
            MetadataRecord::AlterTopicConfigs {
                name: "orders".into(),
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            },
            MetadataRecord::DeleteTopic {
                name: "missing".into(),
            },
            topic("empty", vec![vec![]]),
        ];
        let results: Vec<bool> = log
            .iter()
            .enumerate()
            .map(|(i, r)| img.apply(i as u64 + 1, r).is_ok())
            .collect();
        assert_eq!(
            results,
            [true, true, false, true, false, true, false, false]
        );
        assert_eq!(img.applied, 8);
        let leader = |epoch, id: &str| MetadataRecord::PartitionLeader {
            name: "orders".into(),
            topic_id: id.into(),
            partition: 2,
            leader: 3,
            epoch,
        };
        let mut probe = img.clone();
        assert!(probe.apply(100, &leader(4, "id-orders")).is_ok());
        assert!(
            probe.apply(101, &leader(4, "id-orders")).is_err(),
            "not newer"
        );
        assert!(
            probe.apply(102, &leader(5, "id-other")).is_err(),
            "another topic's"
        );
        assert_eq!(probe.leaders[&("orders".to_string(), 2)], (3, 4));
        // Many at once: each applies on its own; the record counts as
        // applied when any did, and through its JSON form.
        let of = |partition, epoch, id: &str| LeaderOf {
            name: "orders".into(),
            topic_id: id.into(),
            partition,
            leader: 1,
            epoch,
            isr: None,
            generation: 0,
        };
        let many = MetadataRecord::PartitionLeaders {
            leaders: vec![
                of(0, 2, "id-orders"),
                of(2, 4, "id-orders"),
                of(9, 1, "id-orders"),
            ],
        };
        let many = decode(&bytes::Bytes::from(encode(&many))).unwrap();
        assert!(probe.apply(103, &many).is_ok());
        assert_eq!(probe.leaders[&("orders".to_string(), 0)], (1, 2));
        assert_eq!(
            probe.leaders[&("orders".to_string(), 2)],
            (3, 4),
            "not newer"
        );
        assert!(!probe.leaders.contains_key(&("orders".to_string(), 9)));
        assert!(probe.apply(104, &many).is_err(), "nothing new");
        let t = &img.topics["orders"];
        assert_eq!(t.assignment, vec![vec![1, 2], vec![2, 1], vec![2, 3]]);
        assert_eq!(t.configs["retention.ms"], "1000");
        assert_eq!(img.partitions_of(3), vec![("orders".to_string(), 2)]);
        assert_eq!(img.partitions_of(1).len(), 2);
        // A replay of what was applied changes nothing.
        let before = img.clone();
        img.apply(
            2,
            &MetadataRecord::DeleteTopic {
                name: "orders".into(),
            },
        )
        .unwrap();
        assert_eq!(img, before);
        img.apply(
            9,
            &MetadataRecord::DeleteTopic {
                name: "orders".into(),
            },
        )
        .unwrap();
        assert!(img.topics.is_empty());
    }

    #[test]
    fn acl_records_add_and_remove_bindings() {
        use crate::security::acl::*;
        let b = |name: &str| AclBinding {
            resource_type: ResourceType::Topic,
            name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: PermissionType::Allow,
        };
        let mut img = ClusterImage::default();
        let create = MetadataRecord::CreateAcls {
            acls: vec![b("a"), b("b")],
        };
        let create = decode(&bytes::Bytes::from(encode(&create))).unwrap();
        img.apply(1, &create).unwrap();
        img.apply(2, &MetadataRecord::CreateAcls { acls: vec![b("a")] })
            .unwrap();
        assert_eq!(img.acls.len(), 2);
        img.apply(
            3,
            &MetadataRecord::DeleteAcls {
                acls: vec![b("a"), b("zzz")],
            },
        )
        .unwrap();
        assert_eq!(img.acls.iter().collect::<Vec<_>>(), [&b("b")]);
    }

    #[test]
    fn scram_credentials_apply_and_bootstrap_ones_never_overwrite() {
        let m = ScramMechanism::Sha256;
        let cred = |pw: &str| m.credential_for_password(pw, 4096);
        let set = |user: &str, c: Option<ScramCredential>, if_absent| {
            MetadataRecord::AlterScramCredentials {
                changes: vec![ScramChange {
                    user: user.into(),
                    mechanism: m,
                    credential: c,
                }],
                if_absent,
            }
        };
        let (a, b) = (cred("a"), cred("b"));
        let mut img = ClusterImage::default();
        img.apply(1, &set("alice", Some(a.clone()), false)).unwrap();
        img.apply(2, &set("alice", Some(b.clone()), true)).unwrap();
        assert_eq!(
            img.scram_credentials["alice"][&m], a,
            "bootstrap keeps what is there"
        );
        img.apply(3, &set("alice", Some(b.clone()), false)).unwrap();
        assert_eq!(img.scram_credentials["alice"][&m], b);
        // Through the log's JSON form; a removal drops the user once empty.
        let del = decode(&bytes::Bytes::from(encode(&set("alice", None, false)))).unwrap();
        img.apply(4, &del).unwrap();
        assert!(img.scram_credentials.is_empty());
        img.apply(5, &del).unwrap();
    }

    #[test]
    fn records_round_trip_through_batches() {
        let r = topic("t", vec![vec![3, 1, 2]]);
        let b = bytes::Bytes::from(encode(&r));
        assert_eq!(decode(&b).unwrap(), r);
        assert!(decode(&bytes::Bytes::from(batch::build_simple(2, 10, 0))).is_err());
    }

    #[test]
    fn topics_created_before_dense_offsets_keep_their_numbering() {
        // A record of an earlier release has no `dense_offsets`: its
        // partitions keep taking an offset for each of Raft's own entries.
        let old: MetadataRecord = serde_json::from_str(
            r#"{"type":"CreateTopic","name":"t","topic_id":"id","assignment":[[1,2,3]],"configs":{}}"#,
        )
        .unwrap();
        let mut img = ClusterImage::default();
        img.apply(1, &old).unwrap();
        assert!(!img.topics["t"].dense_offsets);
        img.apply(2, &topic("u", vec![vec![1, 2, 3]])).unwrap();
        assert!(img.topics["u"].dense_offsets);
        let json = serde_json::to_string(&topic("u", vec![vec![1]])).unwrap();
        assert!(json.contains(r#""dense_offsets":true"#), "{json}");
    }

    #[test]
    fn broker_registrations_with_and_without_listeners() {
        // A record written before listeners existed still reads: one
        // PLAINTEXT listener, served to clients of every listener.
        let old: MetadataRecord =
            serde_json::from_str(r#"{"type":"RegisterBroker","node_id":2,"host":"h","port":9092}"#)
                .unwrap();
        let new = MetadataRecord::RegisterBroker {
            node_id: 3,
            host: "h3".into(),
            port: 9092,
            listeners: vec![
                ListenerEndpoint {
                    name: "PLAINTEXT".into(),
                    host: "h3".into(),
                    port: 9092,
                },
                ListenerEndpoint {
                    name: "SSL".into(),
                    host: "h3.example".into(),
                    port: 9093,
                },
            ],
            rack: Some("rack-b".into()),
            internal: Some("10.0.0.3:9093".into()),
            directory_id: Some("J8aAPcfLQt2bqs1JT_rMgQ".into()),
        };
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), new);
        let mut img = ClusterImage::default();
        img.apply(1, &old).unwrap();
        img.apply(2, &new).unwrap();
        assert_eq!(img.brokers[&2].endpoint("SSL"), Some(("h".into(), 9092)));
        // A record without a rack (or from before racks): no rack.
        assert_eq!(img.brokers[&2].rack, None);
        assert_eq!(img.brokers[&3].rack.as_deref(), Some("rack-b"));
        assert_eq!(img.brokers[&2].internal, None);
        assert_eq!(img.brokers[&3].internal.as_deref(), Some("10.0.0.3:9093"));
        assert_eq!(
            img.brokers[&3].endpoint("ssl"),
            Some(("h3.example".into(), 9093))
        );
        assert_eq!(
            img.brokers[&3].endpoint("PLAINTEXT"),
            Some(("h3".into(), 9092))
        );
        assert_eq!(img.brokers[&3].endpoint("SASL_SSL"), None);
    }

    #[test]
    fn assignment_spreads_leaders_and_never_repeats_a_broker() {
        let brokers = [1, 2, 3];
        let a = assign("orders", 0, 6, 3, &brokers).unwrap();
        for replicas in &a {
            let mut r = replicas.clone();
            r.sort_unstable();
            r.dedup();
            assert_eq!(r.len(), 3);
        }
        let mut leaders = [0; 3];
        for r in &a {
            leaders[(r[0] - 1) as usize] += 1;
        }
        assert_eq!(leaders, [2, 2, 2]);
        // Added partitions continue the rotation.
        let more = assign("orders", 6, 3, 3, &brokers).unwrap();
        assert_eq!(more[0], a[0]);
        assert!(assign("orders", 0, 1, 4, &brokers).is_err());
        assert!(assign("orders", 0, 1, 0, &brokers).is_err());
        assert_eq!(assign("x", 0, 2, 1, &[7]).unwrap(), vec![vec![7], vec![7]]);
    }

    #[test]
    fn an_unclean_election_starts_a_new_generation_once() {
        let mut img = ClusterImage::default();
        let mut i = 0;
        let mut apply = |img: &mut ClusterImage, r: &MetadataRecord| {
            i += 1;
            img.apply(i, r)
        };
        for id in 1..=4 {
            apply(&mut img, &register(id, None)).unwrap();
        }
        apply(&mut img, &topic("t", vec![vec![3, 2, 4], vec![1, 2, 3]])).unwrap();
        let lead =
            |p: i32, leader: u64, epoch: u64, generation: u32| MetadataRecord::PartitionLeaders {
                leaders: vec![LeaderOf {
                    name: "t".into(),
                    topic_id: "id-t".into(),
                    partition: p,
                    leader,
                    epoch,
                    isr: None,
                    generation,
                }],
            };
        apply(&mut img, &lead(0, 3, 7, 0)).unwrap();
        let all = |_: &str, _: i32, _: &TopicInfo| true;
        // Brokers 3 and 4 fenced: partition 0 keeps one of three.
        apply(
            &mut img,
            &MetadataRecord::FenceBrokers { fenced: vec![3, 4] },
        )
        .unwrap();
        let found = img.unclean_candidates(all, |_| true, |_| true, 0, 1000);
        assert_eq!(found.len(), 1, "{found:?}");
        let (p, survivor, seen) = found[0].clone();
        assert_eq!((p.partition, survivor, seen), (0, 2, 0));
        // Not for a topic that does not allow it, nor without a survivor
        // this broker reaches.
        assert!(
            img.unclean_candidates(|_, _, _| false, |_| true, |_| true, 0, 1000)
                .is_empty()
        );
        assert!(
            img.unclean_candidates(all, |_| true, |_| false, 0, 1000)
                .is_empty()
        );
        let elect = MetadataRecord::UncleanElection {
            partition: p.clone(),
            survivor,
            seen,
            at_ms: 100,
        };
        apply(&mut img, &elect).unwrap();
        let g = img.generations[&("t".to_string(), 0)].clone();
        assert_eq!((g.number, g.survivor, g.epoch_floor), (1, 2, 7));
        assert_eq!(img.first_voters("t", 0), vec![2]);
        // Asked twice at once: the second changes nothing.
        assert!(apply(&mut img, &elect).is_err());
        assert_eq!(img.generation("t", 0), 1);
        // The survivor alone is the new group's majority.
        assert!(
            img.unclean_candidates(all, |_| true, |_| true, 40_000, 30_000)
                .is_empty()
        );
        // A leader of the earlier generation is not taken in; the
        // survivor's is, and the replicas it reports in sync (voters) join
        // the members.
        assert!(apply(&mut img, &lead(0, 3, 9, 0)).is_err());
        apply(&mut img, &lead(0, 2, 9, 1)).unwrap();
        assert_eq!(img.leaders[&("t".to_string(), 0)], (2, 9));
        let with_isr = MetadataRecord::PartitionLeaders {
            leaders: vec![LeaderOf {
                name: "t".into(),
                topic_id: "id-t".into(),
                partition: 0,
                leader: 2,
                epoch: 9,
                isr: Some(vec![2, 3, 4]),
                generation: 1,
            }],
        };
        apply(&mut img, &with_isr).unwrap();
        assert_eq!(
            img.generations[&("t".to_string(), 0)].members,
            vec![2, 3, 4]
        );
        // 3 and 4 (fenced) are a majority of the members again: the
        // partition may be elected again, from generation 1.
        let again = img.unclean_candidates(all, |_| true, |_| true, 40_000, 30_000);
        assert_eq!((again[0].1, again[0].2), (2, 1));
        // A survivor that holds no replica is refused.
        let stray = MetadataRecord::UncleanElection {
            partition: p,
            survivor: 1,
            seen: 1,
            at_ms: 200,
        };
        assert!(apply(&mut img, &stray).is_err());
        apply(&mut img, &MetadataRecord::DeleteTopic { name: "t".into() }).unwrap();
        assert!(img.generations.is_empty());
    }

    #[test]
    fn leader_balancing_asks_for_the_partitions_a_broker_does_not_lead() {
        let mut img = ClusterImage::default();
        let mut i = 0;
        let mut apply = |img: &mut ClusterImage, r: MetadataRecord| {
            i += 1;
            img.apply(i, &r)
        };
        for id in 1..=3 {
            apply(&mut img, register(id, None)).unwrap();
        }
        // Broker 1 prefers partitions 0..10, broker 2 partitions 10..20.
        let assignment: Vec<Vec<u64>> = (0..20)
            .map(|p| if p < 10 { vec![1, 2, 3] } else { vec![2, 3, 1] })
            .collect();
        apply(&mut img, topic("t", assignment)).unwrap();
        let lead = |p: i32, leader: u64, epoch: u64| MetadataRecord::PartitionLeaders {
            leaders: vec![LeaderOf {
                name: "t".into(),
                topic_id: "id-t".into(),
                partition: p,
                leader,
                epoch,
                isr: None,
                generation: 0,
            }],
        };
        for p in 0..20 {
            apply(&mut img, lead(p, if p < 10 { 1 } else { 2 }, 1)).unwrap();
        }
        assert!(img.imbalanced(10, |_| true).is_empty());
        // Broker 1 lost one of its ten (10 %, not more than 10 %): balanced.
        apply(&mut img, lead(0, 2, 2)).unwrap();
        assert!(img.imbalanced(10, |_| true).is_empty());
        // Two of ten: out of balance; only broker 1's partitions move.
        apply(&mut img, lead(1, 3, 2)).unwrap();
        let away = img.imbalanced(10, |_| true);
        let parts: Vec<i32> = away.iter().map(|p| p.partition).collect();
        assert_eq!(parts, [0, 1]);
        assert!(img.imbalanced(20, |_| true).is_empty());
        // Nor is one not heard from just now (down, not fenced yet).
        assert!(img.imbalanced(10, |id| id != 1).is_empty());
        // A fenced broker is not given leaderships back.
        apply(&mut img, MetadataRecord::FenceBrokers { fenced: vec![1] }).unwrap();
        assert!(img.imbalanced(10, |_| true).is_empty());
        apply(&mut img, MetadataRecord::FenceBrokers { fenced: vec![] }).unwrap();

        // The election is remembered until the preferred replica leads.
        let ask = MetadataRecord::ElectPreferred {
            partitions: away,
            at_ms: 5,
            seen_epochs: Vec::new(),
        };
        apply(&mut img, ask.clone()).unwrap();
        let asked = img.elections[&("t".to_string(), 0)];
        assert_eq!(asked.at_ms, 5);
        assert_eq!(img.elections.len(), 2);
        apply(&mut img, lead(0, 1, 3)).unwrap();
        assert_eq!(img.elections.len(), 1);
        // Asking for partitions whose preferred replica leads changes nothing.
        let done = MetadataRecord::ElectPreferred {
            partitions: vec![PartitionRef {
                name: "t".into(),
                topic_id: "id-t".into(),
                partition: 0,
            }],
            at_ms: 6,
            seen_epochs: Vec::new(),
        };
        assert!(apply(&mut img, done.clone()).is_err());
        // Unless the proposer saw a newer leadership than the image holds
        // (the new leader's record not in yet): then it is asked for.
        let MetadataRecord::ElectPreferred { partitions, .. } = done else {
            unreachable!()
        };
        let newer = MetadataRecord::ElectPreferred {
            partitions,
            at_ms: 6,
            seen_epochs: vec![4],
        };
        apply(&mut img, newer.clone()).unwrap();
        assert_eq!(img.elections[&("t".to_string(), 0)].at_ms, 6);
        let json = serde_json::to_string(&newer).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            newer
        );
        // Nor does a record naming a topic by an old id.
        let stale = MetadataRecord::ElectPreferred {
            partitions: vec![PartitionRef {
                name: "t".into(),
                topic_id: "old".into(),
                partition: 5,
            }],
            at_ms: 7,
            seen_epochs: Vec::new(),
        };
        assert!(apply(&mut img, stale).is_err());
        let json = serde_json::to_string(&ask).unwrap();
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), ask);
        apply(&mut img, MetadataRecord::DeleteTopic { name: "t".into() }).unwrap();
        assert!(img.elections.is_empty());
    }

    #[test]
    fn rack_aware_placement_spreads_replicas_over_racks() {
        let racks = |r: &[(u64, &str)]| -> Vec<(u64, Option<String>)> {
            r.iter()
                .map(|(id, rack)| (*id, Some(rack.to_string())))
                .collect()
        };
        let spread = |brokers: &[(u64, Option<String>)], rf: usize, want: usize| {
            for topic in ["orders", "payments", "x"] {
                let a = assign_over_racks(topic, 0, 12, rf, brokers).unwrap();
                let mut led = BTreeMap::new();
                for replicas in &a {
                    let on: BTreeSet<_> = replicas
                        .iter()
                        .map(|id| brokers.iter().find(|b| b.0 == *id).unwrap().1.clone())
                        .collect();
                    assert_eq!(on.len(), want, "{topic}: {replicas:?}");
                    let distinct: BTreeSet<_> = replicas.iter().collect();
                    assert_eq!(distinct.len(), rf);
                    *led.entry(replicas[0]).or_insert(0) += 1;
                }
                // Preferred leaders spread evenly.
                assert_eq!(led.len(), brokers.len(), "{topic}: {led:?}");
                assert!(
                    led.values().all(|&c| c == 12 / brokers.len()),
                    "{topic}: {led:?}"
                );
            }
        };
        // Six brokers in three racks, numbered so that sorted ids bunch racks.
        let six = racks(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        assert_eq!(rack_alternated(&six), [1, 3, 5, 2, 4, 6]);
        spread(&six, 3, 3);
        spread(&six, 2, 2);
        // Racks of unequal size: still every rack before any rack twice.
        let three = racks(&[(1, "a"), (2, "a"), (3, "b")]);
        spread(&three, 2, 2);
        spread(&three, 3, 2);
        let four = racks(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
        spread(&four, 2, 2);
        // Without racks: the ids in order, as before racks.
        let plain: Vec<(u64, Option<String>)> = vec![(3, None), (1, None), (2, None)];
        assert_eq!(rack_alternated(&plain), [1, 2, 3]);
        assert_eq!(
            assign_over_racks("orders", 0, 6, 3, &plain).unwrap(),
            assign("orders", 0, 6, 3, &[1, 2, 3]).unwrap()
        );
    }
}
