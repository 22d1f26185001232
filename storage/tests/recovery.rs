//! Crash recovery: damage the tail of a log every way a crash or a bad disk can,
//! reopen it, and check that it is a valid prefix holding every batch before the
//! damage.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::{AppendOptions, BatchHeader, Log, LogConfig, SystemClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn batch_for(i: usize) -> Vec<u8> {
    let value = format!("value-{i}-{}", "x".repeat(i % 7));
    let key = format!("key-{i}");
    batch::build(
        &[
            RecordSpec {
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                timestamp: 1000 + i as i64,
            },
            RecordSpec {
                key: None,
                value: Some(b"second"),
                timestamp: 1001 + i as i64,
            },
        ],
        BuildOptions::default(),
    )
}

/// Writes `n` batches, flushes, and drops the log without closing it (a crash
/// after the data reached the disk). Returns the original batches.
fn write_log(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let mut log = Log::open(dir, config(), Arc::new(SystemClock)).unwrap();
    let batches: Vec<Vec<u8>> = (0..n).map(batch_for).collect();
    for b in &batches {
        log.append(b, &AppendOptions::default()).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    batches
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    with_extension(dir, "log").pop().unwrap()
}

/// Reopens `dir` and checks it holds exactly `originals[..keep]`, byte for byte
/// apart from the broker-owned prefix, and that it takes new appends.
fn assert_valid_prefix(dir: &Path, originals: &[Vec<u8>], keep: usize, what: &str) {
    let mut log = Log::open(dir, config(), Arc::new(SystemClock)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        2 * keep as i64,
        "{what}: log end offset"
    );
    assert_eq!(log.last_entry_index(), keep as u64, "{what}: entries");
    let mut offset = 0;
    let mut seen = 0;
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20).unwrap();
        let mut rest = &read.records[..];
        assert!(!rest.is_empty(), "{what}: empty read at {offset}");
        while !rest.is_empty() {
            let h = BatchHeader::parse(rest).unwrap();
            let b = &rest[..h.total_size()];
            h.validate_crc(b).unwrap();
            assert_eq!(h.base_offset, 2 * seen as i64, "{what}: offsets");
            assert_eq!(
                &b[16..],
                &originals[seen][16..],
                "{what}: batch {seen} bytes"
            );
            seen += 1;
            offset = h.next_offset();
            rest = &rest[h.total_size()..];
        }
    }
    assert_eq!(seen, keep, "{what}: batches read");
    let info = log
        .append(&batch_for(999), &AppendOptions::default())
        .unwrap();
    assert_eq!(
        info.first_offset,
        2 * keep as i64,
        "{what}: append after recovery"
    );
    log.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn cut_at_every_byte_of_the_final_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let originals = write_log(&pristine, 12);
    let seg = last_segment(&pristine);
    let len = std::fs::metadata(&seg).unwrap().len();
    let last = originals.last().unwrap().len() as u64;
    assert!(len >= last);
    for cut in (len - last)..len {
        let work = tmp.path().join(format!("cut-{cut}"));
        copy_dir(&pristine, &work);
        let f = OpenOptions::new()
            .write(true)
            .open(work.join(seg.file_name().unwrap()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        assert_valid_prefix(
            &work,
            &originals,
            originals.len() - 1,
            &format!("cut at {cut}"),
        );
        std::fs::remove_dir_all(&work).unwrap();
    }
}

#[test]
fn flip_every_checked_byte_of_the_final_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let originals = write_log(&pristine, 12);
    let seg = last_segment(&pristine);
    let len = std::fs::metadata(&seg).unwrap().len();
    let start = len - originals.last().unwrap().len() as u64;
    // Bytes 8..12 (length) and 16.. (magic, CRC, everything it covers). The base
    // offset and leader epoch sit outside the CRC by the format's design.
    let positions = (start + 8..start + 12).chain(start + 16..len);
    for pos in positions {
        let work = tmp.path().join(format!("flip-{pos}"));
        copy_dir(&pristine, &work);
        let path = work.join(seg.file_name().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[pos as usize] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        assert_valid_prefix(
            &work,
            &originals,
            originals.len() - 1,
            &format!("flip at {pos}"),
        );
        std::fs::remove_dir_all(&work).unwrap();
    }
}

#[test]
fn damage_in_a_middle_segment_drops_everything_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let originals = write_log(&dir, 30);
    // Forget the recovery point so every segment is re-validated.
    std::fs::remove_file(dir.join("recovery-point")).unwrap();
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3, "the test needs several segments");
    let second = &logs[1];
    let mut bytes = std::fs::read(second).unwrap();
    let h = BatchHeader::parse(&bytes).unwrap();
    bytes[40] ^= 1;
    std::fs::write(second, &bytes).unwrap();
    // Everything from the damaged batch on is gone; offsets stay dense.
    assert_valid_prefix(
        &dir,
        &originals,
        (h.base_offset / 2) as usize,
        "middle damage",
    );
}

