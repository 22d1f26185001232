//! KIP-848 online migration: a classic group whose members all use the
//! "consumer" embedded protocol becomes a consumer group when a member of
//! the new protocol joins it (upgrade), and a consumer group whose last
//! member of the new protocol leaves becomes a classic group again
//! (downgrade), as `group.consumer.migration.policy` allows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::{ClassicMember, ConsumerGroup, ConsumerGroupConfig, ConsumerMember};
use crate::group::assignor::Assignment;
use crate::group::classic::{Group, GroupConfig, Member};
use crate::group::consumer_protocol::{self, PROTOCOL_TYPE};

/// Kafka's `group.consumer.migration.policy` (Kafka 4.x default: bidirectional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    Disabled,
    Upgrade,
    Downgrade,
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    pub fn upgrade(self) -> bool {
        matches!(self, Self::Upgrade | Self::Bidirectional)
    }

    pub fn downgrade(self) -> bool {
        matches!(self, Self::Downgrade | Self::Bidirectional)
    }
}

impl FromStr for MigrationPolicy {
    type Err = String;

    /// Case-insensitive, as Kafka's validator.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Ok(Self::Disabled),
            "upgrade" => Ok(Self::Upgrade),
            "downgrade" => Ok(Self::Downgrade),
            "bidirectional" => Ok(Self::Bidirectional),
            _ => Err(format!(
                "invalid group.consumer.migration.policy '{s}': one of disabled, upgrade, \
                 downgrade, bidirectional"
            )),
        }
    }
}

impl fmt::Display for MigrationPolicy {
    /// Kafka's (lower-case) names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disabled => "disabled",
            Self::Upgrade => "upgrade",
            Self::Downgrade => "downgrade",
            Self::Bidirectional => "bidirectional",
        })
    }
}

impl<'de> serde::Deserialize<'de> for MigrationPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a classic group cannot become a consumer group.
#[derive(Debug, Clone, PartialEq)]
pub struct NotConvertible(pub String);

impl ConsumerGroup {
    /// Kafka's online upgrade of a classic group with members: each classic
    /// member becomes a member of the consumer group that keeps using the
    /// classic protocol, with the subscription of its JoinGroup metadata and
    /// the assignment of its last SyncGroup; the group epoch, the target
    /// assignment epoch and every member's epoch start at the generation.
    /// `partitions` holds the partition count of every existing topic:
    /// assigned partitions of topics that are gone are dropped.
    pub fn from_classic(
        classic: &Group,
        config: ConsumerGroupConfig,
        partitions: &BTreeMap<String, i32>,
        now: i64,
    ) -> Result<Self, NotConvertible> {
        if classic.protocol_type() != Some(PROTOCOL_TYPE) {
            return Err(NotConvertible(format!(
                "the group's protocol type is {:?}, not \"consumer\"",
                classic.protocol_type().unwrap_or_default()
            )));
        }
        let generation = classic.generation();
        let mut g = Self::new(classic.id.clone(), config);
        g.epoch = generation;
        g.assignment_epoch = generation;
        for m in classic.members() {
            let metadata = match classic.protocol() {
                Some(p) => m.metadata(p),
                None => m
                    .protocols
                    .first()
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
            };
            let sub = consumer_protocol::decode_subscription(&metadata)
                .map_err(|e| NotConvertible(format!("member {}: {e}", m.id)))?;
            let mut assigned = consumer_protocol::decode_assignment(&m.assignment)
                .map_err(|e| NotConvertible(format!("member {}: {e}", m.id)))?;
            assigned.retain(|t, ps| {
                let n = partitions.get(t).copied().unwrap_or(0);
                ps.retain(|p| (0..n).contains(p));
                !ps.is_empty()
            });
            g.target.insert(m.id.clone(), assigned.clone());
            g.members.insert(
                m.id.clone(),
                ConsumerMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: sub.rack_id,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: generation,
                    subscribed: sub.topics,
                    regex: None,
                    compiled: None,
                    regex_allowed: None,
                    assignor: None,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assigned,
                    revoking: Assignment::new(),
                    deadline: now + m.session_timeout_ms as i64,
                    revoke_deadline: now,
                    previous_epoch: generation,
                    send_assignment: false,
                    classic: Some(ClassicMember {
                        session_timeout_ms: m.session_timeout_ms,
                        protocols: m.protocols.clone(),
                    }),
                },
            );
        }
        // The partition counts the assignments were made with: the
        // conversion alone bumps no epoch.
        g.partitions_seen = partitions
            .iter()
            .filter(|(t, _)| g.members.values().any(|m| m.subscribed.contains(*t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect();
        g.dirty = true;
        tracing::info!(group = %g.id, generation, members = g.members.len(), "classic group converted to a consumer group (online upgrade)");
        Ok(g)
    }

    /// Whether the members other than `leaving` all use the classic
    /// protocol (and there is one): without them, the group can go back to
    /// being a classic group.
    pub fn only_classic_members_without(&self, leaving: &[String]) -> bool {
        let mut rest = self.members.values().filter(|m| !leaving.contains(&m.id));
        let mut any = false;
        rest.all(|m| {
            any = true;
            m.classic.is_some()
        }) && any
    }

    /// Kafka's online downgrade, instead of removing the `leaving` members:
    /// a classic group at generation = the group epoch (so members at it
    /// keep committing), every other member with its classic protocols and
    /// its current assignment, rebalancing at once so the members rejoin.
    pub fn to_classic(&self, leaving: &[String], config: GroupConfig, now: i64) -> Group {
        let members = self
            .members
            .values()
            .filter(|m| !leaving.contains(&m.id))
            .filter_map(|m| {
                let c = m.classic.as_ref()?;
                let version = c
                    .protocols
                    .first()
                    .map_or(0, |(_, meta)| consumer_protocol::version(meta));
                Some(Member {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: c.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: c.protocols.clone(),
                    assignment: consumer_protocol::encode_assignment(&m.assigned, version),
                    awaiting_join: false,
                    awaiting_sync: false,
                    deadline: now + c.session_timeout_ms as i64,
                })
            })
            .collect();
        tracing::info!(group = %self.id, generation = self.epoch, "consumer group converted back to a classic group (online downgrade)");
        Group::downgraded(&self.id, config, self.epoch, members, now)
    }
}
