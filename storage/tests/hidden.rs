//! Hidden batches: a replicated log's own entries, which hold a place (an
//! entry index) in the log but no offset. Data batches around them keep
//! dense offsets; reads never return them; entry-based operations see them.

use std::path::Path;
use std::sync::Arc;

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::{AppendOptions, BatchHeader, Log, LogConfig, SystemClock};

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// A data batch of `n` records, numbered by `tag` in their values.
fn data(tag: usize, n: usize) -> Vec<u8> {
    let values: Vec<String> = (0..n).map(|r| format!("value-{tag}-{r}")).collect();
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .map(|v| RecordSpec {
            key: None,
            value: Some(v.as_bytes()),
            timestamp: 1_000 + tag as i64,
        })
        .collect();
    batch::build(&specs, BuildOptions::default())
}

fn hidden(tag: usize) -> Vec<u8> {
    let value = format!("own-{tag}");
    let mut b = batch::build(
        &[RecordSpec {
            key: Some(&[0, 0, 0, 2]),
            value: Some(value.as_bytes()),
            timestamp: -1,
        }],
        BuildOptions {
            control: true,
            ..BuildOptions::default()
        },
    );
    batch::hide(&mut b);
    b
}

/// What an entry is: hidden, or a data batch of this many records.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Hidden,
    Data(usize),
}

/// A pattern with hidden entries first, in runs, at the end, and (with
/// small segments) at segment boundaries.
fn pattern() -> Vec<Kind> {
    let mut out = vec![Kind::Hidden, Kind::Hidden];
    for i in 0..60 {
        out.push(Kind::Data(1 + i % 4));
        if i % 5 == 0 {
            out.push(Kind::Hidden);
        }
        if i % 17 == 0 {
            out.push(Kind::Hidden);
        }
    }
    out.push(Kind::Hidden);
    out
}

/// Appends the pattern with increasing epochs (one per hidden entry, as a
/// new leader's entry opens its term). Returns each entry's base offset.
fn write(log: &mut Log, kinds: &[Kind]) -> Vec<i64> {
    let mut epoch = 0;
    let mut bases = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let b = match k {
            Kind::Hidden => {
                epoch += 1;
                hidden(i)
            }
            Kind::Data(n) => data(i, *n),
        };
        let opts = AppendOptions {
            leader_epoch: epoch,
            ..AppendOptions::default()
        };
        let info = log.append(&b, &opts).unwrap();
        bases.push(info.first_offset);
        assert_eq!(info.entry_index, i as u64 + 1);
    }
    bases
}

/// Every record read by a consumer advancing from offset 0: (offset, value).
fn read_all(log: &Log) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let r = log.read(next, 300).unwrap().records;
        assert!(!r.is_empty(), "nothing at {next} below the end");
        let mut pos = 0;
        while pos < r.len() {
            let h = BatchHeader::parse(&r[pos..]).unwrap();
            assert!(
                !h.is_hidden(),
                "a read returned a hidden batch at {}",
                h.base_offset
            );
            let b = bytes::Bytes::copy_from_slice(&r[pos..pos + h.total_size()]);
            for (d, value) in values(&b, &h).into_iter().enumerate() {
                out.push((h.base_offset + d as i64, value));
            }
            next = h.next_offset();
            pos += h.total_size();
        }
    }
    out
}

/// The record values of an uncompressed batch, in order.
fn values(b: &[u8], h: &BatchHeader) -> Vec<String> {
    // Record: length, attributes, timestamp delta, offset delta, key, value, headers.
    fn varint(b: &[u8], pos: &mut usize) -> i64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*pos];
            *pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
    let mut pos = 61;
    let mut out = Vec::new();
    for _ in 0..h.record_count {
        let _len = varint(b, &mut pos);
        pos += 1;
        varint(b, &mut pos);
        varint(b, &mut pos);
        let klen = varint(b, &mut pos);
        pos += klen.max(0) as usize;
        let vlen = varint(b, &mut pos) as usize;
        out.push(String::from_utf8(b[pos..pos + vlen].to_vec()).unwrap());
        pos += vlen;
        let _headers = varint(b, &mut pos);
    }
    out
}

fn expected(kinds: &[Kind]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        if let Kind::Data(n) = k {
            for r in 0..*n {
                out.push((out.len() as i64, format!("value-{i}-{r}")));
            }
        }
    }
    out
}

fn check(log: &Log, kinds: &[Kind], bases: &[i64], what: &str) {
    assert_eq!(
        read_all(log),
        expected(kinds),
        "{what}: records and offsets"
    );
    let total: usize = kinds
        .iter()
        .map(|k| match k {
            Kind::Data(n) => *n,
            Kind::Hidden => 0,
        })
        .sum();
    assert_eq!(log.log_end_offset(), total as i64, "{what}: log end");
    assert_eq!(
        log.last_entry_index(),
        kinds.len() as u64,
        "{what}: entries"
    );
    for (i, k) in kinds.iter().enumerate() {
        let e = log.entry(i as u64 + 1).unwrap();
        let h = BatchHeader::parse(&e).unwrap();
        assert_eq!(h.is_hidden(), *k == Kind::Hidden, "{what}: entry {}", i + 1);
        assert_eq!(h.base_offset, bases[i], "{what}: entry {} base", i + 1);
        // The first entry at each base offset is the one found by offset.
        if i == 0 || bases[i - 1] != bases[i] {
            assert_eq!(
                log.entry_for_offset(bases[i]).unwrap(),
                Some(i as u64 + 1),
                "{what}: entry for offset {}",
                bases[i]
            );
        }
    }
}

