//! The log cleaner on replicated logs, without sockets: every replica cleans
//! its own log on its own schedule, interleaved with leader changes,
//! truncations, snapshot installs and crashes. Whatever each replica's
//! cleaner did, once the replicas hold the same committed log they must
//! show the same logical content, and that content must be the committed
//! log's: for every key the latest record, at its offset (a tombstone may be
//! gone once it is older than delete.retention.ms, and then the key is
//! absent), and nothing else.

use std::collections::{BTreeMap, HashMap};

use sluice_storage::BatchHeader;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};

use super::sim::SimCluster;
use crate::cleaner::CompactionPolicy;
use crate::cleaner::records::records;

const DELETE_RETENTION_MS: i64 = 1_000;

fn policy() -> CompactionPolicy {
    CompactionPolicy {
        min_cleanable_dirty_ratio: 0.01,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: DELETE_RETENTION_MS,
        segment_bytes: 4096,
    }
}

/// A record as the tests see it: key, value (None: a tombstone).
type Rec = (String, Option<String>);

/// A key's latest record: offset, value, timestamp.
type Latest = BTreeMap<String, (i64, Option<String>, i64)>;

fn batch_of(recs: &[Rec], timestamp: i64) -> Vec<u8> {
    let specs: Vec<RecordSpec<'_>> = recs
        .iter()
        .map(|(k, v)| RecordSpec {
            key: Some(k.as_bytes()),
            value: v.as_deref().map(str::as_bytes),
            timestamp,
        })
        .collect();
    batch::build(&specs, BuildOptions::default())
}

/// Every batch proposed, by the (index, term) of its entry: a log entry is
/// the proposal with its index and term, whatever a cleaner later removed
/// from it.
#[derive(Default)]
struct Proposed(HashMap<(u64, u64), (Vec<Rec>, i64)>);

impl Proposed {
    /// Proposes `recs` at time `now` on the leader, if there is one.
    fn propose(&mut self, sim: &mut SimCluster, recs: Vec<Rec>, now: i64) -> bool {
        let Some(leader) = sim.leader() else {
            return false;
        };
        let b = batch_of(&recs, now);
        match sim.replicas.get_mut(&leader).unwrap().propose(b) {
            Ok(p) => {
                self.0.insert((p.index, p.term), (recs, now));
                true
            }
            Err(_) => false,
        }
    }

    /// The latest record of every key in `id`'s committed log at or above
    /// offset `from`, as it was written (from the proposals, not the log).
    fn truth(&self, sim: &SimCluster, id: u64, from: i64) -> Latest {
        let hw = sim.replicas[&id].high_watermark();
        let first = sim.replicas[&id]
            .store()
            .with_log(|l| l.first_entry_index());
        let mut out = Latest::new();
        for (i, (offset, epoch, b)) in sim.log_of(id).into_iter().enumerate() {
            if offset >= hw || BatchHeader::parse(&b).unwrap().is_control() {
                continue;
            }
            let index = first + i as u64;
            let (recs, ts) = self.0.get(&(index, epoch as u64)).unwrap_or_else(|| {
                panic!("replica {id}: entry {index} of term {epoch} was never proposed")
            });
            for (j, (k, v)) in recs.iter().enumerate() {
                let o = offset + j as i64;
                if o >= from {
                    out.insert(k.clone(), (o, v.clone(), *ts));
                }
            }
        }
        out
    }
}

/// The latest record of every key that `id`'s log holds below its high
/// watermark, at or above offset `from` (what a reader of the whole log sees).
fn view(sim: &SimCluster, id: u64, from: i64) -> BTreeMap<String, (i64, Option<String>)> {
    let mut out = BTreeMap::new();
    for (_, b) in sim.committed_data(id) {
        let h = BatchHeader::parse(&b).unwrap();
        for r in records(&b, &h).unwrap() {
            if r.offset < from {
                continue;
            }
            let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let v = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            out.insert(k, (r.offset, v));
        }
    }
    out
}

/// Checks one replica against the committed log: the latest record of every
/// key at its offset, a tombstone absent only once older than
/// delete.retention.ms, no other key.
fn check_replica(
    sim: &SimCluster,
    proposed: &Proposed,
    id: u64,
    from: i64,
    now: i64,
) -> Result<(), String> {
    let want = proposed.truth(sim, id, from);
    let got = view(sim, id, from);
    for (k, (o, v, ts)) in &want {
        match got.get(k) {
            Some((go, gv)) if (go, gv) == (o, v) => {}
            None if v.is_none() && *ts < now - DELETE_RETENTION_MS => {}
            other => {
                return Err(format!(
                    "replica {id}, key {k}: the committed log's latest is {v:?} at {o}, the replica shows {other:?}"
                ));
            }
        }
    }
    if let Some(k) = got.keys().find(|k| !want.contains_key(*k)) {
        return Err(format!(
            "replica {id} shows key {k} ({:?}), which the committed log does not hold",
            got[k]
        ));
    }
    Ok(())
}

