//! The idempotent producers a log records: kept while appending, snapshotted
//! at each roll and at close, and the same after a crash, a clean restart, a
//! truncation, the deletion of old segments and a damaged snapshot as a walk
//! of the whole log gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::checkpoint::CLEAN_SHUTDOWN;
use sluice_storage::producers::ProducerState;
use sluice_storage::txn::{Marker, marker_record};
use sluice_storage::{AppendOptions, Log, LogConfig, SystemClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

/// An idempotent batch of `n` records from sequence `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize, timestamp: i64) -> Vec<u8> {
    let records: Vec<RecordSpec> = (0..n)
        .map(|i| RecordSpec {
            key: Some(b"k"),
            value: Some(b"idempotent value"),
            timestamp: timestamp + i as i64,
        })
        .collect();
    batch::build(
        &records,
        BuildOptions {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..BuildOptions::default()
        },
    )
}

fn plain() -> Vec<u8> {
    batch::build(
        &[RecordSpec {
            key: None,
            value: Some(b"plain"),
            timestamp: 5,
        }],
        BuildOptions::default(),
    )
}

/// A COMMIT marker written with `epoch` (a coordinator's bump).
fn commit(pid: i64, epoch: i16) -> Vec<u8> {
    let (key, value) = marker_record(Marker::Commit, 0);
    batch::build(
        &[RecordSpec {
            key: Some(&key),
            value: Some(&value),
            timestamp: 9,
        }],
        BuildOptions {
            producer_id: pid,
            producer_epoch: epoch,
            control: true,
            transactional: true,
            ..BuildOptions::default()
        },
    )
}

/// Three producers (one bumps its epoch, one is fenced by a marker), plain
/// batches between them: `rounds` rounds over several segments.
fn write(log: &mut Log, rounds: i32, seqs: &mut [i32; 3]) {
    for r in 0..rounds {
        for (k, seq) in seqs.iter_mut().enumerate() {
            let pid = 100 + k as i64;
            let n = 1 + (r as usize + k) % 3;
            let epoch = if k == 1 && r >= rounds / 2 { 1 } else { 0 };
            if k == 1 && r == rounds / 2 {
                *seq = 0;
            }
            log.append(
                &idempotent(pid, epoch, *seq, n, 1000 + r as i64),
                &AppendOptions::default(),
            )
            .unwrap();
            *seq += n as i32;
        }
        log.append(&plain(), &AppendOptions::default()).unwrap();
    }
    log.append(&commit(102, 3), &AppendOptions::default())
        .unwrap();
    seqs[2] = 0;
}

fn snapshots(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            (stem.parse().unwrap(), p)
        })
        .collect();
    out.sort();
    out
}

/// The state a walk of the whole log gives: the log opened in a copy of
/// `dir` without any snapshot.
fn walked(dir: &Path) -> ProducerState {
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "snapshot") {
            continue;
        }
        std::fs::copy(&p, copy.path().join(p.file_name().unwrap())).unwrap();
    }
    let log = open(copy.path());
    // The walk saved its result for the next open.
    assert_eq!(
        log.producer_snapshots().unwrap(),
        vec![log.log_end_offset()]
    );
    log.producer_state().clone()
}

#[test]
fn the_state_after_a_crash_or_a_clean_restart_is_the_walked_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut seqs = [0; 3];
    write(&mut log, 30, &mut seqs);
    let live = log.producer_state().clone();
    assert_eq!(live.len(), 3);
    assert_eq!(live.get(101).unwrap().epoch, 1);
    assert_eq!(live.get(102).unwrap().epoch, 3, "the marker bumped it");
    assert!(live.get(102).unwrap().batches.is_empty());
    let rolled = snapshots(dir.path());
    assert!(rolled.len() >= 5, "one snapshot per roll: {rolled:?}");
    drop(log); // a crash

    assert_eq!(walked(dir.path()), live);
    let mut log = open(dir.path());
    assert_eq!(log.producer_state(), &live, "after a crash");
    // More batches after the restart.
    write(&mut log, 4, &mut seqs);
    let live = log.producer_state().clone();
    log.close().unwrap();
    let end = log.log_end_offset();
    drop(log);
    assert_eq!(
        snapshots(dir.path()).last().unwrap().0,
        end,
        "a clean close snapshots the log end"
    );
    let mut log = open(dir.path());
    assert_eq!(log.producer_state(), &live, "after a close");
    assert_eq!(walked(dir.path()), live);
    // Once the log rolls past it, the close's snapshot goes: one per
    // segment base is kept.
    while log.segments().last().unwrap().base_offset <= end {
        log.append(&plain(), &AppendOptions::default()).unwrap();
    }
    let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset).collect();
    let snaps: Vec<i64> = snapshots(dir.path()).iter().map(|s| s.0).collect();
    assert!(!snaps.contains(&end), "{snaps:?}");
    assert!(
        snaps.iter().all(|at| bases.contains(at)),
        "{snaps:?} {bases:?}"
    );
}