fn run(dir: &Path, segment_bytes: u64) {
    let kinds = pattern();
    let mut log = Log::open(dir, config(segment_bytes), Arc::new(SystemClock)).unwrap();
    let bases = write(&mut log, &kinds);
    // Offsets are dense: each data batch starts where the records before
    // it end, hidden entries included.
    let mut next = 0;
    for (k, b) in kinds.iter().zip(&bases) {
        assert_eq!(*b, next);
        if let Kind::Data(n) = k {
            next += *n as i64;
        }
    }
    check(&log, &kinds, &bases, "written");
    log.flush().unwrap();
    drop(log); // a crash: no clean close, the open walks every segment
    let log = Log::open(dir, config(segment_bytes), Arc::new(SystemClock)).unwrap();
    check(&log, &kinds, &bases, "reopened");
}

#[test]
fn hidden_entries_take_no_offset_in_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 1 << 20);
}

#[test]
fn hidden_entries_take_no_offset_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 300);
    // Every segment file has its own base offset: a segment holding only
    // hidden entries is never rolled.
    let logs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(logs > 5, "{logs} segments");
}

#[test]
fn truncation_by_entry_keeps_a_hidden_entry_before_it() {
    for segment_bytes in [1 << 20, 300] {
        let kinds = pattern();
        for cut in 1..=kinds.len() as u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut log =
                Log::open(dir.path(), config(segment_bytes), Arc::new(SystemClock)).unwrap();
            let bases = write(&mut log, &kinds);
            log.truncate_to_entry(cut).unwrap();
            let kept = &kinds[..cut as usize - 1];
            check(&log, kept, &bases, &format!("cut at {cut}"));
            // Appending again continues the numbering from the cut.
            let b = data(999, 2);
            let info = log.append(&b, &AppendOptions::default()).unwrap();
            assert_eq!(info.entry_index, cut);
            assert_eq!(info.first_offset, bases[cut as usize - 1]);
        }
    }
}

#[test]
fn truncation_by_offset_drops_the_hidden_entries_there() {
    let dir = tempfile::tempdir().unwrap();
    let kinds = vec![
        Kind::Data(2),
        Kind::Hidden,
        Kind::Hidden,
        Kind::Data(1),
        Kind::Hidden,
    ];
    let mut log = Log::open(dir.path(), config(1 << 20), Arc::new(SystemClock)).unwrap();
    write(&mut log, &kinds);
    assert_eq!(log.log_end_offset(), 3);
    // A hidden entry closes the log at its end offset: truncating there drops it.
    log.truncate_to(3).unwrap();
    assert_eq!(log.last_entry_index(), 4);
    // Offset 2 starts with the two hidden entries, then the data batch.
    log.truncate_to(2).unwrap();
    assert_eq!(log.last_entry_index(), 1);
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn epochs_and_timestamps_skip_nothing_and_find_no_hidden_entry() {
    let dir = tempfile::tempdir().unwrap();
    let kinds = pattern();
    let mut log = Log::open(dir.path(), config(300), Arc::new(SystemClock)).unwrap();
    let bases = write(&mut log, &kinds);
    // Epoch e starts with the e-th hidden entry: its end is that entry's
    // offset, which is also the first offset of the data of epoch e + 1.
    let hidden_at: Vec<i64> = kinds
        .iter()
        .zip(&bases)
        .filter(|(k, _)| **k == Kind::Hidden)
        .map(|(_, b)| *b)
        .collect();
    for (e, at) in hidden_at.iter().enumerate().skip(1) {
        let (floor, end) = log.epoch_end(e as i32).unwrap().unwrap();
        assert_eq!((floor, end), (e as i32, *at), "epoch {e}");
    }
    // By timestamp: the data batch written at 1000 + i, never a hidden one.
    for (i, k) in kinds.iter().enumerate() {
        if let Kind::Data(_) = k {
            let (offset, b) = log.offset_for_timestamp(1_000 + i as i64).unwrap().unwrap();
            assert_eq!(offset, bases[i]);
            assert!(!BatchHeader::parse(&b).unwrap().is_hidden());
        }
    }
}

#[test]
fn a_hidden_batch_is_refused_unless_control() {
    let mut b = data(1, 1);
    b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(BatchHeader::parse(&b).is_err());
    let mut c = hidden(1);
    c[23..27].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(BatchHeader::parse(&c).is_err());
}
