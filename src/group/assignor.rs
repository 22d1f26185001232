//! Server-side partition assignors for KIP-848 consumer groups: `uniform`
//! (balanced and sticky: members keep what they own when the balance allows)
//! and `range` (per topic, contiguous ranges in member-id order).

use std::collections::{BTreeMap, BTreeSet};

/// Partitions per topic, as the assignment works on them.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// What an assignor sees of one member.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    pub id: &'a str,
    pub subscribed: &'a BTreeSet<String>,
    /// What the member is assigned now (stickiness).
    pub current: &'a Assignment,
}

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

pub fn is_known(name: &str) -> bool {
    name == UNIFORM || name == RANGE
}

/// Target assignment of every member, by member id. `partitions` gives each
/// topic's partition count; unknown topics are skipped.
pub fn assign(
    name: &str,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    if name == RANGE {
        range(members, partitions)
    } else {
        uniform(members, partitions)
    }
}

fn range(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.id.to_owned(), Assignment::new()))
        .collect();
    for (topic, &n) in partitions {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| m.id)
            .collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        subs.sort_unstable();
        let (per, extra) = (n as usize / subs.len(), n as usize % subs.len());
        let mut next = 0i32;
        for (i, id) in subs.iter().enumerate() {
            let count = per + usize::from(i < extra);
            let parts: BTreeSet<i32> = (next..next + count as i32).collect();
            next += count as i32;
            if !parts.is_empty() {
                out.get_mut(*id)
                    .expect("every member has an entry")
                    .insert(topic.clone(), parts);
            }
        }
    }
    out
}

fn uniform(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut ids: Vec<&str> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let spec = |id: &str| members.iter().find(|m| m.id == id).expect("listed");
    // Every partition some member can take, in a fixed order.
    let all: Vec<(String, i32)> = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.subscribed.contains(*t)))
        .flat_map(|(t, &n)| (0..n.max(0)).map(move |p| (t.clone(), p)))
        .collect();
    // Each member's fair share: partitions are dealt one at a time to the
    // least-loaded eligible member, which gives every member its quota.
    let mut quota: BTreeMap<&str, usize> = ids.iter().map(|&id| (id, 0)).collect();
    for (t, _) in &all {
        if let Some(&id) = ids
            .iter()
            .filter(|&&id| spec(id).subscribed.contains(t))
            .min_by_key(|&&id| (quota[id], id))
        {
            *quota.get_mut(id).expect("listed") += 1;
        }
    }
    let mut out: BTreeMap<String, Assignment> = ids
        .iter()
        .map(|&id| (id.to_owned(), Assignment::new()))
        .collect();
    let mut load: BTreeMap<&str, usize> = ids.iter().map(|&id| (id, 0)).collect();
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    // Stickiness: keep owned partitions up to the quota.
    for &id in &ids {
        let m = spec(id);
        for (t, parts) in m.current {
            if !m.subscribed.contains(t) {
                continue;
            }
            let n = partitions.get(t).copied().unwrap_or(0);
            for &p in parts {
                if p < n && load[id] < quota[id] && taken.insert((t.clone(), p)) {
                    out.get_mut(id)
                        .expect("listed")
                        .entry(t.clone())
                        .or_default()
                        .insert(p);
                    *load.get_mut(id).expect("listed") += 1;
                }
            }
        }
    }
    // The rest go to eligible members below their quota, least loaded first.
    for (t, p) in all {
        if taken.contains(&(t.clone(), p)) {
            continue;
        }
        let eligible = ids.iter().filter(|&&id| spec(id).subscribed.contains(&t));
        let pick = eligible
            .clone()
            .filter(|&&id| load[id] < quota[id])
            .min_by_key(|&&id| (load[id], id))
            .or_else(|| eligible.min_by_key(|&&id| (load[id], id)));
        if let Some(&id) = pick {
            out.get_mut(id)
                .expect("listed")
                .entry(t.clone())
                .or_default()
                .insert(p);
            *load.get_mut(id).expect("listed") += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(topics: &[&str]) -> BTreeSet<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_balances_and_covers_every_partition() {
        let subs = set(&["a", "b"]);
        let empty = Assignment::new();
        let members: Vec<MemberSpec<'_>> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| MemberSpec {
                id,
                subscribed: &subs,
                current: &empty,
            })
            .collect();
        let parts = BTreeMap::from([("a".to_string(), 6), ("b".to_string(), 1)]);
        let out = assign(UNIFORM, &members, &parts);
        let counts: Vec<usize> = out.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
            "{counts:?}"
        );
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let subs = set(&["t"]);
        let empty = Assignment::new();
        let parts = BTreeMap::from([("t".to_string(), 4)]);
        let alone = assign(
            UNIFORM,
            &[MemberSpec {
                id: "m1",
                subscribed: &subs,
                current: &empty,
            }],
            &parts,
        );
        assert_eq!(count(&alone["m1"]), 4);
        let out = assign(
            UNIFORM,
            &[
                MemberSpec {
                    id: "m1",
                    subscribed: &subs,
                    current: &alone["m1"],
                },
                MemberSpec {
                    id: "m2",
                    subscribed: &subs,
                    current: &empty,
                },
            ],
            &parts,
        );
        assert_eq!((count(&out["m1"]), count(&out["m2"])), (2, 2));
        assert!(
            out["m1"]["t"].is_subset(&alone["m1"]["t"]),
            "m1 keeps what it had"
        );
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let (ta, tb) = (set(&["a"]), set(&["a", "b"]));
        let empty = Assignment::new();
        let members = [
            MemberSpec {
                id: "m1",
                subscribed: &ta,
                current: &empty,
            },
            MemberSpec {
                id: "m2",
                subscribed: &tb,
                current: &empty,
            },
        ];
        let parts = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
        for name in [UNIFORM, RANGE] {
            let out = assign(name, &members, &parts);
            assert!(!out["m1"].contains_key("b"), "{name}");
            assert_eq!(out["m2"]["b"].len(), 2, "{name}");
            assert_eq!(count(&out["m1"]) + count(&out["m2"]), 4, "{name}");
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let subs = set(&["t"]);
        let empty = Assignment::new();
        let members = [
            MemberSpec {
                id: "b",
                subscribed: &subs,
                current: &empty,
            },
            MemberSpec {
                id: "a",
                subscribed: &subs,
                current: &empty,
            },
        ];
        let out = assign(RANGE, &members, &BTreeMap::from([("t".to_string(), 5)]));
        assert_eq!(out["a"]["t"], (0..3).collect());
        assert_eq!(out["b"]["t"], (3..5).collect());
    }
}
