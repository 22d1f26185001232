use super::replica::ReplicaError;
use super::sim::SimCluster;
use super::store::{batch_to_entry, entry_to_batch};
use bytes::Bytes;
use raft::eraftpb::{ConfChange, Entry, EntryType};
use sluice_storage::BatchHeader;
use sluice_storage::batch::{self, BuildOptions, RecordSpec};

fn payload(tag: &str, i: usize) -> Vec<u8> {
    let value = format!("{tag}-{i}");
    batch::build(
        &[RecordSpec {
            key: Some(tag.as_bytes()),
            value: Some(value.as_bytes()),
            timestamp: i as i64,
        }],
        BuildOptions::default(),
    )
}

fn propose_all(sim: &mut SimCluster, on: u64, tag: &str, n: usize) -> Result<(), ReplicaError> {
    for i in 0..n {
        sim.replicas
            .get_mut(&on)
            .unwrap()
            .propose(payload(tag, i))?;
    }
    Ok(())
}

fn names(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Runs until every replica's high watermark is `hw` (at most 100 ticks).
fn all_reach(sim: &mut SimCluster, hw: i64) -> bool {
    sim.run_until(100, |s| {
        s.replicas.values().all(|r| r.high_watermark() == hw)
    })
    .unwrap()
}

/// Some replica other than `leader`.
fn a_follower(sim: &SimCluster, leader: u64) -> u64 {
    *sim.replicas.keys().find(|&&id| id != leader).unwrap()
}

fn all_agree(sim: &SimCluster) -> bool {
    let logs: Vec<_> = sim.replicas.keys().map(|&id| sim.log_of(id)).collect();
    let hws: Vec<_> = sim.replicas.values().map(|r| r.high_watermark()).collect();
    logs.windows(2).all(|w| w[0] == w[1]) && hws.windows(2).all(|w| w[0] == w[1])
}

#[test]
fn entries_round_trip_through_batches() {
    let normal = Entry {
        data: Bytes::from(payload("t", 1)),
        ..Entry::default()
    };
    let mut empty = Entry::default();
    empty.set_entry_type(EntryType::EntryNormal);
    let mut conf = Entry::default();
    conf.set_entry_type(EntryType::EntryConfChange);
    let cc = ConfChange {
        node_id: 4,
        ..ConfChange::default()
    };
    conf.data = protobuf::Message::write_to_bytes(&cc).unwrap().into();
    conf.context = Bytes::from_static(b"ctx");
    for (i, mut e) in [normal, empty, conf].into_iter().enumerate() {
        for dense in [true, false] {
            e.index = 10 + i as u64;
            e.term = 7;
            let mut b = entry_to_batch(&e, dense).unwrap();
            // Storage gives the batch its term as partition leader epoch.
            b[12..16].copy_from_slice(&7i32.to_be_bytes());
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(
                h.is_control(),
                i > 0,
                "Raft's own entries are control batches"
            );
            // With dense offsets they take none; before, one.
            assert_eq!(h.is_hidden(), dense && i > 0);
            assert_eq!(
                h.next_offset() - h.base_offset,
                if i == 0 { 1 } else { i64::from(!dense) }
            );
            let back = batch_to_entry(e.index, Bytes::from(b.clone())).unwrap();
            assert_eq!(back.get_entry_type(), e.get_entry_type());
            assert_eq!((back.index, back.term), (e.index, 7));
            assert_eq!(back.context, e.context);
            if i == 0 {
                assert_eq!(back.data[..], b[..], "a data entry is its batch");
            } else {
                assert_eq!(back.data, e.data);
            }
        }
    }
    // A normal entry that is not a valid batch is refused, not stored.
    let junk = Entry {
        data: Bytes::from_static(b"not a batch"),
        ..Entry::default()
    };
    assert!(entry_to_batch(&junk, true).is_err());
}

#[test]
fn a_leader_is_elected_and_its_batches_commit_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    let term = sim.replicas[&leader].term();
    propose_all(&mut sim, leader, "a", 20).unwrap();
    // The leader's empty entry (a hidden control batch) takes no offset.
    let done = sim
        .run_until(100, |s| {
            s.replicas.values().all(|r| r.high_watermark() == 20) && all_agree(s)
        })
        .unwrap();
    assert!(done, "every replica commits all 20 batches");
    for &id in sim.replicas.keys() {
        assert_eq!(sim.committed_values(id), names("a", 20));
        assert!(
            sim.log_of(id)
                .iter()
                .all(|(_, epoch, _)| *epoch as u64 == term),
            "every batch carries the leader's term as its leader epoch"
        );
    }
    // A follower refuses a proposal and names the leader.
    let follower = a_follower(&sim, leader);
    match sim
        .replicas
        .get_mut(&follower)
        .unwrap()
        .propose(payload("x", 0))
    {
        Err(ReplicaError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn nothing_commits_without_a_majority() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    propose_all(&mut sim, leader, "ok", 3).unwrap();
    assert!(
        sim.run_until(100, |s| s.replicas[&leader].high_watermark() == 3)
            .unwrap()
    );
    let others: Vec<u64> = sim
        .replicas
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    for &id in &others {
        sim.crash(id);
    }
    propose_all(&mut sim, leader, "alone", 3).unwrap();
    sim.run_until(50, |_| false).unwrap();
    assert_eq!(
        sim.replicas[&leader].high_watermark(),
        3,
        "one of three commits nothing"
    );
    assert!(
        !sim.replicas[&leader].is_leader(),
        "a leader without a quorum steps down"
    );
    for &id in &others {
        sim.restart(id).unwrap();
    }
    sim.elect(300).unwrap();
    assert!(
        sim.run_until(300, all_agree).unwrap(),
        "the replicas converge"
    );
    let values = sim.committed_values(others[0]);
    assert_eq!(values[..3], names("ok", 3)[..], "what was committed stays");
}

#[test]
fn a_deposed_leaders_uncommitted_suffix_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let old = sim.elect(200).unwrap();
    propose_all(&mut sim, old, "first", 5).unwrap();
    assert!(all_reach(&mut sim, 5));

    // Cut off, the old leader still takes proposals; nobody else sees them.
    sim.isolate(old);
    propose_all(&mut sim, old, "lost", 3).unwrap();
    let hw_before = sim.replicas[&old].high_watermark();
    let new = {
        sim.run_until(300, |s| s.leader().is_some_and(|l| l != old))
            .unwrap();
        sim.leader().expect("the majority side elects a leader")
    };
    assert!(sim.replicas[&new].term() > sim.replicas[&old].term());
    propose_all(&mut sim, new, "second", 4).unwrap();
    assert!(
        sim.run_until(100, |s| s.replicas[&new].high_watermark() > 6)
            .unwrap()
    );
    assert_eq!(
        sim.replicas[&old].high_watermark(),
        hw_before,
        "the cut-off side commits nothing"
    );
    assert_eq!(
        sim.log_of(old).len(),
        1 + 5 + 3,
        "the old leader holds its uncommitted suffix"
    );

    sim.heal();
    assert!(
        sim.run_until(300, all_agree).unwrap(),
        "the logs converge after healing"
    );
    let mut want = names("first", 5);
    want.extend(names("second", 4));
    for &id in sim.replicas.keys() {
        assert_eq!(sim.committed_values(id), want, "replica {id}");
    }
    let old_log = sim.log_of(old);
    let lost_left = old_log
        .iter()
        .any(|(_, _, b)| b.windows(5).any(|w| w == b"lost-"));
    assert!(
        !lost_left,
        "the conflicting entries were cut from the old leader's log"
    );
}

#[test]
fn crashed_replicas_recover_from_their_logs_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    propose_all(&mut sim, leader, "one", 10).unwrap();
    assert!(all_reach(&mut sim, 10));

    // A follower misses writes while it is down, then catches up.
    let follower = a_follower(&sim, leader);
    sim.crash(follower);
    propose_all(&mut sim, leader, "two", 10).unwrap();
    assert!(
        sim.run_until(100, |s| s.replicas[&leader].high_watermark() == 20)
            .unwrap()
    );
    sim.restart(follower).unwrap();
    assert!(
        sim.run_until(200, |s| all_agree(s)
            && s.replicas[&follower].high_watermark() == 20)
            .unwrap()
    );

    // Everyone down at once (kill -9), then up: every acknowledged batch is
    // still there, once, in order.
    for id in 1..=3 {
        sim.crash(id);
    }
    for id in 1..=3 {
        sim.restart(id).unwrap();
    }
    let leader = sim.elect(300).unwrap();
    propose_all(&mut sim, leader, "three", 2).unwrap();
    assert!(
        sim.run_until(300, |s| all_agree(s) && s.committed_values(1).len() == 22)
            .unwrap()
    );
    let mut want = names("one", 10);
    want.extend(names("two", 10));
    want.extend(names("three", 2));
    for id in 1..=3 {
        assert_eq!(sim.committed_values(id), want);
    }
}

