//! The broker's side of a cluster: admin changes go to the controller
//! quorum, and the broker's topics follow the cluster image.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::{Broker, Placement, Topic, TopicError};
use crate::cluster::Cluster;
use crate::partition::{Partition, ReplicaSpec};
use crate::replication::metadata::{self, ClusterImage, MetadataRecord};
use crate::topic_config::TopicConfig;

/// How long an admin request waits for the quorum and for this broker to
/// apply the result.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an admin request waits for its effect when it does not say.
pub const ADMIN_WAIT: Duration = ADMIN_TIMEOUT;

/// How long a request that carries a timeout (CreateTopics' timeout_ms)
/// waits for its effect: that timeout (Kafka's meaning), or
/// [`ADMIN_WAIT`] when it is not positive, at most five minutes.
pub fn admin_wait(timeout_ms: i32) -> Duration {
    if timeout_ms > 0 {
        Duration::from_millis(timeout_ms as u64).min(Duration::from_secs(300))
    } else {
        ADMIN_WAIT
    }
}

fn timed_out(what: &str) -> TopicError {
    TopicError::new(
        ResponseError::RequestTimedOut,
        format!("{what}: the controller quorum did not answer in time"),
    )
}

fn unknown(name: &str) -> TopicError {
    TopicError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

/// The brokers that may get new replicas: registered and not fenced (as in
/// Kafka), with their racks.
fn unfenced(image: &ClusterImage) -> Vec<(u64, Option<String>)> {
    image
        .brokers
        .iter()
        .filter(|(id, _)| !image.fenced.contains(id))
        .map(|(id, b)| (*id, b.rack.clone()))
        .collect()
}

/// Checks replica lists a client gave for partitions numbered from `first`,
/// as Kafka's controller does: each list non-empty and `rf` long (the first
/// list's length when `rf` is None), no broker twice in one list, and every
/// broker registered and unfenced. INVALID_REPLICA_ASSIGNMENT otherwise.
fn check_assignment(
    lists: &[Vec<u64>],
    first: usize,
    rf: Option<usize>,
    image: &ClusterImage,
) -> Result<(), TopicError> {
    let bad = |m: String| TopicError::new(ResponseError::InvalidReplicaAssignment, m);
    let rf = rf.or_else(|| lists.first().map(Vec::len)).unwrap_or(0);
    for (i, replicas) in lists.iter().enumerate() {
        let p = first + i;
        if replicas.is_empty() {
            return Err(bad(format!("partition {p} is assigned no replicas")));
        }
        if replicas.len() != rf {
            return Err(bad(format!(
                "partition {p} is assigned {} replica(s); the other partitions have {rf}",
                replicas.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for &b in replicas {
            if !seen.insert(b) {
                return Err(bad(format!("partition {p} lists broker {b} twice")));
            }
            if !image.brokers.contains_key(&b) {
                return Err(bad(format!(
                    "partition {p} is assigned broker {b}, which is not registered"
                )));
            }
            if image.fenced.contains(&b) {
                return Err(bad(format!(
                    "partition {p} is assigned broker {b}, which is fenced"
                )));
            }
        }
    }
    Ok(())
}

impl Broker {
    /// Creates a topic through the quorum. [`Placement::Auto`] comes with
    /// its defaults resolved; an explicit assignment is checked against the
    /// cluster's brokers and used as given.
    pub(super) async fn create_topic_in_cluster(
        &self,
        c: &Cluster,
        name: &str,
        placement: Placement,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
        wait: Duration,
    ) -> Result<Arc<Topic>, TopicError> {
        crate::topic_config::validate(&self.config, &overrides)
            .map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
        let image = c.image();
        let assignment = match placement {
            Placement::Auto {
                partitions,
                replication_factor,
            } => metadata::assign_over_racks(
                name,
                0,
                partitions.max(0) as usize,
                replication_factor.max(0) as usize,
                &unfenced(&image),
            )
            .map_err(|m| TopicError::new(ResponseError::InvalidReplicationFactor, m))?,
            Placement::Explicit(lists) => {
                check_assignment(&lists, 0, None, &image)?;
                lists
            }
        };
        let partitions = assignment.len();
        let replication_factor = assignment.first().map_or(0, Vec::len);
        if image.topics.contains_key(name) {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_owned(),
                id,
                partitions: Vec::new(),
                config: TopicConfig::resolve(&self.config, &overrides),
                overrides,
            }));
        }
        let record = MetadataRecord::CreateTopic {
            name: name.to_owned(),
            topic_id: id.to_string(),
            assignment,
            configs: overrides,
            dense_offsets: true,
        };
        let image = c
            .propose_until(&record, wait, |img| img.topics.contains_key(name))
            .await
            .map_err(|_| timed_out("CreateTopics"))?;
        if image.topics[name].topic_id != id.to_string() {
            // Another request created it first.
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        tracing::info!(topic = %name, partitions, replication_factor, %id, "created topic");
        let topic = self
            .wait_local(wait, |b| b.topic(name).filter(|t| t.id == id))
            .await
            .ok_or_else(|| timed_out("CreateTopics"))?;
        // A new group elects its preferred replica within a tick or two;
        // clients that produce right after creating then find leaders. Only
        // the replicas here can be watched, and not waiting is no error.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline
            && topic
                .partitions
                .iter()
                .any(|p| p.is_replicated() && p.status().leader.is_none())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(topic)
    }

    pub(super) async fn delete_topic_in_cluster(
        &self,
        c: &Cluster,
        name: &str,
    ) -> Result<Uuid, TopicError> {
        let Some(info) = c.image().topics.get(name).cloned() else {
            return Err(unknown(name));
        };
        let record = MetadataRecord::DeleteTopic {
            name: name.to_owned(),
        };
        c.propose_until(&record, ADMIN_TIMEOUT, |img| {
            img.topics
                .get(name)
                .is_none_or(|t| t.topic_id != info.topic_id)
        })
        .await
        .map_err(|_| timed_out("DeleteTopics"))?;
        let id = Uuid::parse_str(&info.topic_id).unwrap_or_default();
        self.wait_local(ADMIN_TIMEOUT, |b| {
            b.topic(name).is_none_or(|t| t.id != id).then_some(())
        })
        .await
        .ok_or_else(|| timed_out("DeleteTopics"))?;
        tracing::info!(topic = %name, %id, "deleted topic");
        Ok(id)
    }

    pub(super) async fn create_partitions_in_cluster(
        &self,
        c: &Cluster,
        name: &str,
        total: i32,
        assignment: Option<Vec<Vec<u64>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let image = c.image();
        let Some(info) = image.topics.get(name) else {
            return Err(unknown(name));
        };
        let current = info.assignment.len() as i32;
        if total <= current {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!("topic '{name}' has {current} partitions; asked for {total}"),
            ));
        }
        let rf = info.assignment.first().map_or(1, Vec::len);
        let new = (total - current) as usize;
        let added = match assignment {
            None => metadata::assign_over_racks(name, current as usize, new, rf, &unfenced(&image))
                .map_err(|m| TopicError::new(ResponseError::InvalidReplicationFactor, m))?,
            Some(lists) => {
                if lists.len() != new {
                    return Err(TopicError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "{} assignment(s) given for {new} new partition(s)",
                            lists.len()
                        ),
                    ));
                }
                check_assignment(&lists, current as usize, Some(rf), &image)?;
                lists
            }
        };
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::CreatePartitions {
            name: name.to_owned(),
            from: current as usize,
            added,
        };
        let image = c
            .propose_until(&record, ADMIN_TIMEOUT, |img| {
                img.topics
                    .get(name)
                    .is_none_or(|t| t.assignment.len() as i32 != current)
            })
            .await
            .map_err(|_| timed_out("CreatePartitions"))?;
        match image.topics.get(name) {
            None => return Err(unknown(name)),
            Some(t) if t.assignment.len() as i32 != total => {
                return Err(TopicError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic '{name}' changed meanwhile: it has {} partitions",
                        t.assignment.len()
                    ),
                ));
            }
            Some(_) => {}
        }
        self.wait_local(ADMIN_TIMEOUT, |b| {
            b.topic(name)
                .filter(|t| t.partitions.len() as i32 >= total)
                .map(drop)
        })
        .await
        .ok_or_else(|| timed_out("CreatePartitions"))?;
        tracing::info!(topic = %name, from = current, to = total, "added partitions");
        Ok(())
    }

    pub(super) async fn alter_config_in_cluster(
        &self,
        c: &Cluster,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        let record = MetadataRecord::AlterTopicConfigs {
            name: name.to_owned(),
            configs: overrides.clone(),
        };
        c.propose_until(&record, ADMIN_TIMEOUT, |img| {
            img.topics.get(name).is_none_or(|t| t.configs == overrides)
        })
        .await
        .map_err(|_| timed_out("AlterConfigs"))?;
        self.wait_local(ADMIN_TIMEOUT, |b| {
            b.topic(name)
                .is_none_or(|t| t.overrides == overrides)
                .then_some(())
        })
        .await
        .ok_or_else(|| timed_out("AlterConfigs"))?;
        tracing::info!(topic = %name, "topic config changed");
        Ok(())
    }

    /// Waits (bounded) until this broker's state satisfies `f`: the
    /// reconciler applies the image a moment after the quorum commits.
    async fn wait_local<T>(&self, wait: Duration, f: impl Fn(&Broker) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Makes this broker's topics match the cluster image: opens the
    /// replicas assigned here (placeholders for the other partitions),
    /// grows topics, applies config changes, and closes and removes the
    /// replicas of deleted topics.
    pub fn reconcile(&self, image: &ClusterImage) -> bool {
        let Some(c) = &self.cluster else { return true };
        if image
            .brokers
            .get(&c.me)
            .is_none_or(|b| b.directory_id.as_deref() != Some(c.directory_id.as_str()))
        {
            // Not registered with this data folder yet: which incarnation
            // this broker is (its replicas' Raft ids) is not known until
            // then. The registration moves the image, and this runs again.
            return true;
        }
        let mut all_open = true;
        let _one_at_a_time = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        for t in self.topics() {
            let current = image.topics.get(&t.name);
            if current.is_none_or(|i| i.topic_id != t.id.to_string()) {
                self.topics
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&t.name);
                self.remove_partitions(&t, &t.partitions);
                crate::replication::store::forget_votes_of_topic(&self.config.data_dir, &t.name);
                tracing::info!(topic = %t.name, id = %t.id, "removed the deleted topic's replicas");
            }
        }
        for (name, info) in &image.topics {
            let Ok(id) = Uuid::parse_str(&info.topic_id) else {
                tracing::error!(topic = %name, id = %info.topic_id, "topic id in the cluster image is not a UUID");
                continue;
            };
            let existing = self.topic(name).filter(|t| t.id == id);
            let unchanged = existing.as_ref().is_some_and(|t| {
                t.partitions.len() == info.assignment.len()
                    && t.overrides == info.configs
                    && t.partitions.iter().all(|p| {
                        let holders = image.holders(name, p.index);
                        p.is_hosted() == holders.contains(&c.me)
                            && p.replicas().iter().map(|&r| r as u64).eq(holders)
                            && p.generation()
                                .is_none_or(|g| g >= image.generation(name, p.index))
                    })
            });
            if unchanged {
                continue;
            }
            match self.open_from_image(c, image, name, id, existing.as_deref()) {
                Ok(t) => {
                    self.topics
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), Arc::new(t));
                }
                Err(e) => {
                    all_open = false;
                    tracing::error!(topic = %name, error = %e, "could not open the topic's replicas; trying again in a second")
                }
            }
        }
        all_open
    }

    /// The topic as the image describes it, reusing the partitions already
    /// open: a partition a reassignment brings here is opened (an empty
    /// replica the group's leader fills), one it took away is closed and
    /// its folder removed, and every partition's replica list follows the
    /// image.
    fn open_from_image(
        &self,
        c: &Cluster,
        image: &ClusterImage,
        name: &str,
        id: Uuid,
        existing: Option<&Topic>,
    ) -> Result<Topic, crate::error::BrokerError> {
        let info = &image.topics[name];
        let config = TopicConfig::resolve(&self.config, &info.configs);
        let mut partitions: Vec<Arc<Partition>> =
            existing.map(|t| t.partitions.clone()).unwrap_or_default();
        if existing.is_some_and(|t| t.overrides != info.configs) {
            for p in &partitions {
                p.set_config(config.clone());
            }
        }
        let spec = |i: usize| ReplicaSpec {
            data_dir: &self.config.data_dir,
            topic: name,
            index: i as i32,
            config: config.clone(),
            clock: self.clock.clone(),
            data_available: self.data_available.clone(),
            // The group's voters as assigned (a replica opened for a
            // reassignment joins as a learner; a stored configuration
            // wins over this).
            replicas: info.assignment[i].iter().map(|&r| r as i32).collect(),
            dense_offsets: info.dense_offsets,
            first_voters: image.first_voters(name, i as i32),
            preferred: info.assignment[i].first().map(|&b| image.raft_id(b)),
            generation: image.generation(name, i as i32),
            survivor: image
                .generations
                .get(&(name.to_owned(), i as i32))
                .map(|g| (g.survivor, g.epoch_floor)),
        };
        let me = image.raft_id(c.me);
        let mut opened: Vec<Arc<Partition>> = Vec::new();
        let mut removed: Vec<Arc<Partition>> = Vec::new();
        for i in 0..info.assignment.len() {
            let holders = image.holders(name, i as i32);
            let here = holders.contains(&c.me);
            let current = partitions.get(i).cloned();
            let generation = image.generation(name, i as i32);
            let p = match &current {
                Some(p)
                    if p.is_hosted() == here && p.generation().is_none_or(|g| g >= generation) =>
                {
                    p.clone()
                }
                _ if here => {
                    if let Some(old) = current.as_ref().filter(|p| p.is_hosted()) {
                        // An unclean election started the group again: the
                        // replica reopens in the new generation.
                        if let Err(e) = old.detach_and_close() {
                            tracing::warn!(partition = ?old, error = %e, "close before the new generation failed");
                        }
                    }
                    match Partition::open_replicated(spec(i), me, c.host.clone(), c.timing) {
                        Ok(p) => {
                            opened.push(p.clone());
                            p
                        }
                        Err(e) => {
                            // None of this attempt's replicas stays on the
                            // Raft host; the next attempt opens them again.
                            for p in &opened {
                                p.detach();
                            }
                            return Err(e);
                        }
                    }
                }
                _ => {
                    removed.extend(current.clone());
                    Partition::remote(spec(i))
                }
            };
            p.set_replicas(holders.iter().map(|&r| r as i32).collect());
            if i < partitions.len() {
                partitions[i] = p;
            } else {
                partitions.push(p);
            }
        }
        if let Some(t) = existing
            && !removed.is_empty()
        {
            tracing::info!(topic = %name, partitions = ?removed.iter().map(|p| p.index).collect::<Vec<_>>(),
                "removing replicas reassigned away from this broker");
            for p in &removed {
                // Stopped first, so the term and vote kept are the last.
                if let Err(e) = p.detach_and_close() {
                    tracing::warn!(partition = ?p, error = %e, "close before removal failed");
                }
                p.remember_votes(&self.config.data_dir);
            }
            self.remove_partitions(t, &removed);
        }
        if existing.is_none() {
            tracing::info!(topic = %name, partitions = partitions.len(), "opened topic");
        }
        Ok(Topic {
            name: name.to_owned(),
            id,
            partitions,
            config,
            overrides: info.configs.clone(),
        })
    }

    /// Brokers the active controller fenced (not heard from for
    /// `broker.session.timeout.ms`): out of the broker lists and every ISR.
    pub fn fenced(&self) -> std::collections::BTreeSet<i32> {
        match &self.cluster {
            Some(c) => c.with_image(|img| img.fenced.iter().map(|&id| id as i32).collect()),
            None => Default::default(),
        }
    }

    /// A partition's in-sync replicas as Metadata reports them: the
    /// replicas its Raft leader hears from and finds caught up within
    /// `replica.lag.time.max.ms` (`isr`, as the leader last published
    /// them; every replica until it has), but the fenced brokers. Raft
    /// elects only a voter holding every committed entry whatever this
    /// says: it is what operators and clients watch for lagging replicas.
    pub fn in_sync(
        replicas: &[kafka_protocol::messages::BrokerId],
        fenced: &std::collections::BTreeSet<i32>,
        isr: Option<&[i32]>,
    ) -> Vec<kafka_protocol::messages::BrokerId> {
        replicas
            .iter()
            .filter(|r| !fenced.contains(&r.0) && isr.is_none_or(|isr| isr.contains(&r.0)))
            .copied()
            .collect()
    }

    /// The brokers clients of the first listener can reach: (node id,
    /// host, port). See [`Self::brokers_on`].
    pub fn brokers(&self) -> Vec<(i32, String, i32)> {
        let first = self
            .config
            .listener_specs()
            .ok()
            .and_then(|l| l.into_iter().next())
            .map_or_else(|| "PLAINTEXT".to_string(), |l| l.name);
        self.brokers_on(&first)
    }

    /// The brokers clients that came in on `listener` can reach: (node id,
    /// host, port), each at its address on that listener. A broker without
    /// such a listener is left out, as Kafka does.
    ///
    /// This broker is always among them: it answers, so it is up, and a
    /// client that asked it right after it started (before its
    /// registration reached the image) finds the controller it is told of
    /// (itself, see [`Self::controller_id`]) in the same answer.
    pub fn brokers_on(&self, listener: &str) -> Vec<(i32, String, i32)> {
        let specs = self.config.listener_specs().unwrap_or_default();
        // A session on no listener of ours (another broker's, on the
        // internal listener) sees the inter-broker listener, or the first.
        let listener = if specs.iter().any(|l| l.name.eq_ignore_ascii_case(listener)) {
            listener.to_string()
        } else {
            self.config
                .inter_broker_listener_name
                .clone()
                .or_else(|| specs.first().map(|l| l.name.clone()))
                .unwrap_or_else(|| "PLAINTEXT".into())
        };
        let listener = listener.as_str();
        let me = || {
            let spec = specs
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(listener))
                .or(specs.first());
            let (host, port) = match spec {
                Some(l) => (l.advertised_host.clone(), l.advertised_port as i32),
                None => self.config.advertised(),
            };
            (self.node_id(), host, port)
        };
        match &self.cluster {
            Some(c) => {
                let mut out: Vec<(i32, String, i32)> = c.with_image(|img| {
                    img.brokers
                        .iter()
                        .filter(|(id, _)| **id as i32 != self.node_id())
                        .filter(|(id, _)| !img.fenced.contains(id))
                        .filter_map(|(id, b)| {
                            let (host, port) = b.endpoint(listener)?;
                            Some((*id as i32, host, port as i32))
                        })
                        .collect()
                });
                out.push(me());
                out.sort_by_key(|b| b.0);
                out
            }
            None => vec![me()],
        }
    }

    /// Each broker's `broker.rack`, for Metadata and DescribeCluster (only
    /// brokers that have one).
    pub fn broker_racks(&self) -> HashMap<i32, String> {
        match &self.cluster {
            Some(c) => c.with_image(|img| {
                img.brokers
                    .iter()
                    .filter_map(|(id, b)| Some((*id as i32, b.rack.clone()?)))
                    .collect()
            }),
            None => self
                .config
                .broker_rack
                .iter()
                .map(|r| (self.node_id(), r.clone()))
                .collect(),
        }
    }

    /// Where a client reaches node `id` (on the first listener).
    pub fn broker_address(&self, id: i32) -> Option<(String, i32)> {
        self.brokers()
            .into_iter()
            .find(|(n, _, _)| *n == id)
            .map(|(_, h, p)| (h, p))
    }

    /// Where a client of `listener` reaches node `id`.
    pub fn broker_address_on(&self, listener: &str, id: i32) -> Option<(String, i32)> {
        self.brokers_on(listener)
            .into_iter()
            .find(|(n, _, _)| *n == id)
            .map(|(_, h, p)| (h, p))
    }

    /// The controller's node id as Metadata reports it: clients send admin
    /// requests there. Any broker can take them (it proposes to the quorum
    /// itself), so in a cluster this is the answering broker, as Kafka's
    /// KRaft brokers answer with a broker that forwards. (Saying -1 while
    /// this broker was not registered yet left librdkafka waiting for a
    /// controller until its next metadata refresh, 20 s and more.)
    pub fn controller_id(&self) -> i32 {
        self.node_id()
    }

    /// How many brokers have registered (1 alone).
    pub fn broker_count(&self) -> usize {
        self.cluster
            .as_ref()
            .map_or(1, |c| c.with_image(|img| img.brokers.len()))
    }
}

