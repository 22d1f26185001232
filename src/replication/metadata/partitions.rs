//! What the cluster image says about partitions — who holds, votes in and
//! should lead them — and where new replicas go.

use std::collections::{BTreeMap, BTreeSet};

use super::{ClusterImage, PartitionRef, TopicInfo};

impl ClusterImage {
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
    pub(super) fn assignment_of(&self, name: &str, partition: i32) -> Option<&Vec<u64>> {
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
    pub(super) fn assigned(&self, p: &PartitionRef) -> Result<Vec<u64>, String> {
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
        crate::replication::raft_id(broker, self.incarnations.get(&broker).copied().unwrap_or(0))
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