#[test]
fn a_clean_close_skips_validation_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut log = Log::open(&dir, config(), Arc::new(SystemClock)).unwrap();
    let originals: Vec<Vec<u8>> = (0..8).map(batch_for).collect();
    for b in &originals {
        log.append(b, &AppendOptions::default()).unwrap();
    }
    log.close().unwrap();
    assert!(dir.join("clean-shutdown").exists());
    drop(log);
    assert_valid_prefix(&dir, &originals, 8, "clean reopen");
}

/// Resident pages of this process's mappings of `path` (from /proc/self/smaps).
fn mapped_resident_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_string_lossy();
    let mut total = 0;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            inside = line.ends_with(&*name);
        } else if inside && first == "Rss:" {
            total += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

#[test]
fn opening_a_log_leaves_its_pages_unmapped() {
    // Startup walks every batch header; done through the map, it would pin
    // the whole log in memory and keep the page cache from dropping it.
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 300);
    // First after a crash (validating), then after a clean close.
    for clean in [false, true] {
        let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
        let mut headers = 0;
        log.for_each_header(0, |_| headers += 1).unwrap();
        assert_eq!(headers, 300);
        let segments = log.segments();
        assert!(segments.len() > 3);
        let first = dir
            .path()
            .join(format!("{:020}.log", segments[0].base_offset));
        assert_eq!(mapped_resident_kib(&first), 0, "clean={clean}");
        // A read does map it: the check can see mapped pages.
        log.read(0, 100).unwrap();
        assert!(mapped_resident_kib(&first) > 0);
        log.close().unwrap();
    }
}

#[test]
fn a_reset_log_starts_over_at_the_given_offset_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    assert!(log.segments().len() > 3);
    let end = log.log_end_offset();
    log.reset(end + 100, 77).unwrap();
    let check = |log: &Log| {
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (end + 100, end + 100)
        );
        assert_eq!((log.first_entry_index(), log.last_entry_index()), (77, 76));
        assert!(log.read(end + 100, 1000).unwrap().records.is_empty());
        assert!(log.read(0, 1000).is_err(), "nothing below the new start");
    };
    check(&log);
    drop(log);
    let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    check(&log);
    let info = log
        .append(&batch_for(1), &AppendOptions::default())
        .unwrap();
    assert_eq!((info.first_offset, info.entry_index), (end + 100, 77));
    let files = files_with_extension(dir.path(), "log");
    assert_eq!(files, 1, "every old segment is gone");
}

#[test]
fn end_offsets_of_leader_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    assert_eq!(log.latest_epoch().unwrap(), -1);
    assert_eq!(log.epoch_end(0).unwrap(), None);
    // Epoch 2 for offsets 0..6, epoch 5 for 6..12, epoch 6 from 12 (2 records a batch),
    // across several segments.
    for (i, epoch) in [2, 2, 2, 5, 5, 5, 6, 6].into_iter().enumerate() {
        let opts = AppendOptions {
            leader_epoch: epoch,
            ..AppendOptions::default()
        };
        log.append(&batch_for(i), &opts).unwrap();
    }
    assert!(log.segments().len() > 1);
    assert_eq!(log.latest_epoch().unwrap(), 6);
    assert_eq!(
        log.epoch_end(1).unwrap(),
        Some((-1, 0)),
        "before the first epoch"
    );
    assert_eq!(log.epoch_end(2).unwrap(), Some((2, 6)));
    assert_eq!(
        log.epoch_end(3).unwrap(),
        Some((2, 6)),
        "an epoch with no batch"
    );
    assert_eq!(log.epoch_end(5).unwrap(), Some((5, 12)));
    assert_eq!(
        log.epoch_end(6).unwrap(),
        None,
        "the latest epoch ends at the log end"
    );
    assert_eq!(log.epoch_end(9).unwrap(), None);
}

