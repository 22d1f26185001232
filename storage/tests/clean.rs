//! Swapping in cleaned segments: offsets and Raft entries are kept, stale or
//! unfaithful rewrites are refused, and a crash at any point of the swap
//! leaves either the old segments or the new ones, never a mix inside a group.

use std::path::Path;
use std::sync::Arc;

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::log::{CLEANER_CHECKPOINT, SWAP_MARKER};
use sluice_storage::{
    AppendOptions, BatchHeader, CleanedSegment, Log, LogConfig, StorageError, SystemClock,
};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), Arc::new(SystemClock)).unwrap()
}

/// Writes `n` batches of two keyed records each; returns the open log.
fn write_log(dir: &Path, n: usize) -> Log {
    let mut log = open(dir);
    for i in 0..n {
        let (k1, k2) = (format!("key-{}", i % 5), format!("key-{}", (i + 1) % 5));
        let b = batch::build(
            &[
                RecordSpec {
                    key: Some(k1.as_bytes()),
                    value: Some(format!("value-{i}-a").as_bytes()),
                    timestamp: 1000 + i as i64,
                },
                RecordSpec {
                    key: Some(k2.as_bytes()),
                    value: Some(format!("value-{i}-b").as_bytes()),
                    timestamp: 1000 + i as i64,
                },
            ],
            BuildOptions::default(),
        );
        log.append(&b, &AppendOptions::default()).unwrap();
    }
    log.flush().unwrap();
    log
}

/// Every batch in the log, from the start.
fn all_batches(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20).unwrap();
        let mut rest = &r.records[..];
        while !rest.is_empty() {
            let h = BatchHeader::parse(rest).unwrap();
            out.push(rest[..h.total_size()].to_vec());
            at = h.next_offset();
            rest = &rest[h.total_size()..];
        }
    }
    out
}

/// A stand-in for the compactor: every odd batch loses its records, and the
/// sealed segments are merged in pairs.
/// The first dirty offset once every sealed segment is cleaned.
fn first_dirty_after_all(log: &Log) -> i64 {
    let sealed = log.sealed_segments().unwrap();
    sealed.last().unwrap().info.next_offset
}

fn rewrite(log: &Log) -> Vec<CleanedSegment> {
    let sealed = log.sealed_segments().unwrap();
    sealed
        .chunks(2)
        .map(|pair| {
            let mut out = Vec::new();
            for s in pair {
                let mut rest = &s.bytes[..];
                while !rest.is_empty() {
                    let h = BatchHeader::parse(rest).unwrap();
                    let b = &rest[..h.total_size()];
                    if (h.base_offset / 2) % 2 == 1 {
                        out.extend(batch::with_records(b, &[], 0, h.attributes & !0x7));
                    } else {
                        out.extend_from_slice(b);
                    }
                    rest = &rest[h.total_size()..];
                }
            }
            CleanedSegment {
                replaces: pair.iter().map(|s| s.info.base_offset).collect(),
                chunks: vec![out.into()],
            }
        })
        .collect()
}

fn entries_of(log: &Log, batches: &[Vec<u8>]) -> Vec<u64> {
    batches
        .iter()
        .map(|b| {
            let h = BatchHeader::parse(b).unwrap();
            log.entry_for_offset(h.base_offset).unwrap().unwrap()
        })
        .collect()
}

fn header_fields(b: &[u8]) -> (i64, i32, i32) {
    let h = BatchHeader::parse(b).unwrap();
    (h.base_offset, h.last_offset_delta, h.record_count)
}

#[test]
fn a_swap_keeps_every_offset_and_raft_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = write_log(dir.path(), 30);
    let before = all_batches(&log);
    let entries_before = entries_of(&log, &before);
    let (first_entry, last_entry, end) = (
        log.first_entry_index(),
        log.last_entry_index(),
        log.log_end_offset(),
    );
    let sealed_before = log.sealed_segments().unwrap().len();
    assert!(sealed_before >= 4, "the test needs several sealed segments");
    let cleaned = rewrite(&log);
    let dirty = first_dirty_after_all(&log);
    let producers = log.producer_state().clone();
    log.replace_segments(&cleaned, dirty).unwrap();
    // A producer snapshot at each segment base after the first, no other.
    let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset).collect();
    assert_eq!(log.producer_snapshots().unwrap(), bases[1..].to_vec());
    assert_eq!(log.producer_state(), &producers);

    let check = |log: &Log| {
        let after = all_batches(log);
        assert_eq!(after.len(), before.len(), "no batch disappears");
        assert_eq!(entries_of(log, &after), entries_before);
        assert_eq!(
            (
                log.first_entry_index(),
                log.last_entry_index(),
                log.log_end_offset()
            ),
            (first_entry, last_entry, end)
        );
        for (a, b) in after.iter().zip(&before) {
            let (ha, hb) = (header_fields(a), header_fields(b));
            assert_eq!((ha.0, ha.1), (hb.0, hb.1), "offsets are kept");
            if (ha.0 / 2) % 2 == 1 && ha.0 < dirty {
                assert_eq!(ha.2, 0, "the cleaned batch at {} is empty", ha.0);
                assert_eq!(
                    log.entry(log.entry_for_offset(ha.0).unwrap().unwrap())
                        .unwrap(),
                    a[..]
                );
            } else {
                assert_eq!(a, b, "an untouched batch is byte-for-byte the same");
            }
        }
        assert_eq!(log.first_dirty_offset(), dirty);
        assert_eq!(
            log.sealed_segments().unwrap().len(),
            sealed_before.div_ceil(2)
        );
    };
    check(&log);
    // Appends go on after a swap.
    log.append(&batch::build_simple(1, 10, 5), &AppendOptions::default())
        .unwrap();
    log.truncate_to(end).unwrap();
    check(&log);
    // And it all holds after a restart, clean or not.
    log.close().unwrap();
    drop(log);
    check(&open(dir.path()));
    check(&open(dir.path()));
}