/// Restarts and reconnects every replica and runs until they all hold the
/// same committed log (same last entry, all of it committed).
fn converge(sim: &mut SimCluster) -> Result<(), String> {
    for id in sim.down() {
        sim.restart(id).unwrap();
    }
    for id in 1..=3 {
        // No crash left pending.
        sim.crash_after_writing(id, -1);
    }
    sim.heal();
    let done = sim
        .run_until(600, |s| {
            let Some(l) = s.leader() else { return false };
            let last = s.replicas[&l].store().with_log(|g| g.last_entry_index());
            let hw = s.replicas[&l].high_watermark();
            s.replicas.values().all(|r| {
                r.commit_index() == last
                    && r.applied_index() == last
                    && r.high_watermark() == hw
                    && r.store().with_log(|g| g.last_entry_index()) == last
            })
        })
        .unwrap();
    if done {
        return Ok(());
    }
    let state: Vec<String> = sim.replicas.values().map(|r| r.describe()).collect();
    Err(format!(
        "the replicas do not converge: {}",
        state.join("; ")
    ))
}

/// Every replica against the committed log, above the highest log start
/// (retention may have moved some replicas' starts further than others').
fn check_all(sim: &SimCluster, proposed: &Proposed, now: i64) -> Result<(), String> {
    let from = sim
        .replicas
        .values()
        .map(|r| r.store().with_log(|l| l.log_start_offset()))
        .max()
        .unwrap();
    for &id in sim.replicas.keys() {
        check_replica(sim, proposed, id, from, now)?;
    }
    Ok(())
}

fn rec(k: &str, v: Option<&str>) -> Rec {
    (k.to_string(), v.map(str::to_string))
}

/// Filler: updates of keys nobody checks, to seal segments.
fn filler(tag: &str, n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            rec(
                &format!("fill-{tag}-{i}"),
                Some("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            )
        })
        .collect()
}

/// Runs until every replica knows that every replica holds the log up to
/// `hw` (the leader's word reached them all).
fn all_know_everything_is_everywhere(sim: &mut SimCluster, hw: i64) -> bool {
    sim.run_until(50, |s| {
        s.replicas.values().all(|r| r.fully_replicated() == hw)
    })
    .unwrap()
}

/// Three replicas in `dir` with an elected leader.
fn three_replicas(dir: &std::path::Path) -> (SimCluster, Proposed, u64) {
    let mut sim = SimCluster::new(dir, 3).unwrap();
    let leader = sim.elect(200).unwrap();
    (sim, Proposed::default(), leader)
}

fn ids_except(sim: &SimCluster, leader: u64) -> Vec<u64> {
    sim.replicas
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect()
}

/// The compaction-failover data loss: a follower is down while a key is
/// deleted; the leader's cleaner drops the tombstone once it is older than
/// delete.retention.ms; the follower comes back and receives the cleaned log
/// without the tombstone, and its own older value of the key lives on. When
/// it leads, readers see a deleted key's old value again, and the replicas
/// differ. A leader must keep a tombstone until every replica holds it.
#[test]
fn a_replica_down_while_a_key_was_deleted_ends_up_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, mut proposed, leader) = three_replicas(dir.path());
    let mut now = 1_000_000;
    assert!(proposed.propose(
        &mut sim,
        vec![rec("user-1", Some("v1")), rec("user-2", Some("v1"))],
        now
    ));
    converge(&mut sim).unwrap();

    let behind = ids_except(&sim, leader)[0];
    sim.crash(behind);
    // user-1 is deleted, user-2 updated, then enough traffic to seal segments.
    now += 10;
    assert!(proposed.propose(
        &mut sim,
        vec![rec("user-1", None), rec("user-2", Some("v2"))],
        now
    ));
    for i in 0..40 {
        assert!(proposed.propose(&mut sim, filler(&i.to_string(), 4), now));
    }
    let hw = sim.replicas[&leader].high_watermark();
    assert!(
        sim.run_until(200, |s| {
            let lhw = s.replicas[&leader].high_watermark();
            lhw > hw + 100 && s.replicas.values().all(|r| r.high_watermark() == lhw)
        })
        .unwrap()
    );
    // Well past delete.retention.ms, both live replicas clean.
    now += 10 * DELETE_RETENTION_MS;
    for id in ids_except(&sim, behind) {
        assert!(
            sim.clean(id, &policy(), now).unwrap().is_some(),
            "replica {id} cleans"
        );
    }
    let live = ids_except(&sim, behind);
    let leader_view = view(&sim, live[0], 0);
    assert!(
        leader_view.get("user-1").is_some_and(|(_, v)| v.is_none()),
        "the tombstone stays while a replica lacks it: {:?}",
        leader_view.get("user-1")
    );

    // The replica comes back and catches up; then every replica cleans,
    // and leads in turn.
    sim.restart(behind).unwrap();
    converge(&mut sim).unwrap();
    check_all(&sim, &proposed, now).unwrap();
    for round in 0..2 {
        // More traffic (a pass needs new data), time, and every replica
        // knowing that every replica holds the log.
        for i in 0..20 {
            assert!(proposed.propose(&mut sim, filler(&format!("{round}-{i}"), 4), now));
        }
        converge(&mut sim).unwrap();
        let hw = sim.replicas[&behind].high_watermark();
        assert!(
            sim.run_until(50, |s| s
                .replicas
                .values()
                .all(|r| r.fully_replicated() == hw))
                .unwrap()
        );
        now += 10 * DELETE_RETENTION_MS;
        for id in 1..=3 {
            sim.clean(id, &policy(), now).unwrap();
        }
        check_all(&sim, &proposed, now).unwrap();
    }
    for id in 1..=3 {
        let v = view(&sim, id, 0);
        assert_eq!(
            v.get("user-1"),
            None,
            "replica {id}: the deleted key is gone"
        );
        assert_eq!(v.get("user-2").map(|(_, v)| v.as_deref()), Some(Some("v2")));
    }
    // Once every replica holds it, the old tombstone goes everywhere.
    for id in 1..=3 {
        let tombstones = sim
            .committed_data(id)
            .iter()
            .flat_map(|(_, b)| records(b, &BatchHeader::parse(b).unwrap()).unwrap())
            .filter(|r| r.value.is_none())
            .count();
        assert_eq!(tombstones, 0, "replica {id} dropped the tombstone");
    }
}

