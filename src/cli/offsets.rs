//! Offsets: a partition's earliest, latest or by-timestamp offset
//! (ListOffsets, at each partition's leader), a group's committed offsets
//! (OffsetFetch) and commits of new ones (OffsetCommit, at the coordinator).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;

use super::Admin;
use super::admin::{Node, str_bytes, topic_name};
use super::output::{CliError, check, kafka_error};

/// A topic partition.
pub type Tp = (String, i32);

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// The offset of every partition in `tps` at `spec` ([`LATEST`],
/// [`EARLIEST`] or a timestamp in ms: the first offset at or after it, -1
/// when there is none).
pub async fn list_offsets(
    admin: &mut Admin,
    tps: &[Tp],
    spec: i64,
) -> Result<BTreeMap<Tp, i64>, CliError> {
    // Partitions by leader.
    let mut by_leader: BTreeMap<i32, Vec<Tp>> = BTreeMap::new();
    let mut leaders: HashMap<String, HashMap<i32, i32>> = HashMap::new();
    for (t, p) in tps {
        if !leaders.contains_key(t) {
            let l = admin.leaders(t).await?;
            leaders.insert(t.clone(), l.into_iter().collect());
        }
        let leader = *leaders[t]
            .get(p)
            .ok_or_else(|| kafka_error(&format!("no partition {t}-{p}"), 3, None))?;
        if leader < 0 {
            return Err(kafka_error(
                &format!("partition {t}-{p} has no leader"),
                5,
                None,
            ));
        }
        by_leader.entry(leader).or_default().push((t.clone(), *p));
    }
    let mut out = BTreeMap::new();
    for (leader, tps) in by_leader {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &tps {
            topics.entry(t).or_default().push(*p);
        }
        let (r, _): (ListOffsetsResponse, _) = admin
            .call(Node::Id(leader), ApiKey::ListOffsets, 1..=7, |_| {
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(
                        topics
                            .iter()
                            .map(|(t, ps)| {
                                ListOffsetsTopic::default()
                                    .with_name(topic_name(t))
                                    .with_partitions(
                                        ps.iter()
                                            .map(|p| {
                                                ListOffsetsPartition::default()
                                                    .with_partition_index(*p)
                                                    .with_current_leader_epoch(-1)
                                                    .with_timestamp(spec)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .await?;
        for t in r.topics {
            for p in t.partitions {
                let name = t.name.to_string();
                check(
                    || format!("cannot list offsets of {name}-{}", p.partition_index),
                    p.error_code,
                    None,
                )?;
                out.insert((name, p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// Every committed offset of `group` (topics None), or of `topics`' partitions.
pub async fn committed(
    admin: &mut Admin,
    coordinator: Node,
    group: &str,
) -> Result<BTreeMap<Tp, i64>, CliError> {
    let (r, _): (OffsetFetchResponse, _) = admin
        .call(coordinator, ApiKey::OffsetFetch, 2..=7, |_| {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(None)
        })
        .await?;
    check(
        || format!("cannot fetch the committed offsets of group {group}"),
        r.error_code,
        None,
    )?;
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            check(
                || {
                    format!(
                        "cannot fetch the committed offset of {}-{}",
                        t.name.as_str(),
                        p.partition_index
                    )
                },
                p.error_code,
                None,
            )?;
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Commits `offsets` for `group` as a client outside the group
/// (generation -1, no member id): the coordinator takes that only while
/// the group has no members.
pub async fn commit(
    admin: &mut Admin,
    coordinator: Node,
    group: &str,
    offsets: &BTreeMap<Tp, i64>,
) -> Result<(), CliError> {
    let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        topics.entry(t).or_default().push((*p, *o));
    }
    let (r, _): (OffsetCommitResponse, _) = admin
        .call(coordinator, ApiKey::OffsetCommit, 2..=8, |_| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(str_bytes(""))
                .with_retention_time_ms(-1)
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(topic_name(t))
                                .with_partitions(
                                    ps.iter()
                                        .map(|(p, o)| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(*p)
                                                .with_committed_offset(*o)
                                                .with_committed_leader_epoch(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .await?;
    for t in &r.topics {
        for p in &t.partitions {
            check(
                || {
                    format!(
                        "cannot commit the offset of {}-{} for group {group}",
                        t.name.as_str(),
                        p.partition_index
                    )
                },
                p.error_code,
                None,
            )?;
        }
    }
    Ok(())
}