#[test]
fn stale_or_unfaithful_rewrites_are_refused_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = write_log(dir.path(), 30);
    let before = all_batches(&log);
    let cleaned = rewrite(&log);

    // One batch too few.
    let mut short = cleaned.clone();
    let mut bytes = short[0].to_vec();
    let h = BatchHeader::parse(&bytes).unwrap();
    bytes.drain(..h.total_size());
    short[0].chunks = vec![bytes.into()];
    assert!(matches!(
        log.replace_segments(&short, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    // A flipped byte.
    let mut flipped = cleaned.clone();
    let mut bytes = flipped[0].to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    flipped[0].chunks = vec![bytes.into()];
    assert!(log.replace_segments(&flipped, 0).is_err());
    // A segment that retention deleted meanwhile.
    let second = log.sealed_segments().unwrap()[1].info.base_offset;
    log.delete_segments_below(second).unwrap();
    assert!(matches!(
        log.replace_segments(&cleaned, 0),
        Err(StorageError::SegmentGone(_))
    ));

    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n == SWAP_MARKER || n == CLEANER_CHECKPOINT)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let kept = all_batches(&log);
    assert_eq!(kept[..], before[before.len() - kept.len()..]);
}

/// Replays the swap protocol by hand up to `steps` file operations, as a crash
/// would leave it.
fn partial_swap(dir: &Path, cleaned: &[CleanedSegment], dirty: i64, steps: usize) {
    let name = |base: i64, ext: &str| dir.join(format!("{base:020}.{ext}"));
    let mut ops: Vec<Box<dyn Fn()>> = Vec::new();
    for c in cleaned {
        let (base, bytes) = (c.replaces[0], c.to_vec());
        ops.push(Box::new(move || {
            std::fs::write(name(base, "cleaned"), &bytes).unwrap()
        }));
    }
    let mut marker = String::new();
    for c in cleaned {
        let line: Vec<String> = c.replaces.iter().map(|b| b.to_string()).collect();
        marker += &(line.join(" ") + "\n");
    }
    marker += &format!("dirty {dirty}\n");
    ops.push(Box::new(move || {
        std::fs::write(dir.join(SWAP_MARKER), &marker).unwrap()
    }));
    for c in cleaned {
        let base = c.replaces[0];
        ops.push(Box::new(move || {
            std::fs::rename(name(base, "cleaned"), name(base, "log")).unwrap()
        }));
        for &other in &c.replaces[1..] {
            for ext in ["log", "index", "timeindex"] {
                ops.push(Box::new(move || {
                    std::fs::remove_file(name(other, ext)).unwrap()
                }));
            }
        }
    }
    ops.push(Box::new(move || {
        std::fs::write(dir.join(CLEANER_CHECKPOINT), format!("{dirty}\n")).unwrap()
    }));
    ops.push(Box::new(move || {
        std::fs::remove_file(dir.join(SWAP_MARKER)).unwrap()
    }));
    assert!(steps <= ops.len());
    for op in &ops[..steps] {
        op();
    }
}

#[test]
fn a_crash_anywhere_in_the_swap_leaves_one_whole_copy() {
    let template = tempfile::tempdir().unwrap();
    let log = write_log(template.path(), 30);
    let before = all_batches(&log);
    let cleaned = rewrite(&log);
    let dirty = first_dirty_after_all(&log);
    drop(log);
    // Steps: one write per group, the marker, then renames and deletions,
    // the checkpoint and the marker's removal.
    let groups = cleaned.len();
    let total = groups
        + 1
        + cleaned
            .iter()
            .map(|c| 1 + 3 * (c.replaces.len() - 1))
            .sum::<usize>()
        + 2;
    let mut expected_after = None;
    for steps in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(template.path()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
        partial_swap(dir.path(), &cleaned, dirty, steps);
        let log = open(dir.path());
        let got = all_batches(&log);
        let marker_written = steps > groups;
        if marker_written {
            let want = expected_after.get_or_insert_with(|| got.clone());
            assert_eq!(
                &got, want,
                "crash after {steps} steps: the swap is finished"
            );
            assert_eq!(log.first_dirty_offset(), dirty);
            assert!(got.iter().any(|b| header_fields(b).2 == 0));
        } else {
            assert_eq!(
                got, before,
                "crash after {steps} steps: the old segments stay"
            );
            assert_eq!(log.first_dirty_offset(), 0);
        }
        assert_eq!(got.len(), before.len());
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".cleaned") || n == SWAP_MARKER
            })
            .count();
        assert_eq!(leftovers, 0, "open tidies up after {steps} steps");
    }
}
