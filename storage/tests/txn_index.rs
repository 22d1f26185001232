//! The transactions a log records (open ones, aborted ones: Kafka's
//! aborted-transaction index): kept while appending, across rolls, clean
//! and unclean restarts, truncation, a lost or damaged `.txnindex` file,
//! and a cleaner swap — checked against a model fed the same batches.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::segment;
use sluice_storage::txn::{AbortedTxn, Marker, SegmentTxns, marker_record};
use sluice_storage::{AppendOptions, CleanedSegment, Log, LogConfig, SystemClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Data(i64),
    Plain,
    End(i64, Marker),
}

/// A deterministic mix of four producers' transactions and plain batches.
fn workload(n: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut x = 7u64;
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pid = ((x >> 33) % 4) as i64 + 1;
        ops.push(match (x >> 40) % 10 {
            0..=4 => Op::Data(pid),
            5 => Op::Plain,
            6 | 7 => Op::End(pid, Marker::Abort),
            _ => Op::End(pid, Marker::Commit),
        });
    }
    ops
}

fn batch_of(op: Op) -> Vec<u8> {
    match op {
        Op::Data(pid) => batch::build(
            &[RecordSpec {
                key: Some(b"k"),
                value: Some(b"transactional"),
                timestamp: 1,
            }],
            BuildOptions {
                producer_id: pid,
                producer_epoch: 1,
                base_sequence: 0,
                transactional: true,
                ..BuildOptions::default()
            },
        ),
        Op::Plain => batch::build(
            &[RecordSpec {
                key: None,
                value: Some(b"plain"),
                timestamp: 1,
            }],
            BuildOptions::default(),
        ),
        Op::End(pid, m) => {
            let (key, value) = marker_record(m, 3);
            batch::build(
                &[RecordSpec {
                    key: Some(&key),
                    value: Some(&value),
                    timestamp: 1,
                }],
                BuildOptions {
                    producer_id: pid,
                    producer_epoch: 1,
                    control: true,
                    transactional: true,
                    ..BuildOptions::default()
                },
            )
        }
    }
}

/// What a log holding `ops` (one offset each) must report: the open
/// transactions (producer → first offset) and the aborted ones.
fn model(ops: &[Op]) -> (HashMap<i64, i64>, Vec<(i64, i64, i64)>) {
    let mut open = HashMap::new();
    let mut aborted = Vec::new();
    for (offset, op) in ops.iter().enumerate() {
        let offset = offset as i64;
        match *op {
            Op::Data(pid) => {
                open.entry(pid).or_insert(offset);
            }
            Op::Plain => {}
            Op::End(pid, m) => {
                if let Some(first) = open.remove(&pid)
                    && m == Marker::Abort
                {
                    aborted.push((pid, first, offset));
                }
            }
        }
    }
    (open, aborted)
}

fn check(log: &Log, ops: &[Op]) {
    let (open, aborted) = model(ops);
    let got_open: HashMap<i64, i64> = log
        .txn_state()
        .open
        .iter()
        .map(|(&pid, o)| (pid, o.first_offset))
        .collect();
    assert_eq!(got_open, open);
    let got: Vec<(i64, i64, i64)> = log
        .aborted_txns()
        .unwrap()
        .iter()
        .map(|a| (a.producer_id, a.first_offset, a.last_offset))
        .collect();
    assert_eq!(got, aborted);
}

fn write(log: &mut Log, ops: &[Op]) {
    for &op in ops {
        log.append(&batch_of(op), &AppendOptions::default())
            .unwrap();
    }
}

/// A log of `n` operations, written and closed cleanly.
fn closed_log(n: usize) -> (tempfile::TempDir, Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload(n);
    let mut log = open(dir.path());
    write(&mut log, &ops);
    log.close().unwrap();
    (dir, ops)
}

fn txn_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_index_follows_appends_rolls_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload(300);
    let mut log = open(dir.path());
    write(&mut log, &ops[..200]);
    check(&log, &ops[..200]);
    assert!(log.segments().len() > 5, "the workload spans many segments");
    // Every sealed segment has its file; the model has aborts to find.
    assert!(txn_files(dir.path()).len() >= log.segments().len() - 1);
    assert!(!model(&ops).1.is_empty());

    // Clean restart, then more appends.
    log.close().unwrap();
    drop(log);
    let mut log = open(dir.path());
    check(&log, &ops[..200]);
    write(&mut log, &ops[200..250]);
    check(&log, &ops[..250]);

    // Crash (nothing closed) and restart.
    log.flush().unwrap();
    drop(log);
    let mut log = open(dir.path());
    check(&log, &ops[..250]);
    write(&mut log, &ops[250..]);
    check(&log, &ops);
}