/// Three replicas in `dir`; a follower stopped while 240 more batches
/// commit, then retention on the two others deletes what it still lacks.
/// Returns the cluster (the follower still down), the leader, the follower
/// and the high watermark.
fn a_follower_left_behind_retention(dir: &std::path::Path) -> (SimCluster, u64, u64, i64) {
    let mut sim = SimCluster::new(dir, 3).unwrap();
    let leader = sim.elect(200).unwrap();
    propose_all(&mut sim, leader, "early", 10).unwrap();
    assert!(all_reach(&mut sim, 10));
    let behind = a_follower(&sim, leader);
    sim.crash(behind);
    for round in 0..4 {
        propose_all(&mut sim, leader, &format!("late{round}"), 60).unwrap();
        let want = 10 + 60 * (round + 1) as i64;
        assert!(
            sim.run_until(100, |s| s.replicas[&leader].high_watermark() == want)
                .unwrap()
        );
    }
    let hw = sim.replicas[&leader].high_watermark();
    for r in sim.replicas.values() {
        assert!(
            r.store().delete_below(hw - 100).unwrap() > 0,
            "segments deleted"
        );
    }
    (sim, leader, behind, hw)
}

#[test]
fn a_follower_behind_the_leaders_first_entry_installs_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, leader, behind, hw) = a_follower_left_behind_retention(dir.path());
    let first = sim.replicas[&leader]
        .store()
        .with_log(|l| l.first_entry_index());
    assert!(
        first > 12,
        "the leader's log now starts past what `behind` has"
    );

    sim.restart(behind).unwrap();
    assert!(
        sim.run_until(300, |s| all_agree(s)
            && s.replicas[&behind].high_watermark() == hw)
            .unwrap(),
        "the follower installs the snapshot and catches up"
    );
    let (start, first_behind) = sim.replicas[&behind]
        .store()
        .with_log(|l| (l.log_start_offset(), l.first_entry_index()));
    assert_eq!(first_behind, first);
    assert!(start > 11, "its log now starts where the leader's does");
    assert!(
        !sim.committed_values(behind)
            .iter()
            .any(|v| v.starts_with("early"))
    );
    // It keeps up with new writes, and survives a restart on its own.
    propose_all(&mut sim, leader, "after", 5).unwrap();
    assert!(
        sim.run_until(100, |s| all_agree(s)
            && s.replicas[&behind].high_watermark() == hw + 5)
            .unwrap()
    );
    sim.crash(behind);
    sim.restart(behind).unwrap();
    assert!(
        sim.run_until(300, |s| all_agree(s)
            && s.replicas[&behind].high_watermark() == hw + 5)
            .unwrap()
    );
}

