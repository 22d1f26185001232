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
    commit_as(admin, coordinator, group, ("", -1), offsets).await
}

/// Commits `offsets` for `group` as `member` (member id, and its member
/// epoch or generation; ("", -1) from outside the group).
pub async fn commit_as(
    admin: &mut Admin,
    coordinator: Node,
    group: &str,
    member: (&str, i32),
    offsets: &BTreeMap<Tp, i64>,
) -> Result<(), CliError> {
    let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        topics.entry(t).or_default().push((*p, *o));
    }
    let (r, _): (OffsetCommitResponse, _) = admin
        // v9: what Kafka asks of KIP-848 members.
        .call(coordinator, ApiKey::OffsetCommit, 2..=9, |_| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_generation_id_or_member_epoch(member.1)
                .with_member_id(str_bytes(member.0))
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

/// Milliseconds since the epoch of an ISO-8601 date and time as Kafka's
/// kafka-consumer-groups takes it: `YYYY-MM-DDTHH:MM:SS`, optionally
/// `.SSS` (1 to 9 digits, cut to milliseconds) and a zone `Z`, `+HH:MM`,
/// `+HHMM` or `+HH` (or `-`); without a zone, UTC.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "{s}: expected an ISO-8601 date and time such as 2026-12-01T10:00:00, 2026-12-01T10:00:00.250Z or 2026-12-01T10:00:00+01:00"
        )
    };
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let d = b.get(r).ok_or_else(bad)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let sep = |i: usize, c: u8| {
        b.get(i)
            .is_some_and(|x| *x == c || (c == b'T' && *x == b't'))
    };
    if b.len() < 19
        || !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':'))
    {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > days_in[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return Err(bad());
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return Err(bad());
        }
        let frac = num(i + 1..i + 1 + digits.min(3))?;
        ms = frac * 10i64.pow(3 - digits.min(3) as u32);
        i += 1 + digits;
    }
    let offset_min = match &b[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hh, mm) = match rest.len() {
                2 => (num(i + 1..i + 3)?, 0),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                5 if rest[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                _ => return Err(bad()),
            };
            if hh > 18 || mm > 59 {
                return Err(bad());
            }
            let m = hh * 60 + mm;
            if *sign == b'-' { -m } else { m }
        }
        _ => return Err(bad()),
    };
    // Days from 1970-01-01 to y-mo-d (proleptic Gregorian calendar).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes_in_utc_and_with_zones() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Ok(0));
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.123"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.123456789Z"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T21:43:20-0030"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-15T00:13:20+02"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(parse_datetime("2026-12-01T10:00:00"), Ok(1_796_119_200_000));
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Ok(-1000));
    }

    #[test]
    fn malformed_datetimes_are_refused() {
        for s in [
            "",
            "2026-12-01",
            "2026-12-01 10:00:00",
            "2026-13-01T10:00:00",
            "2023-02-29T10:00:00",
            "2026-12-01T24:00:00",
            "2026-12-01T10:00:00.",
            "2026-12-01T10:00:00+1",
            "2026-12-01T10:00:00 UTC",
            "1700000000000",
        ] {
            assert!(parse_datetime(s).is_err(), "{s}");
        }
    }
}
