//! Membership changes of a partition group (a reassignment): new replicas
//! join as learners, catch up, become voters through a joint configuration
//! while the leaving ones go; cancelling takes the learners out again. The
//! group keeps committing throughout and loses nothing committed.

use super::replica::Membership;
use super::sim::SimCluster;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};

fn payload(i: usize) -> Vec<u8> {
    let value = format!("v-{i}");
    batch::build(
        &[RecordSpec {
            key: Some(b"k"),
            value: Some(value.as_bytes()),
            timestamp: i as i64,
        }],
        BuildOptions::default(),
    )
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("v-{i}")).collect()
}

fn set_target(sim: &mut SimCluster, target: &[u64]) {
    for r in sim.replicas.values_mut() {
        r.set_target_voters(Some(target.to_vec()));
    }
}

fn membership(sim: &SimCluster, id: u64) -> Membership {
    sim.replicas[&id].membership()
}

/// Proposes one record a tick on whoever leads (`next` numbers them, across
/// calls), until `done` holds on the simulation (at most `max_ticks`);
/// returns whether it did and how many records were acknowledged
/// (committed in the term that proposed them).
fn write_until(
    sim: &mut SimCluster,
    next: &mut usize,
    max_ticks: usize,
    mut done: impl FnMut(&SimCluster) -> bool,
) -> (bool, usize) {
    let mut pending = Vec::new();
    let mut acked = 0usize;
    for _ in 0..max_ticks {
        if let Some(l) = sim.leader()
            && let Ok(p) = sim.replicas.get_mut(&l).unwrap().propose(payload(*next))
        {
            pending.push(p);
            *next += 1;
        }
        sim.run_until(1, |_| false).unwrap();
        pending.retain(|p| {
            let committed = sim
                .replicas
                .values()
                .any(|r| r.commit_index() >= p.index && r.term_of(p.index) == Some(p.term));
            if committed {
                acked += 1;
            }
            !committed
        });
        if done(sim) {
            return (true, acked);
        }
    }
    (false, acked)
}

fn reached(sim: &SimCluster, on: &[u64], voters: &[u64]) -> bool {
    on.iter().all(|id| {
        sim.replicas.get(id).is_some_and(|r| {
            r.membership()
                == Membership {
                    voters: voters.to_vec(),
                    ..Membership::default()
                }
        })
    })
}

#[test]
fn a_group_moves_to_new_replicas_while_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let mut next = 0;
    sim.elect(200).unwrap();
    let (_, before) = write_until(&mut sim, &mut next, 20, |_| false);
    sim.add_node(4).unwrap();
    set_target(&mut sim, &[2, 3, 4]);
    let (done, during) = write_until(&mut sim, &mut next, 400, |s| {
        reached(s, &[2, 3, 4], &[2, 3, 4])
    });
    assert!(done, "moved: {:?}", membership(&sim, 2));
    assert!(during > 0, "the group kept committing while it moved");
    // Written after the move too, on the new voters alone.
    sim.crash(1);
    let (_, after) = write_until(&mut sim, &mut next, 60, |_| false);
    assert!(after > 0);
    assert!(
        sim.run_until(100, |s| {
            let v = s.committed_values(2);
            [3, 4].iter().all(|&id| s.committed_values(id) == v)
        })
        .unwrap()
    );
    let got = sim.committed_values(4);
    assert!(
        got.len() >= before + during + after,
        "{} committed on the new replica, {} acknowledged",
        got.len(),
        before + during + after
    );
    assert_eq!(
        got,
        expected(got.len()),
        "in order, nothing lost or doubled"
    );
    // Membership changes take no offset: the records are numbered densely.
    let offsets: Vec<i64> = sim.committed_data(4).iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    // The configuration survives restarts.
    for id in [2, 3, 4] {
        sim.crash(id);
        sim.restart(id).unwrap();
    }
    assert!(reached(&sim, &[2, 3, 4], &[2, 3, 4]));
    sim.elect(200).unwrap();
}

#[test]
fn a_leader_that_leaves_hands_over_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let mut next = 0;
    let leader = sim.elect(200).unwrap();
    // Every replica replaced but one; the leader is among those leaving.
    let stay = *[1, 2, 3].iter().find(|&&id| id != leader).unwrap();
    let mut target = vec![stay, 4, 5];
    target.sort_unstable();
    sim.add_node(4).unwrap();
    sim.add_node(5).unwrap();
    set_target(&mut sim, &target);
    let (done, acked) = write_until(&mut sim, &mut next, 600, |s| reached(s, &target, &target));
    assert!(done, "{:?}", membership(&sim, stay));
    assert!(acked > 0);
    let now = sim.leader().unwrap();
    assert!(target.contains(&now), "{now} leads, not one of {target:?}");
    let got = sim.committed_values(5);
    assert_eq!(got, expected(got.len()));
}

#[test]
fn all_replicas_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let mut next = 0;
    sim.elect(200).unwrap();
    write_until(&mut sim, &mut next, 10, |_| false);
    for id in 4..=6 {
        sim.add_node(id).unwrap();
    }
    set_target(&mut sim, &[4, 5, 6]);
    let (done, _) = write_until(&mut sim, &mut next, 800, |s| {
        reached(s, &[4, 5, 6], &[4, 5, 6])
    });
    assert!(done, "{:?}", membership(&sim, 4));
    for id in 1..=3 {
        sim.crash(id);
    }
    let (_, after) = write_until(&mut sim, &mut next, 100, |_| false);
    assert!(after > 0, "the new replicas commit alone");
    let got = sim.committed_values(6);
    assert_eq!(got, expected(got.len()));
}

#[test]
fn a_move_is_cancelled_before_it_switches() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let mut next = 0;
    sim.elect(200).unwrap();
    write_until(&mut sim, &mut next, 10, |_| false);
    sim.add_node(4).unwrap();
    // The new replica is cut off: it becomes a learner and never catches up.
    sim.isolate(4);
    set_target(&mut sim, &[2, 3, 4]);
    let learner = |s: &SimCluster| {
        [1, 2, 3]
            .iter()
            .all(|&id| s.replicas[&id].membership().learners == [4])
    };
    let (added, _) = write_until(&mut sim, &mut next, 200, learner);
    assert!(added, "{:?}", membership(&sim, 1));
    write_until(&mut sim, &mut next, 50, |_| false);
    assert!(learner(&sim), "no switch without the learner caught up");
    // Cancelled: back to the old voters, the learner taken out.
    set_target(&mut sim, &[1, 2, 3]);
    let (done, acked) = write_until(&mut sim, &mut next, 200, |s| {
        reached(s, &[1, 2, 3], &[1, 2, 3])
    });
    assert!(done, "{:?}", membership(&sim, 1));
    assert!(acked > 0);
    sim.heal();
}