#[test]
fn a_leader_counts_the_replicas_it_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    sim.run_until(5, |_| false).unwrap();
    assert_eq!(sim.replicas[&leader].reachable_replicas(), 3);
    let cut = a_follower(&sim, leader);
    sim.isolate(cut);
    // After an election timeout without a word from it, it no longer counts
    // (and min.insync.replicas=3 could not be met).
    sim.run_until(15, |_| false).unwrap();
    assert!(
        sim.replicas[&leader].is_leader(),
        "two of three keep the leader"
    );
    assert_eq!(sim.replicas[&leader].reachable_replicas(), 2);
    sim.heal();
    assert!(
        sim.run_until(30, |s| s.replicas[&leader].reachable_replicas() == 3)
            .unwrap()
    );
}

#[test]
fn leadership_moves_to_the_preferred_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let first = sim.elect(200).unwrap();
    propose_all(&mut sim, first, "p", 5).unwrap();
    let preferred = (1..=3).find(|&id| id != first).unwrap();
    for r in sim.replicas.values_mut() {
        r.set_preferred_leader(Some(preferred));
    }
    // A returning preferred replica does not take leadership back by
    // itself (that would be a second leader change for every client)...
    sim.run_until(100, |_| false).unwrap();
    assert_eq!(
        sim.leader(),
        Some(first),
        "no hand-over without an election"
    );
    // ...until a preferred election asks the leader for it.
    sim.replicas.get_mut(&first).unwrap().request_hand_over(300);
    assert!(
        sim.run_until(200, |s| s.leader() == Some(preferred))
            .unwrap(),
        "the leader hands over to the preferred replica"
    );
    // It stays there, and nothing committed is lost on the way.
    sim.run_until(50, |_| false).unwrap();
    assert_eq!(sim.leader(), Some(preferred));
    assert!(
        sim.run_until(100, |s| all_agree(s)
            && s.committed_values(preferred).len() == 5)
            .unwrap()
    );
    assert_eq!(sim.committed_values(preferred), names("p", 5));
}

