//! The records of `__consumer_offsets`, in Kafka's own layouts, so that tools
//! that read the topic understand it:
//!
//! | key (version) | key fields | value (version) |
//! |---|---|---|
//! | offset commit (1) | group, topic, partition | offset, leader epoch, metadata, commit time (3) |
//! | group metadata (2) | group | protocol type, generation, protocol, leader, state time, members (3) |
//! | consumer group (1000) | group | a snapshot of a KIP-848 group (0) |
//!
//! The last row is Sluice's own: Kafka keeps a KIP-848 group as several
//! flexible-version records; one snapshot per change is simpler and is what
//! the loader needs. Its key version is far from Kafka's so neither is mistaken
//! for the other.
//!
//! A record with a null value is a tombstone: the offset or group is deleted.
//! Strings are i16-length-prefixed, byte arrays i32-length-prefixed, as in
//! Kafka's non-flexible schemas.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::assignor::Assignment;
use super::classic::{GroupSnapshot, MemberSnapshot};
use super::consumer::{self, ConsumerGroupSnapshot};

/// Key version of a KIP-848 group snapshot.
const CONSUMER_GROUP_KEY: i16 = 1000;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// What one record of the topic says.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupSnapshot>,
    },
    ConsumerGroup {
        group: String,
        value: Option<ConsumerGroupSnapshot>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable __consumer_offsets record: {0}")]
pub struct DecodeError(&'static str);

type Result<T> = std::result::Result<T, DecodeError>;

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(g: &GroupSnapshot) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_nullable_str(&mut b, g.protocol.as_deref());
    put_nullable_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_timestamp);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

pub fn consumer_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(CONSUMER_GROUP_KEY);
    put_str(&mut b, group);
    b.freeze()
}

fn put_assignment(b: &mut BytesMut, a: &Assignment) {
    b.put_i32(a.len() as i32);
    for (t, ps) in a {
        put_str(b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
}

fn get_assignment(buf: &mut &[u8]) -> Result<Assignment> {
    let mut a = Assignment::new();
    for _ in 0..get_i32(buf)?.max(0) {
        let t = get_str(buf)?;
        let n = get_i32(buf)?;
        let mut ps = std::collections::BTreeSet::new();
        for _ in 0..n.max(0) {
            ps.insert(get_i32(buf)?);
        }
        a.insert(t, ps);
    }
    Ok(a)
}

pub fn consumer_group_value(g: &ConsumerGroupSnapshot) -> Bytes {
    let mut b = BytesMut::new();
    // Version 1 added each member's regular expression (at its end);
    // version 2 what a member using the classic protocol joined with (its
    // session timeout, -1 for none, then its protocols).
    b.put_i16(2);
    b.put_i32(g.epoch);
    b.put_i32(g.assignment_epoch);
    put_str(&mut b, &g.assignor);
    b.put_i32(g.partitions_seen.len() as i32);
    for (t, n) in &g.partitions_seen {
        put_str(&mut b, t);
        b.put_i32(*n);
    }
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_nullable_str(&mut b, m.rack_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.epoch);
        b.put_i32(m.subscribed.len() as i32);
        for t in &m.subscribed {
            put_str(&mut b, t);
        }
        put_nullable_str(&mut b, m.assignor.as_deref());
        b.put_i32(m.rebalance_timeout_ms);
        put_assignment(&mut b, &m.assigned);
        put_assignment(&mut b, &m.revoking);
        put_assignment(&mut b, &m.target);
        put_nullable_str(&mut b, m.regex.as_deref());
        match &m.classic {
            None => b.put_i32(-1),
            Some(c) => {
                b.put_i32(c.session_timeout_ms.max(0));
                b.put_i32(c.protocols.len() as i32);
                for (name, meta) in &c.protocols {
                    put_str(&mut b, name);
                    put_bytes(&mut b, meta);
                }
            }
        }
    }
    b.freeze()
}

fn decode_consumer_group_value(mut v: &[u8]) -> Result<ConsumerGroupSnapshot> {
    let version = get_i16(&mut v)?;
    if !(0..=2).contains(&version) {
        return Err(DecodeError("unknown consumer group snapshot version"));
    }
    let epoch = get_i32(&mut v)?;
    let assignment_epoch = get_i32(&mut v)?;
    let assignor = get_str(&mut v)?;
    let mut partitions_seen = std::collections::BTreeMap::new();
    for _ in 0..get_i32(&mut v)?.max(0) {
        let t = get_str(&mut v)?;
        partitions_seen.insert(t, get_i32(&mut v)?);
    }
    let mut members = Vec::new();
    for _ in 0..get_i32(&mut v)?.max(0) {
        let id = get_str(&mut v)?;
        let instance_id = get_nullable_str(&mut v)?;
        let rack_id = get_nullable_str(&mut v)?;
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let epoch = get_i32(&mut v)?;
        let mut subscribed = std::collections::BTreeSet::new();
        for _ in 0..get_i32(&mut v)?.max(0) {
            subscribed.insert(get_str(&mut v)?);
        }
        let assignor = get_nullable_str(&mut v)?;
        let rebalance_timeout_ms = get_i32(&mut v)?;
        let assigned = get_assignment(&mut v)?;
        let revoking = get_assignment(&mut v)?;
        let target = get_assignment(&mut v)?;
        let regex = if version >= 1 {
            get_nullable_str(&mut v)?
        } else {
            None
        };
        let session_timeout_ms = if version >= 2 { get_i32(&mut v)? } else { -1 };
        let classic = if session_timeout_ms < 0 {
            None
        } else {
            let mut protocols = Vec::new();
            for _ in 0..get_i32(&mut v)?.max(0) {
                let name = get_str(&mut v)?;
                protocols.push((name, get_bytes(&mut v)?));
            }
            Some(consumer::ClassicMember {
                session_timeout_ms,
                protocols,
            })
        };
        members.push(consumer::MemberSnapshot {
            id,
            instance_id,
            rack_id,
            client_id,
            client_host,
            epoch,
            subscribed,
            regex,
            assignor,
            rebalance_timeout_ms,
            assigned,
            revoking,
            target,
            classic,
        });
    }
    Ok(ConsumerGroupSnapshot {
        epoch,
        assignment_epoch,
        assignor,
        partitions_seen,
        members,
    })
}

/// Decodes one record. Unknown key versions are an error the loader logs and skips.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Entry> {
    let mut k = key;
    let version = get_i16(&mut k)?;
    match version {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            let partition = get_i32(&mut k)?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(Entry::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = get_str(&mut k)?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(Entry::Group { group, value })
        }
        CONSUMER_GROUP_KEY => {
            let group = get_str(&mut k)?;
            let value = value.map(decode_consumer_group_value).transpose()?;
            Ok(Entry::ConsumerGroup { group, value })
        }
        _ => Err(DecodeError("unknown key version")),
    }
}