#[test]
fn a_snapshot_is_read_instead_of_the_log_and_a_damaged_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write(&mut log, 20, &mut [0; 3]);
    let live = log.producer_state().clone();
    log.close().unwrap();
    drop(log);
    let (end, path) = snapshots(dir.path()).pop().unwrap();

    // A snapshot naming a producer the log never saw: the open log has it,
    // so the snapshot was read and the log was not walked below it.
    let mut planted = live.clone();
    planted.observe_header(
        &sluice_storage::BatchHeader::parse(&idempotent(4242, 0, 0, 1, 1)).unwrap(),
        end - 1,
    );
    std::fs::write(&path, planted.encode(end)).unwrap();
    assert!(open(dir.path()).producer_state().get(4242).is_some());

    // Damaged, or naming another offset: ignored, and the state comes from
    // an older snapshot and the batches after it.
    let mut bytes = planted.encode(end);
    bytes[30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(open(dir.path()).producer_state(), &live);
    std::fs::write(&path, planted.encode(end - 1)).unwrap();
    assert_eq!(open(dir.path()).producer_state(), &live);
}

#[test]
fn truncation_removes_the_snapshots_above_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut seqs = [0; 3];
    write(&mut log, 30, &mut seqs);
    let snaps = snapshots(dir.path());
    // Cut at a snapshot's offset in the middle of the log (a batch start).
    let (cut, _) = snaps[snaps.len() / 2];
    log.truncate_to(cut).unwrap();
    assert!(
        snapshots(dir.path()).iter().all(|&(at, _)| at <= cut),
        "no snapshot above the cut"
    );
    assert_eq!(log.log_end_offset(), cut);
    let after_cut = log.producer_state().clone();
    // Different batches take the offsets above the cut: a stale snapshot
    // there would describe the removed ones.
    for i in 0..40 {
        log.append(
            &idempotent(7, 0, i, 1, 2000 + i as i64),
            &AppendOptions::default(),
        )
        .unwrap();
    }
    drop(log);
    let reopened = open(dir.path());
    let state = reopened.producer_state().clone();
    assert_eq!(state, walked(dir.path()));
    assert_eq!(state.get(7).unwrap().batches.back().unwrap().last_seq, 39);
    for (pid, e) in after_cut.iter() {
        assert_eq!(state.get(pid), Some(e), "producer {pid} as at the cut");
    }
}

#[test]
fn a_crash_that_cuts_the_log_below_a_snapshot_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write(&mut log, 12, &mut [0; 3]);
    log.close().unwrap();
    let end = log.log_end_offset();
    drop(log);
    assert_eq!(snapshots(dir.path()).last().unwrap().0, end);
    // The last batch torn: as if the close never happened and the data
    // did not all reach the disk.
    let last_log = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&last_log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last_log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN)).unwrap();
    let log = open(dir.path());
    assert!(log.log_end_offset() < end);
    assert!(
        snapshots(dir.path())
            .iter()
            .all(|&(at, _)| at <= log.log_end_offset())
    );
    let state = log.producer_state().clone();
    drop(log);
    assert_eq!(state, walked(dir.path()));
}

#[test]
fn deleting_old_segments_keeps_the_producers_and_drops_old_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    // Producer 9 writes only at the start, in segments about to go.
    log.append(&idempotent(9, 0, 0, 2, 500), &AppendOptions::default())
        .unwrap();
    write(&mut log, 30, &mut [0; 3]);
    let live = log.producer_state().clone();
    let segs = log.segments();
    let below = segs[segs.len() / 2].base_offset;
    assert!(log.delete_segments_below(below).unwrap() > 0);
    let first = log.segments()[0].base_offset;
    assert!(snapshots(dir.path()).iter().all(|&(at, _)| at >= first));
    assert_eq!(
        log.producer_state(),
        &live,
        "Kafka keeps them past retention"
    );
    drop(log);
    let state = open(dir.path()).producer_state().clone();
    assert_eq!(state, live, "from the snapshot at the first segment");
    assert!(state.get(9).is_some());
}

#[test]
fn expired_producers_stay_forgotten_after_a_restart_unless_a_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append(&idempotent(1, 0, 0, 1, 1_000), &AppendOptions::default())
        .unwrap();
    log.append(&idempotent(2, 0, 0, 1, 5_000), &AppendOptions::default())
        .unwrap();
    // Producer 3 has a transaction open (an old one).
    let txn = batch::build(
        &[RecordSpec {
            key: None,
            value: Some(b"in a transaction"),
            timestamp: 1_000,
        }],
        BuildOptions {
            producer_id: 3,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..BuildOptions::default()
        },
    );
    log.append(&txn, &AppendOptions::default()).unwrap();
    assert_eq!(log.expire_producers(6_000, 4_000), 1);
    let state = log.producer_state();
    assert!(state.get(1).is_none());
    assert!(state.get(2).is_some() && state.get(3).is_some());
    log.close().unwrap();
    drop(log);
    let log = open(dir.path());
    assert!(log.producer_state().get(1).is_none());
    assert_eq!(log.producer_state().len(), 2);
}