#[test]
fn a_proposal_knows_the_offsets_its_batch_gets_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    // Batches of 1..=5 records, some proposed before the previous ones are
    // stored (they wait in Raft's unstable log), some after.
    let mut proposals = Vec::new();
    for i in 0..12usize {
        let n = i % 5 + 1;
        let values: Vec<String> = (0..n).map(|j| format!("b{i}-{j}")).collect();
        let specs: Vec<RecordSpec<'_>> = values
            .iter()
            .map(|v| RecordSpec {
                key: None,
                value: Some(v.as_bytes()),
                timestamp: 0,
            })
            .collect();
        let batch = batch::build(&specs, BuildOptions::default());
        let p = sim
            .replicas
            .get_mut(&leader)
            .unwrap()
            .propose(batch)
            .unwrap();
        assert_eq!(p.last_offset - p.base_offset + 1, n as i64);
        proposals.push(p);
        if i % 3 == 2 {
            sim.round().unwrap();
        }
    }
    let end = proposals.last().unwrap().last_offset + 1;
    assert!(all_reach(&mut sim, end));
    for id in 1..=3 {
        let data = sim.committed_data(id);
        assert_eq!(data.len(), proposals.len(), "replica {id}");
        for ((offset, b), p) in data.iter().zip(&proposals) {
            let h = BatchHeader::parse(b).unwrap();
            assert_eq!((*offset, h.last_offset()), (p.base_offset, p.last_offset));
            assert_eq!(h.partition_leader_epoch as u64, p.term);
        }
    }
}

#[test]
fn a_new_groups_preferred_replica_is_its_first_leader() {
    for preferred in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = SimCluster::new(dir.path(), 3).unwrap();
        for r in sim.replicas.values_mut() {
            r.set_preferred_leader(Some(preferred));
        }
        // Well inside one election timeout (10 ticks), and in term 1: it
        // stood at once instead of taking over later.
        assert!(sim.run_until(3, |s| s.leader().is_some()).unwrap());
        assert_eq!(sim.leader(), Some(preferred));
        assert_eq!(sim.replicas[&preferred].term(), 1);
    }
}

