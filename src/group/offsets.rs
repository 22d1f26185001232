//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete on the
//! coordinator, for classic and consumer-protocol groups alike.

use std::collections::HashSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::classic::{Group, GroupState};
use super::records::{self, OffsetValue};
use super::{
    CommitItem, Committed, GroupCoordinator, OFFSET_METADATA_MAX_BYTES, TopicOffsets, code,
};
use crate::broker::Broker;

impl GroupCoordinator {
    /// offsets.retention.minutes, as Kafka has it since KIP-211: the offsets of
    /// a group expire `retention_ms` after the later of their commit and the
    /// moment the group became empty; a group with members keeps them all.
    /// Expired offsets are deleted with tombstones, and a group left with no
    /// offsets and no members is forgotten. Returns how many expired.
    pub async fn expire_offsets(&self, broker: &Broker, retention_ms: i64) -> usize {
        let now = broker.now_ms();
        let mut written = Vec::new();
        let mut expired = 0;
        {
            let mut inner = self.lock();
            let ids: Vec<String> = inner.offsets.keys().cloned().collect();
            for id in ids {
                let empty_since = match (inner.groups.get(&id), inner.consumers.get(&id)) {
                    (_, Some(c)) if !c.is_empty() => continue,
                    (Some(g), _) if g.state() != GroupState::Empty => continue,
                    (Some(g), _) => g.state_since(),
                    (None, _) => 0,
                };
                let Some(map) = inner.offsets.get_mut(&id) else {
                    continue;
                };
                let gone: Vec<(String, i32)> = map
                    .iter()
                    .filter(|(_, c)| {
                        now >= c
                            .commit_timestamp
                            .max(empty_since)
                            .saturating_add(retention_ms)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if gone.is_empty() {
                    continue;
                }
                let mut recs: Vec<(bytes::Bytes, Option<bytes::Bytes>)> = gone
                    .iter()
                    .map(|(t, p)| (records::offset_key(&id, t, *p), None))
                    .collect();
                for k in &gone {
                    map.remove(k);
                }
                expired += gone.len();
                if map.is_empty() {
                    inner.offsets.remove(&id);
                    if inner.groups.get(&id).is_some_and(|g| g.is_idle()) {
                        inner.groups.remove(&id);
                        recs.push((records::group_key(&id), None));
                    }
                }
                tracing::info!(group = %id, partitions = gone.len(), "committed offsets expired (offsets.retention.minutes)");
                match self.append(broker, &id, &recs) {
                    Ok(w) => written.push(w),
                    Err(c) => {
                        tracing::error!(group = %id, code = c, "could not write offset tombstones")
                    }
                }
            }
        }
        for (p, last) in written {
            if let Err(e) = p.wait_acked(&last, Duration::from_secs(30)).await {
                tracing::warn!(partition = ?p, error = %e, "offset tombstones not yet durable");
            }
        }
        expired
    }

    /// Stores committed offsets; one code per item, in order.
    pub async fn commit(
        &self,
        broker: &Broker,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        items: &[CommitItem],
    ) -> Vec<i16> {
        if let Err(c) = self.offsets_partition(broker, group).await {
            return vec![c; items.len()];
        }
        let now = broker.now_ms();
        let mut codes = vec![0i16; items.len()];
        let mut recs = Vec::new();
        let mut written = Vec::new();
        let (p, last) = {
            let mut inner = self.lock();
            let check = if let Some(c) = inner.consumers.get(group) {
                c.validate_commit(
                    member_id,
                    generation,
                    items.iter().map(|i| (i.topic.as_str(), i.partition)),
                )
            } else {
                match inner.groups.get_mut(group) {
                    Some(g) => g.validate_commit(member_id, instance_id, generation, now),
                    None if generation < 0 => {
                        inner
                            .groups
                            .insert(group.to_owned(), Group::new(group, self.config, now));
                        Ok(())
                    }
                    None => Err(code(ResponseError::IllegalGeneration)),
                }
            };
            if let Err(c) = check {
                return vec![c; items.len()];
            }
            for (i, key, value) in offset_records(group, items, now, &mut codes) {
                recs.push((key, Some(records::offset_value(&value))));
                written.push((i, value));
            }
            if recs.is_empty() {
                return codes;
            }
            match self.append(broker, group, &recs) {
                Ok(w) => w,
                Err(c) => return vec![c; items.len()],
            }
        };
        if let Err(e) = p.wait_acked(&last, Duration::from_secs(30)).await {
            tracing::error!(group, error = %e, "offset commit did not become durable");
            for (i, _) in &written {
                codes[*i] = code(ResponseError::RequestTimedOut);
            }
            return codes;
        }
        let first = last.last_offset + 1 - written.len() as i64;
        let mut inner = self.lock();
        let map = inner.offsets.entry(group.to_owned()).or_default();
        for (n, (i, value)) in written.into_iter().enumerate() {
            let item = &items[i];
            let c = committed(value, first + n as i64);
            let key = (item.topic.clone(), item.partition);
            if map
                .get(&key)
                .is_none_or(|old| old.record_offset < c.record_offset)
            {
                map.insert(key, c);
            }
        }
        codes
    }

    /// Committed offsets of a group: of the given partitions, or all of them.
    pub fn fetch(&self, group: &str, wanted: Option<&[(String, Vec<i32>)]>) -> Vec<TopicOffsets> {
        let inner = self.lock();
        let map = inner.offsets.get(group);
        match wanted {
            Some(topics) => topics
                .iter()
                .map(|(t, parts)| {
                    let parts = parts
                        .iter()
                        .map(|&p| (p, map.and_then(|m| m.get(&(t.clone(), p))).cloned()))
                        .collect();
                    (t.clone(), parts)
                })
                .collect(),
            None => {
                let mut out: Vec<TopicOffsets> = Vec::new();
                for ((t, p), c) in map.into_iter().flatten() {
                    match out.last_mut() {
                        Some((last, parts)) if last == t => parts.push((*p, Some(c.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(c.clone()))])),
                    }
                }
                out
            }
        }
    }

    /// OffsetDelete: forgets offsets of topics the group no longer consumes.
    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, Vec<(i32, i16)>)>, i16> {
        self.coordinates(broker, group).await?;
        let (out, written) = {
            let mut inner = self.lock();
            let state = inner.groups.get(group).map(|g| g.state());
            let consumer = inner.consumers.get(group);
            if state == Some(GroupState::Dead)
                || (state.is_none() && consumer.is_none() && !inner.offsets.contains_key(group))
            {
                return Err(code(ResponseError::GroupIdNotFound));
            }
            let mut subscribed = match inner.groups.get(group) {
                Some(g) if g.state() != GroupState::Empty => {
                    if g.protocol_type() != Some("consumer") {
                        return Err(code(ResponseError::NonEmptyGroup));
                    }
                    subscribed_topics(g)
                }
                _ => HashSet::new(),
            };
            // A KIP-848 group's members subscribe by name or by pattern.
            if let Some(c) = consumer {
                subscribed.extend(
                    topics
                        .iter()
                        .filter(|(t, _)| c.subscribes_to(t))
                        .map(|(t, _)| t.clone()),
                );
            }
            let mut recs = Vec::new();
            let mut out = Vec::new();
            for (t, parts) in topics {
                let mut codes = Vec::new();
                for &p in parts {
                    if subscribed.contains(t) {
                        codes.push((p, code(ResponseError::GroupSubscribedToTopic)));
                        continue;
                    }
                    if let Some(m) = inner.offsets.get_mut(group)
                        && m.remove(&(t.clone(), p)).is_some()
                    {
                        recs.push((records::offset_key(group, t, p), None));
                    }
                    codes.push((p, 0));
                }
                out.push((t.clone(), codes));
            }
            let written = if recs.is_empty() {
                None
            } else {
                Some(self.append(broker, group, &recs)?)
            };
            (out, written)
        };
        if let Some((p, last)) = written {
            p.wait_acked(&last, Duration::from_secs(30))
                .await
                .map_err(|_| code(ResponseError::RequestTimedOut))?;
        }
        Ok(out)
    }
}