/// Keeps `broker` in step with its cluster image until the image's sender
/// goes away; also registers the broker with the quorum.
pub async fn follow_image(broker: std::sync::Weak<Broker>, cluster: Arc<Cluster>) {
    let mut rx = cluster.subscribe();
    loop {
        let image = rx.borrow_and_update().clone();
        let Some(b) = broker.upgrade() else { return };
        let all_open = match tokio::task::spawn_blocking(move || b.reconcile(&image)).await {
            Ok(all_open) => all_open,
            Err(e) => {
                tracing::error!(error = %e, "reconciling with the cluster image failed");
                false
            }
        };
        if all_open {
            if rx.changed().await.is_err() {
                return;
            }
        } else {
            // Something could not be opened (a full disk, say): again in a
            // second, or sooner if the image moves.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }
}

/// How often leaderships are published and placeholders updated.
const LEADER_TRACKING: Duration = Duration::from_millis(250);
/// A leadership published and not in the image yet is published again
/// after this long (the record may have been dropped without a leader).
const LEADER_REPUBLISH: Duration = Duration::from_secs(2);
/// Leaderships per published record.
const LEADERS_PER_RECORD: usize = 1000;
/// Partitions whose in-sync replicas are looked at per round (a broker
/// that just took thousands of leaderships reports them over a few).
const ISR_CHECKS_PER_ROUND: usize = 256;

/// How long a preferred election asked for stays in force: a leader
/// hands over within this time of the request, or not at all.
const ELECTION_WINDOW: Duration = Duration::from_secs(30);

/// Passes each preferred election in the image (once per request) to the
/// replica this broker leads of that partition.
fn act_on_elections(b: &Broker, cluster: &Cluster, seen: &mut HashMap<(String, i32), u64>) {
    let now = crate::cluster::now_ms();
    let window = ELECTION_WINDOW.as_millis() as u64;
    let fresh: Vec<((String, i32), u64, u64)> = cluster.with_image(|image| {
        seen.retain(|k, _| image.elections.contains_key(k));
        image
            .elections
            .iter()
            .filter(|(k, e)| seen.get(*k) != Some(&e.index) && now.saturating_sub(e.at_ms) < window)
            .map(|(k, e)| (k.clone(), e.index, e.at_ms))
            .collect()
    });
    for ((name, index), record, at_ms) in fresh {
        let Some(p) = b
            .topic(&name)
            .and_then(|t| t.partitions.get(usize::try_from(index).ok()?).cloned())
        else {
            continue;
        };
        if !(p.is_replicated() && p.status().is_leader) {
            continue;
        }
        seen.insert((name, index), record);
        let left = window.saturating_sub(now.saturating_sub(at_ms));
        p.request_hand_over(left / b.config.raft_tick_ms.max(1));
    }
}

/// Tells every local replica the voters its group should have (Raft ids:
/// the assigned brokers' current incarnations, or a reassignment's target)
/// and its preferred leader; whichever leads takes the group there (see
/// `Replica::set_target_voters`): a reassignment, or a broker that came
/// back with a new data folder being swapped in for its old self. A
/// reassignment whose target the group reached is published as complete.
async fn drive_memberships(
    b: &Broker,
    cluster: &Cluster,
    sent: &mut HashMap<(String, i32), (Vec<u64>, u32)>,
) {
    struct Want {
        key: (String, i32),
        target: Vec<u64>,
        preferred: Option<u64>,
        /// A reassignment under way: (topic id, target brokers).
        moving: Option<(String, Vec<u64>)>,
        partition: Arc<Partition>,
    }
    let topics = b.topics();
    let wants: Vec<Want> = cluster.with_image(|image| {
        let mut wants = Vec::new();
        for t in &topics {
            let Some(info) = image
                .topics
                .get(&t.name)
                .filter(|i| i.topic_id == t.id.to_string())
            else {
                continue;
            };
            for p in t.partitions.iter().filter(|p| p.is_replicated()) {
                let key = (t.name.clone(), p.index);
                let Some(assigned) = usize::try_from(p.index)
                    .ok()
                    .and_then(|i| info.assignment.get(i))
                else {
                    continue;
                };
                let moving = image.reassignments.get(&key);
                let brokers = moving.map_or(assigned, |r| &r.target);
                wants.push(Want {
                    target: image.raft_ids(brokers),
                    preferred: brokers.first().map(|&b| image.raft_id(b)),
                    moving: moving.map(|r| (info.topic_id.clone(), r.target.clone())),
                    partition: p.clone(),
                    key,
                });
            }
        }
        wants
    });
    let mut seen = std::collections::HashSet::new();
    for w in wants {
        seen.insert(w.key.clone());
        // Sent again to the replica of a new generation.
        let generation = w.partition.generation().unwrap_or(0);
        if sent.get(&w.key) != Some(&(w.target.clone(), generation)) {
            w.partition
                .set_membership_target(Some(w.target.clone()), w.preferred);
            sent.insert(w.key, (w.target, generation));
            continue;
        }
        let Some((topic_id, target)) = w.moving else {
            continue;
        };
        if w.partition.membership_reached().await {
            let (name, index) = w.key;
            let record = MetadataRecord::CompleteReassignment {
                partition: metadata::PartitionRef {
                    name: name.clone(),
                    topic_id,
                    partition: index,
                },
                replicas: target,
            };
            tracing::info!(topic = %name, partition = index, "reassignment reached its target");
            cluster
                .host
                .propose_anywhere(crate::cluster::CONTROLLER_GROUP, metadata::encode(&record));
        }
    }
    sent.retain(|k, _| seen.contains(k));
}

/// Publishes, through the quorum, the leadership of the partitions led
/// here that the image does not show yet (retried until it does), and tells
/// the placeholders of partitions held elsewhere who leads them — so every
/// broker's Metadata names current leaders and epochs. Leaderships go out
/// a thousand to a record, and one not yet in the image again only after
/// [`LEADER_REPUBLISH`]: a broker that takes 7,000 leaderships at once
/// (a restart) writes seven records, not 7,000 four times a second.
pub async fn track_leaders(broker: std::sync::Weak<Broker>, cluster: Arc<Cluster>) {
    let mut every = tokio::time::interval(LEADER_TRACKING);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: HashMap<(String, i32), (u64, std::time::Instant)> = HashMap::new();
    let mut elections_seen: HashMap<(String, i32), u64> = HashMap::new();
    let mut targets_sent: HashMap<(String, i32), (Vec<u64>, u32)> = HashMap::new();
    // Of each partition led here, by topic: the (term, in-sync changes)
    // last looked at, the in-sync replicas found then and when.
    type IsrSeen = (u64, u64, Vec<u64>, std::time::Instant);
    let mut isr_seen: HashMap<String, HashMap<i32, IsrSeen>> = HashMap::new();
    loop {
        every.tick().await;
        let Some(b) = broker.upgrade() else { return };
        cluster.note_quorum();
        cluster.review_abstention();
        cluster.follow_brokers();
        cluster.admit_brokers();
        cluster.review_liveness(
            Duration::from_millis(b.config.broker_session_timeout_ms),
            Duration::from_millis(b.config.broker_heartbeat_interval_ms),
        );
        if b.config.auto_leader_rebalance_enable {
            cluster.review_balance(
                Duration::from_secs(b.config.leader_imbalance_check_interval_seconds.max(1)),
                b.config.leader_imbalance_per_broker_percentage,
            );
        }
        let unclean_default = b.config.unclean_leader_election_enable;
        cluster.review_unclean(|_, _, t| {
            t.configs
                .get("unclean.leader.election.enable")
                .map_or(unclean_default, |v| v.trim().eq_ignore_ascii_case("true"))
        });
        act_on_elections(&b, &cluster, &mut elections_seen);
        drive_memberships(&b, &cluster, &mut targets_sent).await;
        let topics = b.topics();
        let mut leaders = Vec::new();
        let mut isr_checks = Vec::new();
        let now = std::time::Instant::now();
        sent.retain(|_, (_, at)| now.duration_since(*at) < LEADER_REPUBLISH);
        cluster.with_image(|image| {
            for t in &topics {
                // The image's leaders of this topic in one walk (not a key
                // built per partition: this runs over every partition four
                // times a second).
                let mut known = vec![None; t.partitions.len()];
                let range = (t.name.clone(), i32::MIN)..=(t.name.clone(), i32::MAX);
                for ((_, i), v) in image.leaders.range(range.clone()) {
                    if let Some(slot) = usize::try_from(*i).ok().and_then(|i| known.get_mut(i)) {
                        *slot = Some(*v);
                    }
                }
                let mut isrs = vec![None; t.partitions.len()];
                for ((_, i), v) in image.isr.range(range) {
                    if let Some(slot) = usize::try_from(*i).ok().and_then(|i| isrs.get_mut(i)) {
                        *slot = Some(v.as_slice());
                    }
                }
                for p in &t.partitions {
                    let slot = usize::try_from(p.index).ok();
                    let published = slot.and_then(|i| known.get(i).copied().flatten());
                    let isr = slot.and_then(|i| isrs.get(i).copied().flatten());
                    p.set_isr(isr);
                    if p.is_replicated() {
                        let s = p.status();
                        let seen = isr_seen.get_mut(t.name.as_str());
                        if s.is_leader && published.is_some_and(|(_, epoch)| epoch == s.term) {
                            // Published in this term: are its in-sync
                            // replicas too? Looked at again when they
                            // changed, or when what was found is not in
                            // the image a while after.
                            let look = match seen.and_then(|m| m.get(&p.index)) {
                                Some((term, changes, found, at))
                                    if (*term, *changes) == (s.term, s.in_sync_changes) =>
                                {
                                    isr != Some(found.as_slice())
                                        && now.duration_since(*at) >= LEADER_REPUBLISH
                                }
                                _ => true,
                            };
                            if look {
                                isr_checks.push((t.name.clone(), p.clone(), t.id, s));
                            }
                        } else if !s.is_leader
                            && let Some(m) = seen
                        {
                            m.remove(&p.index);
                        }
                        let new = s.is_leader && published.is_none_or(|(_, epoch)| epoch < s.term);
                        if !new {
                            continue;
                        }
                        let key = (t.name.clone(), p.index);
                        if sent.get(&key).is_none_or(|(epoch, _)| *epoch != s.term) {
                            sent.insert(key, (s.term, now));
                            leaders.push(metadata::LeaderOf {
                                name: t.name.clone(),
                                topic_id: t.id.to_string(),
                                partition: p.index,
                                leader: cluster.me,
                                epoch: s.term,
                                isr: None,
                                generation: p.generation().unwrap_or(0),
                            });
                        }
                    } else if let Some((leader, epoch)) = published {
                        p.set_remote_leader(leader, epoch);
                    }
                }
            }
        });
        // The in-sync replicas of partitions led here whose set changed (or
        // whose published set is not in the image yet), looked at together.
        // Deleted topics forgotten, in one pass over the names (this runs
        // four times a second).
        if !isr_seen.is_empty() {
            let names: std::collections::HashSet<&str> =
                topics.iter().map(|t| t.name.as_str()).collect();
            isr_seen.retain(|name, _| names.contains(name.as_str()));
        }
        isr_checks.truncate(ISR_CHECKS_PER_ROUND);
        let mut looks = tokio::task::JoinSet::new();
        for (name, p, topic_id, s) in isr_checks {
            looks.spawn(async move {
                let found = p.in_sync_brokers().await;
                (name, p, topic_id, s, found)
            });
        }
        while let Some(Ok((name, p, topic_id, s, found))) = looks.join_next().await {
            let Some(found) = found else { continue };
            let in_image = p
                .isr()
                .is_some_and(|i| i.iter().map(|&x| x as u64).eq(found.iter().copied()));
            if !in_image {
                leaders.push(metadata::LeaderOf {
                    name: name.clone(),
                    topic_id: topic_id.to_string(),
                    partition: p.index,
                    leader: cluster.me,
                    epoch: s.term,
                    isr: Some(found.clone()),
                    generation: p.generation().unwrap_or(0),
                });
            }
            isr_seen
                .entry(name)
                .or_default()
                .insert(p.index, (s.term, s.in_sync_changes, found, now));
        }
        while !leaders.is_empty() {
            let rest = leaders.split_off(leaders.len().min(LEADERS_PER_RECORD));
            let record = MetadataRecord::PartitionLeaders { leaders };
            cluster
                .host
                .propose_anywhere(crate::cluster::CONTROLLER_GROUP, metadata::encode(&record));
            leaders = rest;
        }
    }
}