#[test]
fn a_proposal_at_a_predicted_place_lands_there_or_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    let r = sim.replicas.get_mut(&leader).unwrap();
    let first = r.propose(payload("x", 0)).unwrap();
    let next = super::replica::Proposal {
        index: first.index + 1,
        term: first.term,
        base_offset: first.last_offset + 1,
        last_offset: first.last_offset + 1,
    };
    // One place too far (as if a proposal before it had been dropped), or
    // in another term: refused, nothing appended.
    for wrong in [
        super::replica::Proposal {
            index: next.index + 1,
            base_offset: next.base_offset + 1,
            last_offset: next.last_offset + 1,
            ..next
        },
        super::replica::Proposal {
            term: next.term + 1,
            ..next
        },
    ] {
        assert!(matches!(
            r.propose_at(payload("x", 9), wrong),
            Err(ReplicaError::Moved { .. })
        ));
    }
    assert_eq!(r.propose_at(payload("x", 1), next).unwrap(), next);
    // A follower refuses outright.
    let f = a_follower(&sim, leader);
    let on_follower = sim
        .replicas
        .get_mut(&f)
        .unwrap()
        .propose_at(payload("x", 2), next);
    assert!(matches!(on_follower, Err(ReplicaError::NotLeader { .. })));
    assert!(all_reach(&mut sim, next.last_offset + 1));
    assert_eq!(sim.committed_values(leader), names("x", 2));
}

#[test]
fn a_wiped_follower_rejoins_and_refills_from_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    propose_all(&mut sim, leader, "w", 10).unwrap();
    let hw = {
        sim.run_until(100, |s| {
            all_agree(s) && s.committed_values(leader).len() == 10
        })
        .unwrap();
        sim.replicas[&leader].high_watermark()
    };
    assert!(all_reach(&mut sim, hw));
    // The follower's disk is lost: it comes back empty, while the leader
    // still believes it holds every entry.
    let f = a_follower(&sim, leader);
    sim.crash(f);
    std::fs::remove_dir_all(sim.dir(f)).unwrap();
    sim.restart(f).unwrap();
    assert_eq!(
        sim.replicas[&f].store().with_log(|l| l.last_entry_index()),
        0
    );
    assert!(
        sim.run_until(200, |s| s.committed_values(f).len() == 10)
            .unwrap(),
        "the wiped follower refills"
    );
    assert_eq!(sim.committed_values(f), names("w", 10));
    assert!(all_agree(&sim));
}

#[test]
fn a_snapshot_install_cut_short_is_finished_at_the_next_start() {
    use raft::Storage;
    // Both points a crash can stop an install: after the snapshot point is
    // written, before the log is dropped; and after the log is dropped,
    // before the state says the install is done.
    for drop_log_too in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut sim, leader, behind, hw) = a_follower_left_behind_retention(dir.path());
        let snap = sim.replicas[&leader].store().snapshot(0, behind).unwrap();
        {
            let store = super::store::ReplicaStore::open(
                sim.dir(behind),
                sluice_storage::LogConfig {
                    segment_bytes: 4096,
                    ..sluice_storage::LogConfig::default()
                },
                std::sync::Arc::new(sluice_storage::SystemClock),
                &[1, 2, 3],
                true,
            )
            .unwrap();
            store.begin_snapshot_only(&snap).unwrap();
            if drop_log_too {
                let base: i64 = std::str::from_utf8(&snap.data).unwrap().parse().unwrap();
                store
                    .log()
                    .reset(base, snap.get_metadata().index + 1)
                    .unwrap();
            }
            // Dropped without closing: a kill -9.
        }
        sim.restart(behind).unwrap();
        let first = sim.replicas[&leader]
            .store()
            .with_log(|l| l.first_entry_index());
        assert_eq!(
            sim.replicas[&behind]
                .store()
                .with_log(|l| l.first_entry_index()),
            first,
            "the install was finished at open (log dropped too: {drop_log_too})"
        );
        assert!(
            sim.run_until(300, |s| all_agree(s)
                && s.replicas[&behind].high_watermark() == hw)
                .unwrap(),
            "the replica catches up (log dropped too: {drop_log_too})"
        );
    }
}

#[test]
fn a_lost_snapshot_is_sent_again() {
    // A follower behind the leader's first entry; the one snapshot message
    // the leader sends it is lost (as when the connection breaks): the
    // leader must not wait for it forever.
    let dir = tempfile::tempdir().unwrap();
    let (mut sim, _, behind, hw) = a_follower_left_behind_retention(dir.path());
    sim.lose(raft::eraftpb::MessageType::MsgSnapshot);
    sim.restart(behind).unwrap();
    assert!(
        sim.run_until(300, |s| all_agree(s)
            && s.replicas[&behind].high_watermark() == hw)
            .unwrap(),
        "the follower gets the snapshot the second time and catches up"
    );
}