pub(super) fn committed(v: OffsetValue, record_offset: i64) -> Committed {
    Committed {
        offset: v.offset,
        leader_epoch: v.leader_epoch,
        metadata: v.metadata,
        commit_timestamp: v.commit_timestamp,
        record_offset,
    }
}

/// Topics the members of a consumer group subscribe to (from their
/// ConsumerProtocolSubscription metadata).
fn subscribed_topics(g: &Group) -> HashSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let protocol = g.protocol().unwrap_or_default();
    let mut out = HashSet::new();
    for m in g.members() {
        let mut meta = m.metadata(protocol);
        if meta.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([meta[0], meta[1]]);
        let _ = bytes::Buf::get_i16(&mut meta);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)) {
            out.extend(sub.topics.into_iter().map(|t| t.to_string()));
        }
    }
    out
}

/// The offset records of a commit's items, with each item's index: items
/// whose metadata is over offset.metadata.max.bytes get
/// OFFSET_METADATA_TOO_LARGE in `codes` and no record.
pub(super) fn offset_records(
    group: &str,
    items: &[CommitItem],
    now: i64,
    codes: &mut [i16],
) -> Vec<(usize, bytes::Bytes, OffsetValue)> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.metadata.len() > OFFSET_METADATA_MAX_BYTES {
            codes[i] = code(ResponseError::OffsetMetadataTooLarge);
            continue;
        }
        let value = OffsetValue {
            offset: item.offset,
            leader_epoch: item.leader_epoch,
            metadata: item.metadata.clone(),
            commit_timestamp: now,
        };
        out.push((
            i,
            records::offset_key(group, &item.topic, item.partition),
            value,
        ));
    }
    out
}
