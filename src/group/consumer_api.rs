//! The coordinator's side of KIP-848 consumer groups: ConsumerGroupHeartbeat
//! and ConsumerGroupDescribe, on top of [`super::consumer`].
//!
//! Committed offsets are shared with classic groups (same records, same
//! checks in `commit`). Every change of a group (members, epochs, target and
//! current assignments) is stored as one snapshot record in
//! `__consumer_offsets` before the heartbeat that caused it is answered, so
//! after a restart members go on at their epoch with their partitions.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::assignor::Assignment;
use super::consumer::{
    ConsumerGroup, HeartbeatOutcome, HeartbeatRequest, JOIN, LEAVE, LEAVE_STATIC,
};
use super::{GroupCoordinator, records};
use crate::broker::Broker;

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    pub assignment: Assignment,
    pub target: Assignment,
    /// Still on the classic protocol (after an online upgrade).
    pub classic: bool,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

impl GroupCoordinator {
    pub async fn consumer_heartbeat(
        &self,
        broker: &Broker,
        group: &str,
        mut req: HeartbeatRequest,
    ) -> HeartbeatOutcome {
        let refuse = |e: ResponseError, msg: &str| HeartbeatOutcome {
            error: e.code(),
            message: Some(msg.to_owned()),
            epoch: -1,
            ..HeartbeatOutcome::default()
        };
        if let Err(c) = self.offsets_partition(broker, group).await {
            return HeartbeatOutcome {
                error: c,
                epoch: -1,
                ..HeartbeatOutcome::default()
            };
        }
        if req.member_id.is_empty() {
            req.member_id = uuid::Uuid::new_v4().simple().to_string();
        }
        let now = broker.now_ms();
        let leaving = matches!(req.epoch, LEAVE | LEAVE_STATIC);
        let partitions = Self::subscribable(broker);
        let (out, written, parked) = {
            let mut inner = self.lock();
            if Self::is_live_classic(&inner, group) {
                // Only a joining member may convert the group (KIP-848
                // online upgrade); otherwise, as Kafka: not a consumer group.
                let tried = match req.epoch {
                    JOIN => self.upgraded(broker, &inner, group, now),
                    _ => Err("the member is not joining".to_owned()),
                };
                let mut converted = match tried {
                    Ok(c) => c,
                    Err(why) => {
                        info_limited!(group, reason = %why, "classic group not converted to a consumer group");
                        return refuse(
                            ResponseError::GroupIdNotFound,
                            &format!("group '{group}' is a classic group with members: {why}"),
                        );
                    }
                };
                // A request refused leaves the group classic.
                let out = converted.heartbeat(req, &partitions, now);
                if out.error != 0 {
                    return out;
                }
                converted.take_dirty();
                let record = self.consumer_group_record(group, &converted);
                let (first, d) = Self::install_upgraded(&mut inner, group, converted);
                let written = self.append(broker, group, &[first, record]);
                (out, written, Some(d))
            } else {
                // The last consumer-protocol member leaving a group of
                // classic members: the group goes back to classic instead.
                let member = [req.member_id.clone()];
                let known = inner
                    .consumers
                    .get(group)
                    .is_some_and(|g| g.members().any(|m| m.id == req.member_id));
                if leaving
                    && known
                    && let Some(recs) =
                        self.downgrade_instead(broker, &mut inner, group, &member, now)
                {
                    let out = HeartbeatOutcome {
                        member_id: req.member_id,
                        epoch: req.epoch,
                        ..HeartbeatOutcome::default()
                    };
                    (out, self.append(broker, group, &recs), None)
                } else {
                    // An empty classic group (offsets only) becomes a consumer-protocol one.
                    inner.groups.remove(group);
                    let config = broker.consumer_group_config(group);
                    let g = inner
                        .consumers
                        .entry(group.to_owned())
                        .or_insert_with(|| ConsumerGroup::new(group, config));
                    g.set_config(config);
                    let out = g.heartbeat(req, &partitions, now);
                    if !g.take_dirty() {
                        return out;
                    }
                    // The group changed: stored before the member hears of it.
                    let record = self.consumer_group_record(group, g);
                    (out, self.append(broker, group, &[record]), None)
                }
            }
        };
        if let Some(d) = parked {
            d.deliver().await;
        }
        match written {
            Ok((p, last)) => match p.wait_acked(&last, Duration::from_secs(30)).await {
                Ok(()) => out,
                Err(e) => refuse(
                    ResponseError::RequestTimedOut,
                    &format!("group not stored: {e}"),
                ),
            },
            Err(c) => HeartbeatOutcome {
                error: c,
                epoch: -1,
                ..HeartbeatOutcome::default()
            },
        }
    }

    /// The group's snapshot record; a tombstone once it has no members.
    pub(super) fn consumer_group_record(
        &self,
        group: &str,
        g: &ConsumerGroup,
    ) -> (Bytes, Option<Bytes>) {
        let key = records::consumer_group_key(group);
        if g.is_empty() {
            (key, None)
        } else {
            (key, Some(records::consumer_group_value(&g.snapshot())))
        }
    }

    /// ConsumerGroupDescribe: GROUP_ID_NOT_FOUND for unknown and classic groups.
    pub fn consumer_describe(&self, group: &str) -> Result<ConsumerGroupDescription, i16> {
        let inner = self.lock();
        let g = inner
            .consumers
            .get(group)
            .ok_or(ResponseError::GroupIdNotFound.code())?;
        Ok(ConsumerGroupDescription {
            state: g.state(),
            epoch: g.epoch(),
            assignment_epoch: g.assignment_epoch(),
            assignor: g.assignor().to_owned(),
            members: g
                .members()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.iter().cloned().collect(),
                    regex: m.regex.clone(),
                    assignment: m.assigned.clone(),
                    target: g.target(&m.id),
                    classic: m.classic.is_some(),
                })
                .collect(),
        })
    }
}