#[test]
fn the_leader_reports_each_voters_progress() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = SimCluster::new(dir.path(), 3).unwrap();
    let leader = sim.elect(200).unwrap();
    let follower = a_follower(&sim, leader);
    assert!(sim.replicas[&follower].voter_progress().unwrap().is_empty());
    propose_all(&mut sim, leader, "q", 5).unwrap();
    // The leader's own first entry takes no offset.
    assert!(all_reach(&mut sim, 5));
    sim.run_until(10, |_| false).unwrap();
    let progress = sim.replicas[&leader].voter_progress().unwrap();
    assert_eq!(
        progress.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let end = sim.replicas[&leader]
        .store()
        .with_log(|l| l.log_end_offset());
    for v in &progress {
        assert_eq!(v.log_end_offset, end, "{v:?}");
        // Heartbeats answered within the last election timeout.
        assert!(v.heard_ticks_ago.is_some_and(|t| t <= 10), "{v:?}");
        assert!(v.caught_up_ticks_ago.is_some_and(|t| t <= 10), "{v:?}");
    }

    // A follower cut off stops being heard from and falls behind.
    sim.isolate(follower);
    propose_all(&mut sim, leader, "r", 3).unwrap();
    sim.run_until(30, |_| false).unwrap();
    let progress = sim.replicas[&leader].voter_progress().unwrap();
    let cut = progress.iter().find(|v| v.id == follower).unwrap();
    let me = progress.iter().find(|v| v.id == leader).unwrap();
    assert!(cut.log_end_offset < me.log_end_offset, "{progress:?}");
    assert!(cut.heard_ticks_ago.unwrap() >= 25, "{progress:?}");
    assert!(cut.caught_up_ticks_ago.unwrap() >= 25, "{progress:?}");
}

/// Leader changes, a wiped follower refilled from the leader, everyone
/// restarted: with dense offsets the records take offsets 0.. with no hole
/// on every replica; with the numbering of topics created before, each of
/// Raft's own entries takes one offset, the same on every replica (a
/// follower stores what it receives as its leader stored it).
#[test]
fn raft_entries_take_no_offset_unless_the_topic_predates_dense_offsets() {
    for dense in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = SimCluster::with_offsets(dir.path(), 3, dense).unwrap();
        let mut leader = sim.elect(200).unwrap();
        let mut want = Vec::new();
        for round in 0..4 {
            let tag = format!("r{round}");
            propose_all(&mut sim, leader, &tag, 5).unwrap();
            want.extend(names(&tag, 5));
            assert!(
                sim.run_until(200, |s| all_agree(s) && s.committed_values(leader) == want)
                    .unwrap(),
                "round {round}"
            );
            sim.crash(leader);
            let old = leader;
            leader = sim.elect(300).unwrap();
            sim.restart(old).unwrap();
        }
        let f = a_follower(&sim, leader);
        sim.crash(f);
        std::fs::remove_dir_all(sim.dir(f)).unwrap();
        sim.restart(f).unwrap();
        propose_all(&mut sim, leader, "last", 5).unwrap();
        want.extend(names("last", 5));
        assert!(
            sim.run_until(300, |s| all_agree(s) && s.committed_values(f) == want)
                .unwrap()
        );
        let own = sim
            .log_of(leader)
            .iter()
            .filter(|(_, _, b)| BatchHeader::parse(b).unwrap().is_control())
            .count() as i64;
        assert!(own >= 5, "a leader entry per term: {own}");
        for id in 1..=3 {
            let offsets: Vec<i64> = sim.committed_data(id).iter().map(|(o, _)| *o).collect();
            let hw = sim.replicas[&id].high_watermark();
            if dense {
                assert_eq!(offsets, (0..25).collect::<Vec<i64>>(), "replica {id}");
                assert_eq!(hw, 25, "replica {id}: the end offset is the record count");
            } else {
                assert_eq!(offsets.len(), 25);
                assert_eq!(
                    hw,
                    25 + own,
                    "replica {id}: one offset per entry of Raft's own"
                );
            }
        }
    }
}

