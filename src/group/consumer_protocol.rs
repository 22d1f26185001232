//! The embedded consumer protocol that classic members carry inside
//! JoinGroup metadata (ConsumerProtocolSubscription) and SyncGroup
//! assignments (ConsumerProtocolAssignment): a version (i16), then the
//! message in Kafka's non-flexible layout. Versions above the highest known
//! are read as the highest, as Kafka's `ConsumerProtocol` does.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::Assignment;

/// The protocol type of groups of consumers.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Highest version of both messages (ConsumerProtocolSubscription v3 added
/// the rack; ConsumerProtocolAssignment v1..v3 only match it).
const HIGHEST: i16 = 3;

/// What a classic member subscribes to, as sent in its JoinGroup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscription {
    pub version: i16,
    pub topics: BTreeSet<String>,
    /// What the member still owns (v1+; empty for eager members, which give
    /// everything up before they rejoin).
    pub owned: Assignment,
    pub rack_id: Option<String>,
}

fn version_of(buf: &mut Bytes) -> Result<i16, String> {
    if buf.len() < 2 {
        return Err("embedded consumer protocol: no version".into());
    }
    let v = buf.get_i16();
    if v < 0 {
        return Err(format!("embedded consumer protocol: version {v}"));
    }
    Ok(v)
}

/// The version a member's subscription was written with (0 if unreadable).
pub fn version(metadata: &[u8]) -> i16 {
    match metadata {
        [a, b, ..] => i16::from_be_bytes([*a, *b]).clamp(0, HIGHEST),
        _ => 0,
    }
}

pub fn decode_subscription(metadata: &Bytes) -> Result<Subscription, String> {
    let mut buf = metadata.clone();
    let version = version_of(&mut buf)?;
    let s = ConsumerProtocolSubscription::decode(&mut buf, version.min(HIGHEST))
        .map_err(|e| format!("malformed ConsumerProtocolSubscription: {e}"))?;
    let mut owned = Assignment::new();
    for tp in s.owned_partitions {
        owned
            .entry(tp.topic.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(Subscription {
        version,
        topics: s.topics.into_iter().map(|t| t.to_string()).collect(),
        owned,
        rack_id: s.rack_id.map(|r| r.to_string()),
    })
}

/// A member's assignment; empty bytes (a member that never synced) is none.
pub fn decode_assignment(bytes: &Bytes) -> Result<Assignment, String> {
    if bytes.is_empty() {
        return Ok(Assignment::new());
    }
    let mut buf = bytes.clone();
    let version = version_of(&mut buf)?;
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.min(HIGHEST))
        .map_err(|e| format!("malformed ConsumerProtocolAssignment: {e}"))?;
    let mut out = Assignment::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    out.retain(|_, ps| !ps.is_empty());
    Ok(out)
}

/// A ConsumerProtocolAssignment at `version` (the member's subscription
/// version, as Kafka answers), without user data.
pub fn encode_assignment(a: &Assignment, version: i16) -> Bytes {
    let version = version.clamp(0, HIGHEST);
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        a.iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| {
                TopicPartition::default()
                    .with_topic(StrBytes::from_string(t.clone()).into())
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    );
    let mut b = BytesMut::new();
    b.put_i16(version);
    msg.encode(&mut b, version)
        .expect("an assignment always encodes");
    b.freeze()
}

/// A ConsumerProtocolSubscription as clients write it (for tests).
#[cfg(test)]
pub fn encode_subscription(version: i16, topics: &[&str], owned: &[(&str, &[i32])]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Owned;
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        )
        .with_owned_partitions(
            owned
                .iter()
                .map(|(t, ps)| {
                    Owned::default()
                        .with_topic(StrBytes::from_string(t.to_string()).into())
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
    let mut b = BytesMut::new();
    b.put_i16(version);
    msg.encode(&mut b, version.min(HIGHEST))
        .expect("a subscription encodes");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(version: i16, topics: &[&str], owned: &[(&str, &[i32])]) -> Bytes {
        encode_subscription(version, topics, owned)
    }

    #[test]
    fn subscriptions_of_every_version_decode() {
        let s = decode_subscription(&subscription(0, &["b", "a"], &[])).unwrap();
        assert_eq!(s.topics, BTreeSet::from(["a".into(), "b".into()]));
        assert!(s.owned.is_empty());
        let s = decode_subscription(&subscription(1, &["a"], &[("a", &[2, 0])])).unwrap();
        assert_eq!(s.owned["a"], BTreeSet::from([0, 2]));
        // A version above the highest known reads as the highest.
        let s = decode_subscription(&subscription(5, &["a"], &[])).unwrap();
        assert_eq!((s.version, s.topics.len()), (5, 1));
        assert!(decode_subscription(&Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_err());
    }

    #[test]
    fn assignments_round_trip() {
        let a = Assignment::from([
            ("t".to_string(), BTreeSet::from([0, 3])),
            ("u".to_string(), BTreeSet::from([1])),
        ]);
        for v in 0..=3 {
            let bytes = encode_assignment(&a, v);
            assert_eq!(version(&bytes), v);
            assert_eq!(decode_assignment(&bytes).unwrap(), a);
        }
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 1])).is_err());
    }
}
