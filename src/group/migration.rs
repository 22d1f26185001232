//! The coordinator's side of KIP-848 online migration
//! (`group.consumer.migration.policy`):
//!
//! - upgrade: a ConsumerGroupHeartbeat joining a classic group with members
//!   turns it into a consumer group ([`ConsumerGroup::from_classic`]); parked
//!   JoinGroup and SyncGroup requests are answered REBALANCE_IN_PROGRESS;
//! - classic requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) to a
//!   consumer group are served by it for its classic members;
//! - downgrade: when the last member using the consumer protocol leaves (or
//!   expires) and classic members remain, the group becomes a classic group
//!   again ([`ConsumerGroup::to_classic`]) and rebalances.
//!
//! Each conversion is one batch in `__consumer_offsets`: the tombstone of
//! the old kind's record and the new kind's record, so a restarted
//! coordinator finds the group as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::classic::{GroupState, JoinOutcome, JoinRequest, SyncOutcome};
use super::consumer::ConsumerGroup;
use super::{Deliveries, GroupCoordinator, Inner, OFFSETS_TOPIC, records};
use crate::broker::Broker;
use crate::partition::{AppendResult, Partition};

pub(super) type Written = Result<(Arc<Partition>, AppendResult), i16>;

/// A record of `__consumer_offsets`: key, and value (None: a tombstone).
type Record = (Bytes, Option<Bytes>);

impl GroupCoordinator {
    /// Partition counts of every topic a subscription could name or match
    /// (internal topics never).
    pub(super) fn subscribable(broker: &Broker) -> BTreeMap<String, i32> {
        broker
            .topics()
            .iter()
            .filter(|t| t.name != OFFSETS_TOPIC)
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect()
    }

    /// Online upgrade of the classic group `group` (which has members): the
    /// consumer group it becomes, or why it stays classic.
    pub(super) fn upgraded(
        &self,
        broker: &Broker,
        inner: &Inner,
        group: &str,
        now: i64,
    ) -> Result<ConsumerGroup, String> {
        let policy = broker.config.group_consumer_migration_policy;
        if !policy.upgrade() {
            return Err(format!(
                "group.consumer.migration.policy is {policy}: no online upgrade"
            ));
        }
        let classic = inner.groups.get(group).expect("checked by the caller");
        let config = broker.consumer_group_config(group);
        ConsumerGroup::from_classic(classic, config, &Self::subscribable(broker), now)
            .map_err(|e| e.0)
    }

    /// Puts the converted group in the classic one's place. Returns the
    /// record to write first (the classic group's tombstone) and the answers
    /// of the requests parked in the classic rebalance: they start over.
    pub(super) fn install_upgraded(
        inner: &mut Inner,
        group: &str,
        converted: ConsumerGroup,
    ) -> (Record, Deliveries) {
        inner.groups.remove(group);
        inner.consumers.insert(group.to_owned(), converted);
        let mut d = Deliveries::default();
        let c = ResponseError::RebalanceInProgress.code();
        let parked = |k: &(String, String)| k.0 == group;
        let joins: Vec<_> = inner
            .join_waiters
            .keys()
            .filter(|k| parked(k))
            .cloned()
            .collect();
        for k in joins {
            if let Some(tx) = inner.join_waiters.remove(&k) {
                d.joins.push((tx, JoinOutcome::error(c, &k.1)));
            }
        }
        let syncs: Vec<_> = inner
            .sync_waiters
            .keys()
            .filter(|k| parked(k))
            .cloned()
            .collect();
        for k in syncs {
            if let Some(tx) = inner.sync_waiters.remove(&k) {
                d.syncs.push((tx, SyncOutcome::error(c)));
            }
        }
        ((records::group_key(group), None), d)
    }

    /// When `leaving` (members about to leave or expire) are the group's
    /// last members using the consumer protocol, other members remain and
    /// the policy allows it: the group becomes a classic group in their
    /// stead (Kafka's online downgrade). Returns the records that store it.
    pub(super) fn downgrade_instead(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        group: &str,
        leaving: &[String],
        now: i64,
    ) -> Option<Vec<Record>> {
        let c = inner.consumers.get(group)?;
        if !(broker.config.group_consumer_migration_policy.downgrade()
            && c.only_classic_members_without(leaving))
        {
            return None;
        }
        tracing::info!(group, leaving = ?leaving, "last consumer-protocol member leaving");
        let classic = c.to_classic(leaving, self.config, now);
        let value = records::group_value(&classic.snapshot());
        inner.consumers.remove(group);
        inner.groups.insert(group.to_owned(), classic);
        Some(vec![
            (records::consumer_group_key(group), None),
            (records::group_key(group), Some(value)),
        ])
    }

    /// JoinGroup of a classic member of the consumer group `group` (called
    /// with the lock held); the group's record is written when it changed.
    pub(super) fn consumer_group_join(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        group: &str,
        req: JoinRequest,
        now: i64,
    ) -> (JoinOutcome, Option<Written>) {
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            let c = ResponseError::InvalidSessionTimeout.code();
            return (JoinOutcome::error(c, &req.member_id), None);
        }
        let partitions = Self::subscribable(broker);
        let Some(g) = inner.consumers.get_mut(group) else {
            let c = ResponseError::UnknownMemberId.code();
            return (JoinOutcome::error(c, &req.member_id), None);
        };
        let out = g.classic_join(req, &partitions, now);
        if !g.take_dirty() {
            return (out, None);
        }
        let record = self.consumer_group_record(group, g);
        (out, Some(self.append(broker, group, &[record])))
    }

    /// LeaveGroup of classic members of the consumer group `group`.
    pub(super) fn consumer_group_leave(
        &self,
        broker: &Broker,
        inner: &mut Inner,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> (Vec<i16>, Option<Written>) {
        let Some(g) = inner.consumers.get_mut(group) else {
            return (Vec::new(), None);
        };
        let codes = g.classic_leave(members);
        if !g.take_dirty() {
            return (codes, None);
        }
        let record = self.consumer_group_record(group, g);
        (codes, Some(self.append(broker, group, &[record])))
    }

    /// Whether `group` is served as a consumer group (one with members).
    pub(super) fn is_consumer_group(inner: &Inner, group: &str) -> bool {
        inner.consumers.get(group).is_some_and(|c| !c.is_empty())
    }

    /// Whether `group` is a classic group with members.
    pub(super) fn is_live_classic(inner: &Inner, group: &str) -> bool {
        inner
            .groups
            .get(group)
            .is_some_and(|g| !matches!(g.state(), GroupState::Empty | GroupState::Dead))
    }
}

/// Waits until a write is durable; the error code to answer otherwise.
pub(super) async fn durable(written: Option<Written>) -> Result<(), i16> {
    match written {
        None => Ok(()),
        Some(Err(c)) => Err(c),
        Some(Ok((p, last))) => p
            .wait_acked(&last, std::time::Duration::from_secs(30))
            .await
            .map_err(|_| ResponseError::RequestTimedOut.code()),
    }
}