fn decode_offset_value(mut v: &[u8]) -> Result<OffsetValue> {
    let version = get_i16(&mut v)?;
    let offset = get_i64(&mut v)?;
    let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
    let metadata = get_str(&mut v)?;
    let commit_timestamp = get_i64(&mut v)?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(mut v: &[u8]) -> Result<GroupSnapshot> {
    let version = get_i16(&mut v)?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError("unknown group metadata version"));
    }
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_nullable_str(&mut v)?;
    let leader = get_nullable_str(&mut v)?;
    let state_timestamp = if version >= 2 { get_i64(&mut v)? } else { -1 };
    let n = get_i32(&mut v)?;
    let mut members = Vec::new();
    for _ in 0..n.max(0) {
        let member_id = get_str(&mut v)?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut v)? } else { -1 };
        let session_timeout_ms = get_i32(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(MemberSnapshot {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupSnapshot {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(buf: &[u8], n: usize) -> Result<()> {
    if buf.remaining() < n {
        Err(DecodeError("truncated"))
    } else {
        Ok(())
    }
}

fn get_i16(buf: &mut &[u8]) -> Result<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable_str(buf: &mut &[u8]) -> Result<Option<String>> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let s =
        String::from_utf8(buf[..len as usize].to_vec()).map_err(|_| DecodeError("not UTF-8"))?;
    buf.advance(len as usize);
    Ok(Some(s))
}

fn get_str(buf: &mut &[u8]) -> Result<String> {
    get_nullable_str(buf)?.ok_or(DecodeError("null string"))
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    let out = Bytes::copy_from_slice(&buf[..len as usize]);
    buf.advance(len as usize);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_tombstones_decode() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let key = offset_key("g", "orders", 7);
        let e = decode(&key, Some(&offset_value(&v))).unwrap();
        assert_eq!(
            e,
            Entry::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7,
                value: Some(v)
            }
        );
        assert!(matches!(
            decode(&key, None).unwrap(),
            Entry::Offset { value: None, .. }
        ));
    }

    #[test]
    fn group_metadata_round_trips() {
        let g = GroupSnapshot {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_timestamp: 9,
            members: vec![MemberSnapshot {
                member_id: "a".into(),
                instance_id: Some("pod-a".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let e = decode(&group_key("g"), Some(&group_value(&g))).unwrap();
        assert_eq!(
            e,
            Entry::Group {
                group: "g".into(),
                value: Some(g)
            }
        );
    }

    #[test]
    fn consumer_group_snapshots_round_trip() {
        let a: Assignment = [("t".to_string(), [0, 2].into_iter().collect())]
            .into_iter()
            .collect();
        let mut g = ConsumerGroupSnapshot {
            epoch: 7,
            assignment_epoch: 7,
            assignor: "uniform".into(),
            partitions_seen: [("t".to_string(), 3)].into_iter().collect(),
            members: vec![consumer::MemberSnapshot {
                id: "m".into(),
                instance_id: None,
                rack_id: Some("r1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                epoch: 7,
                subscribed: ["t".to_string()].into_iter().collect(),
                regex: Some("^t-.*".into()),
                assignor: Some("uniform".into()),
                rebalance_timeout_ms: 300_000,
                assigned: a.clone(),
                revoking: Assignment::new(),
                target: a.clone(),
                classic: None,
            }],
        };
        // A member using the classic protocol keeps what it joined with.
        let mut classic = g.members[0].clone();
        classic.id = "k".into();
        classic.classic = Some(consumer::ClassicMember {
            session_timeout_ms: 10_000,
            protocols: vec![
                ("range".into(), Bytes::from_static(&[0, 0, 0, 0])),
                ("cooperative-sticky".into(), Bytes::new()),
            ],
        });
        g.members.push(classic);
        let key = consumer_group_key("g");
        let value = consumer_group_value(&g);
        assert_eq!(
            decode(&key, Some(&value)).unwrap(),
            Entry::ConsumerGroup {
                group: "g".into(),
                value: Some(g)
            }
        );
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let v = group_value(&GroupSnapshot {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            state_timestamp: 0,
            members: vec![],
        });
        for cut in 0..v.len() {
            assert!(
                decode(&group_key("g"), Some(&v[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode(&[0, 9], None).is_err());
        assert!(decode(&[], None).is_err());
    }
}