/// Writes `n` batches and closes the log cleanly (every segment but the last
/// sealed, with its summary). Returns the original batches.
fn write_closed_log(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let mut log = Log::open(dir, config(), Arc::new(SystemClock)).unwrap();
    let batches: Vec<Vec<u8>> = (0..n).map(batch_for).collect();
    for b in &batches {
        log.append(b, &AppendOptions::default()).unwrap();
    }
    log.close().unwrap();
    batches
}

/// The files of `dir` named `*.{ext}`, in order.
fn with_extension(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    s.sort();
    s
}

fn files_with_extension(dir: &Path, ext: &str) -> usize {
    with_extension(dir, ext).len()
}

fn summaries(dir: &Path) -> Vec<std::path::PathBuf> {
    with_extension(dir, "sealed")
}

/// The max timestamps of the segments, as the opened log reports them.
fn segment_max_timestamps(dir: &Path) -> Vec<i64> {
    let mut log = Log::open(dir, config(), Arc::new(SystemClock)).unwrap();
    let ts = log.segments().iter().map(|s| s.max_timestamp).collect();
    log.close().unwrap();
    ts
}

#[test]
fn sealed_segments_open_from_their_summaries_with_the_same_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let originals = write_closed_log(&dir, 40);
    let segments = files_with_extension(&dir, "log");
    assert!(segments > 3, "several segments: {segments}");
    // Every sealed segment has one; the active one has none.
    let sealed = summaries(&dir);
    assert_eq!(sealed.len(), segments - 1);
    let before = segment_max_timestamps(&dir);

    // The summary is what the open uses: a summary that says otherwise
    // (and still checks out against the file) shows through.
    let first = &sealed[0];
    let mut s = sluice_storage::sealed::read(first).unwrap();
    s.max_timestamp += 1_000_000;
    sluice_storage::sealed::write(first, &s).unwrap();
    let after = segment_max_timestamps(&dir);
    assert_eq!(after[0], before[0] + 1_000_000);
    assert_eq!(after[1..], before[1..]);

    // One that does not match the file is ignored, and the walk writes a
    // correct one back once the segment is sealed again.
    s.log_size += 1;
    sluice_storage::sealed::write(first, &s).unwrap();
    assert_eq!(segment_max_timestamps(&dir), before);
    let rewritten = sluice_storage::sealed::read(first).unwrap();
    assert_eq!(rewritten.max_timestamp, before[0]);

    // A damaged one likewise.
    let mut bytes = std::fs::read(&sealed[1]).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&sealed[1], &bytes).unwrap();
    assert_eq!(segment_max_timestamps(&dir), before);

    // A log file written after its summary (its modification time moved:
    // what any program writing to it does) is walked, whatever the summary
    // says.
    let mut s = sluice_storage::sealed::read(first).unwrap();
    s.max_timestamp += 1_000_000;
    sluice_storage::sealed::write(first, &s).unwrap();
    let log0 = with_extension(&dir, "log").remove(0);
    let modified = std::fs::metadata(&log0).unwrap().modified().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log0)
        .unwrap()
        .set_modified(modified + std::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(segment_max_timestamps(&dir), before);

    // Reads through the summaries' positions and indexes return every batch.
    assert_valid_prefix(&dir, &originals, 40, "opened from summaries");
}

#[test]
fn truncating_into_a_sealed_segment_removes_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let originals = write_closed_log(&dir, 40);
    let sealed = summaries(&dir);
    assert!(sealed.len() >= 2);
    let mut log = Log::open(&dir, config(), Arc::new(SystemClock)).unwrap();
    // The second batch of the second segment: inside a sealed segment.
    let base = log.segments()[1].base_offset;
    log.truncate_to(base + 2).unwrap();
    assert!(!sealed[1].exists(), "the cut segment's summary is gone");
    assert!(sealed[0].exists(), "the one before is untouched");
    let keep = (base / 2 + 1) as usize;
    // Appends make it a longer segment again; then a crash (no close).
    for b in &originals[keep..keep + 3] {
        log.append(b, &AppendOptions::default()).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    assert_valid_prefix(&dir, &originals, keep + 3, "after truncation and appends");
}