/// A replica reassigned away leaves its term and vote; one of the same
/// group opened empty there later starts from them, and forgets them once
/// taken up (or once the topic is deleted).
#[test]
fn a_replica_back_on_a_node_starts_from_the_votes_it_left() {
    use super::store::{
        ReplicaStore, forget_votes, forget_votes_of_topic, remember_votes, remembered_votes,
    };
    use sluice_storage::{LogConfig, SystemClock};
    use std::sync::Arc;
    let data = tempfile::tempdir().unwrap();
    let open = || {
        ReplicaStore::open(
            &data.path().join("t-0"),
            LogConfig::default(),
            Arc::new(SystemClock),
            &[1, 2, 3],
            true,
        )
        .unwrap()
    };
    let store = open();
    let hs = raft::eraftpb::HardState {
        term: 7,
        vote: 2,
        ..Default::default()
    };
    store.set_hard_state(&hs).unwrap();
    let (term, vote) = store.term_and_vote();
    remember_votes(data.path(), "t-0", term, vote).unwrap();
    store.close().unwrap();
    std::fs::remove_dir_all(data.path().join("t-0")).unwrap();

    assert_eq!(remembered_votes(data.path(), "t-0"), Some((7, 2)));
    assert_eq!(remembered_votes(data.path(), "t-1"), None);
    let again = open();
    again.resume_votes(7, 2).unwrap();
    // Durable: a restart of the new replica keeps them.
    again.close().unwrap();
    let reopened = open();
    assert_eq!(reopened.term_and_vote(), (7, 2));
    // A later term is not taken back.
    reopened.resume_votes(5, 3).unwrap();
    assert_eq!(reopened.term_and_vote(), (7, 2));
    forget_votes(data.path(), "t-0");
    assert_eq!(remembered_votes(data.path(), "t-0"), None);

    for group in ["t-1", "t-2@1", "t-x-3", "tt-1"] {
        remember_votes(data.path(), group, 1, 1).unwrap();
    }
    forget_votes_of_topic(data.path(), "t");
    assert_eq!(remembered_votes(data.path(), "t-1"), None);
    assert_eq!(remembered_votes(data.path(), "t-2@1"), None);
    assert_eq!(remembered_votes(data.path(), "t-x-3"), Some((1, 1)));
    assert_eq!(remembered_votes(data.path(), "tt-1"), Some((1, 1)));
}

/// Kafka's flush policy (flush.messages above 1): a replica counts an entry
/// as held once written, so writes commit on a majority's memory and no
/// fsync is waited for; with flush.messages 10 a ready that reaches ten
/// unflushed records fsyncs.
#[test]
fn kafkas_flush_policy_commits_from_memory_and_flushes_by_count() {
    let durable_and_end = |sim: &SimCluster, id: u64| {
        sim.replicas[&id]
            .store()
            .with_log(|l| (l.durable_offset(), l.log_end_offset()))
    };
    for (flush_messages, synced) in [(u64::MAX >> 1, false), (10, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut sim = SimCluster::new(dir.path(), 3).unwrap();
        sim.set_log_config(sluice_storage::LogConfig {
            flush_interval_messages: Some(flush_messages),
            ..sluice_storage::LogConfig::default()
        })
        .unwrap();
        let leader = sim.elect(200).unwrap();
        for i in 0..20 {
            propose_all(&mut sim, leader, &format!("b{i}"), 1).unwrap();
            sim.round().unwrap();
        }
        let done = sim
            .run_until(100, |s| {
                s.replicas.values().all(|r| r.high_watermark() == 20) && all_agree(s)
            })
            .unwrap();
        assert!(done, "every replica commits all 20 batches");
        for id in sim.replicas.keys().copied().collect::<Vec<_>>() {
            let (durable, end) = durable_and_end(&sim, id);
            assert_eq!(end, 20, "replica {id}");
            if synced {
                assert!(durable >= 10, "replica {id} flushed by count: {durable}");
            } else {
                assert_eq!(durable, 0, "replica {id} synced nothing");
                assert!(sim.replicas[&id].flush_point().unwrap().is_none());
            }
        }
    }
}