#[test]
fn sealed_segments_are_read_from_their_index_not_replayed() {
    let (dir, _) = closed_log(200);
    // An entry only the file holds: if opening replayed the segment, it
    // would be gone.
    let first = &txn_files(dir.path())[0];
    let mut f = SegmentTxns::read(first).unwrap();
    let planted = AbortedTxn {
        producer_id: 99,
        first_offset: 0,
        last_offset: 0,
        last_stable_offset: 1,
    };
    f.aborted.insert(0, planted);
    f.write(first).unwrap();
    let log = open(dir.path());
    assert_eq!(log.aborted_txns().unwrap()[0], planted);
}

#[test]
fn a_lost_or_damaged_index_is_rebuilt_from_its_segment() {
    let (dir, ops) = closed_log(200);
    let files = txn_files(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    let mut bytes = std::fs::read(&files[3]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&files[3], bytes).unwrap();
    // A sealed segment's file left in its active form (a crash before the
    // seal's write) does not cover the segment either.
    let mut active_form = SegmentTxns::read(&files[4]).unwrap();
    active_form.end_offset = None;
    active_form.aborted.clear();
    active_form.write(&files[4]).unwrap();

    let log = open(dir.path());
    check(&log, &ops);
    // Rebuilt on disk too: the next open trusts them again.
    for f in [&files[1], &files[3], &files[4]] {
        let f = SegmentTxns::read(f).expect("rewritten");
        assert!(f.end_offset.is_some());
    }
    drop(log);
    check(&open(dir.path()), &ops);
}

#[test]
fn truncation_forgets_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload(200);
    let mut log = open(dir.path());
    write(&mut log, &ops);
    for cut in [190, 150, 61, 3] {
        log.truncate_to(cut).unwrap();
        check(&log, &ops[..cut as usize]);
    }
    // Appends after the cut are tracked from the truncated state.
    let more = workload(260);
    write(&mut log, &more[3..]);
    check(&log, &more);
    log.close().unwrap();
    drop(log);
    check(&open(dir.path()), &more);
}

#[test]
fn a_log_opened_without_any_index_builds_them() {
    let (dir, ops) = closed_log(150);
    for f in txn_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let log = open(dir.path());
    check(&log, &ops);
    assert!(txn_files(dir.path()).len() >= log.segments().len() - 1);
}

#[test]
fn a_cleaner_swap_keeps_the_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload(200);
    let mut log = open(dir.path());
    write(&mut log, &ops);
    // Pairs of sealed segments replaced by faithful copies of themselves.
    let sealed = log.sealed_segments().unwrap();
    let cleaned: Vec<CleanedSegment> = sealed
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| CleanedSegment {
            replaces: pair.iter().map(|s| s.info.base_offset).collect(),
            chunks: pair.iter().map(|s| s.bytes.clone()).collect(),
        })
        .collect();
    let dirty = sealed.last().unwrap().info.next_offset;
    log.replace_segments(&cleaned, dirty).unwrap();
    check(&log, &ops);
    // The replaced segments' files went with them.
    for c in &cleaned {
        assert!(!segment::file_name(dir.path(), c.replaces[1], "txnindex").exists());
    }
    log.close().unwrap();
    drop(log);
    check(&open(dir.path()), &ops);
    // Not a replay: the index covered every merged segment.
    assert!(
        txn_files(dir.path())
            .iter()
            .all(|f| SegmentTxns::read(f).is_some())
    );
}

#[test]
fn retention_deletes_the_index_with_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let ops = workload(200);
    let mut log = open(dir.path());
    write(&mut log, &ops);
    let second = log.segments()[1].base_offset;
    let first = log.segments()[0].base_offset;
    assert_eq!(log.delete_segments_below(second).unwrap(), 1);
    assert!(!segment::file_name(dir.path(), first, "txnindex").exists());
    // What is left is still known (entries wholly below the start stay
    // until the caller trims them).
    let (open_model, aborted) = model(&ops);
    let got = log.aborted_txns().unwrap();
    assert!(got.iter().all(|a| a.last_offset >= second));
    assert_eq!(got.len(), aborted.iter().filter(|a| a.2 >= second).count());
    assert_eq!(log.txn_state().open.len(), open_model.len());
}