/// A small, seeded random number generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// One seeded run: keyed updates and tombstones over a small key space,
/// with cleaner passes on random replicas, leader changes, cut-offs (a
/// deposed leader's suffix is truncated), crashes at any point, retention
/// (followers behind it install snapshots) and time passing. Every so often
/// the replicas converge and each is checked against the committed log.
fn random_run(seed: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let mut rng = Rng(seed);
    let mut proposed = Proposed::default();
    let mut now = 1_000_000i64;
    let mut next_value = 0u64;
    let mut stats = [0u64; 3];
    for step in 0..STEPS {
        let live: Vec<u64> = sim.replicas.keys().copied().collect();
        match rng.below(100) {
            0..=49 => {
                let recs: Vec<Rec> = (0..1 + rng.below(6))
                    .map(|_| {
                        let k = format!("key-{}", rng.below(KEYS));
                        next_value += 1;
                        let v = (rng.below(100) >= 20)
                            .then(|| format!("v{next_value}-{}", "x".repeat(40)));
                        (k, v)
                    })
                    .collect();
                if proposed.propose(&mut sim, recs, now) {
                    stats[0] += 1;
                }
            }
            50..=69 => {
                if let Some(id) = rng.pick(&live)
                    && let Some(st) = sim.clean(id, &policy(), now).map_err(|e| e.to_string())?
                {
                    stats[1] += 1;
                    stats[2] += st.records_removed;
                }
            }
            70..=79 => now += rng.below(3 * DELETE_RETENTION_MS as u64) as i64,
            80..=82 => {
                if let Some(id) = rng.pick(&live) {
                    sim.crash(id);
                }
            }
            83..=84 => {
                // A crash partway through whatever writes next: an append,
                // a truncation, a cleaner's swap.
                if let Some(id) = rng.pick(&live) {
                    sim.crash_after_writing(id, rng.below(6000) as i64);
                }
            }
            85..=88 => {
                if let Some(id) = rng.pick(&sim.down()) {
                    sim.restart(id).unwrap();
                }
            }
            89..=91 => {
                if let Some(id) = rng.pick(&live) {
                    sim.isolate(id);
                }
            }
            92..=94 => sim.heal(),
            _ => {
                // Retention on every live replica, below what all of them
                // have committed.
                let below = live
                    .iter()
                    .map(|id| sim.replicas[id].high_watermark())
                    .min()
                    .unwrap_or(0)
                    .saturating_sub(20);
                for id in &live {
                    sim.replicas[id]
                        .store()
                        .delete_below(below)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        // The network and the clock move on between events.
        for _ in 0..rng.below(3) {
            sim.round().unwrap();
        }
        sim.tick().unwrap();
        if step % CHECK_EVERY == CHECK_EVERY - 1 {
            converge(&mut sim).map_err(|e| format!("step {step}: {e}"))?;
            check_all(&sim, &proposed, now).map_err(|e| format!("step {step}: {e}"))?;
            // Clean everywhere, long after: still the committed log.
            now += 5 * DELETE_RETENTION_MS;
            for id in 1..=3 {
                sim.clean(id, &policy(), now).map_err(|e| e.to_string())?;
            }
            check_all(&sim, &proposed, now).map_err(|e| format!("step {step}, cleaned: {e}"))?;
        }
    }
    if std::env::var("SLUICE_SIM_STATS").is_ok() {
        eprintln!(
            "seed {seed}: proposals {} passes {} removed {}",
            stats[0], stats[1], stats[2]
        );
    }
    Ok(())
}

const KEYS: u64 = 64;
const STEPS: usize = 600;
const CHECK_EVERY: usize = 150;

#[test]
fn cleaning_interleaved_with_failover_never_makes_replicas_differ() {
    let seeds: u64 = std::env::var("SLUICE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let first: u64 = std::env::var("SLUICE_SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let failed: Vec<String> = (first..first + seeds)
        .filter_map(|seed| random_run(seed).err().map(|e| format!("seed {seed}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn entries_sent_to_a_follower_carry_what_every_replica_holds() {
    // What the leader puts in its appends' and heartbeats' context is what
    // the followers learn: everything, then only what a stopped replica
    // holds, then everything again once it is back.
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, mut proposed, leader) = three_replicas(dir.path());
    for i in 0..5 {
        proposed.propose(&mut sim, filler(&i.to_string(), 2), 0);
    }
    converge(&mut sim).unwrap();
    let hw = sim.replicas[&leader].high_watermark();
    assert!(all_know_everything_is_everywhere(&mut sim, hw));
    let down = ids_except(&sim, leader)[0];
    sim.crash(down);
    for i in 5..10 {
        proposed.propose(&mut sim, filler(&i.to_string(), 2), 0);
    }
    assert!(
        sim.run_until(50, |s| s.replicas[&leader].high_watermark() > hw)
            .unwrap()
    );
    sim.run_until(20, |_| false).unwrap();
    for r in sim.replicas.values() {
        assert_eq!(
            r.fully_replicated(),
            hw,
            "replica {}: the stopped one holds up to {hw}",
            r.id
        );
    }
    sim.restart(down).unwrap();
    converge(&mut sim).unwrap();
    let hw = sim.replicas[&leader].high_watermark();
    assert!(all_know_everything_is_everywhere(&mut sim, hw));
}

#[test]
fn a_log_start_command_moves_every_replica_and_a_new_leader_serves_after_it() {
    use super::store::{Command, batch_to_entry, entry_to_batch};
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, mut proposed, leader) = three_replicas(dir.path());
    for i in 0..60 {
        assert!(proposed.propose(&mut sim, filler(&i.to_string(), 4), 0));
    }
    converge(&mut sim).unwrap();
    let hw = sim.replicas[&leader].high_watermark();
    let cut = hw / 2;
    let p = sim
        .replicas
        .get_mut(&leader)
        .unwrap()
        .propose_command(Command::LogStart(cut))
        .unwrap();
    // The command is one of Raft's own entries: a hidden control batch,
    // no offset.
    assert_eq!(p.last_offset, p.base_offset - 1);
    converge(&mut sim).unwrap();
    for r in sim.replicas.values() {
        let (start, first) = r
            .store()
            .with_log(|l| (l.log_start_offset(), l.first_entry_index()));
        assert_eq!(
            start, cut,
            "replica {}: the log start moved on commit",
            r.id
        );
        assert!(
            first > 1,
            "replica {}: whole segments below it are gone",
            r.id
        );
        let b = r.store().with_log(|l| l.entry(p.index)).unwrap();
        assert!(BatchHeader::parse(&b).unwrap().is_control());
        let e = batch_to_entry(p.index, b).unwrap();
        assert_eq!(Command::of(&e), Some(Command::LogStart(cut)));
        assert_eq!(
            entry_to_batch(&e, true).unwrap().len(),
            r.store().with_log(|l| l.entry(p.index)).unwrap().len()
        );
    }
    // A new leader is ready to serve reads only once it has committed in
    // its own term, and by then its log starts at the cut too.
    sim.crash(leader);
    let new = sim.elect(300).unwrap();
    assert!(
        sim.run_until(50, |s| s.replicas[&new].leader_ready())
            .unwrap()
    );
    assert_eq!(
        sim.replicas[&new]
            .store()
            .with_log(|l| l.log_start_offset()),
        cut
    );
    // Carrying it out again (a restart hands it out again) changes nothing.
    sim.restart(leader).unwrap();
    converge(&mut sim).unwrap();
    assert_eq!(
        sim.replicas[&leader]
            .store()
            .with_log(|l| l.log_start_offset()),
        cut
    );
    sim.replicas[&leader]
        .store()
        .apply(Command::LogStart(cut - 10))
        .unwrap();
    assert_eq!(
        sim.replicas[&leader]
            .store()
            .with_log(|l| l.log_start_offset()),
        cut
    );
}
