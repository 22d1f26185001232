//! Durability (group commit, interval flush, injected I/O faults) and time-based
//! rolling with an injected clock.

use std::sync::Arc;

use sluice_storage::batch::build_simple;
use sluice_storage::fs::{FaultyFs, RealFs};
use sluice_storage::{
    AppendOptions, GroupSync, Log, LogConfig, ManualClock, SyncMethod, SystemClock,
};

fn append(log: &mut Log, n: usize) {
    for _ in 0..n {
        log.append(&build_simple(2, 50, 1), &AppendOptions::default())
            .unwrap();
    }
}

#[test]
fn one_sync_point_covers_every_append_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), Arc::new(SystemClock)).unwrap();
    append(&mut log, 100);
    assert_eq!(log.durable_offset(), 0);
    let point = log.sync_point().unwrap();
    // Appends made while the sync runs are not covered by it...
    append(&mut log, 5);
    let durable = point.sync().unwrap();
    assert_eq!(durable, 200, "one fsync made 100 appends durable");
    log.mark_durable(durable);
    assert_eq!(log.durable_offset(), 200);
    // ...but by the next one.
    let next = log.sync_point().unwrap().sync().unwrap();
    log.mark_durable(next);
    assert_eq!(log.durable_offset(), 210);
}

#[test]
fn interval_flush_by_count_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let config = LogConfig {
        flush_interval_messages: Some(20),
        flush_interval_ms: Some(500),
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, clock.clone()).unwrap();
    append(&mut log, 9);
    assert!(!log.maybe_flush().unwrap(), "18 records");
    assert_eq!(log.flush_deadline_ms(), Some(1_500));
    append(&mut log, 1);
    assert!(
        log.maybe_flush().unwrap(),
        "20 records (in 10 batches) reach flush.messages"
    );
    assert_eq!(log.flush_deadline_ms(), None, "nothing unflushed");
    assert_eq!(log.durable_offset(), 20);
    append(&mut log, 1);
    clock.advance(499);
    assert!(!log.maybe_flush().unwrap());
    clock.advance(1);
    assert!(log.maybe_flush().unwrap(), "flush.ms elapsed");
    assert_eq!(log.durable_offset(), 22);
}

#[test]
fn segment_ms_rolls_by_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, clock.clone()).unwrap();
    append(&mut log, 3);
    clock.advance(999);
    append(&mut log, 1);
    assert_eq!(log.segments().len(), 1);
    clock.advance(1);
    append(&mut log, 1);
    let segs = log.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[1].base_offset, 8);
}

#[test]
fn segment_bytes_rolls_and_retention_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1_000,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, Arc::new(SystemClock)).unwrap();
    append(&mut log, 40);
    let segs = log.segments();
    assert!(segs.len() > 3);
    assert!(segs.iter().all(|s| s.size_bytes <= 1_000));
    // Deleting below an offset inside the third segment removes the first two.
    let target = segs[2].base_offset + 1;
    assert_eq!(log.delete_segments_below(target).unwrap(), 2);
    assert_eq!(log.log_start_offset(), segs[2].base_offset);
    assert!(
        log.read(0, 100).is_err(),
        "offsets below the log start are out of range"
    );
    // The active segment is never deleted.
    let end = log.log_end_offset();
    log.delete_segments_below(end).unwrap();
    assert_eq!(log.segments().len(), 1);
    // DeleteRecords may point inside a segment, and it survives a restart.
    append(&mut log, 2);
    log.set_log_start_offset(end + 1).unwrap();
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default(), Arc::new(SystemClock)).unwrap();
    assert_eq!(log.log_start_offset(), end + 1);
}

#[test]
fn a_failed_write_is_reported_and_recovery_keeps_a_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::default());
    let mut log = Log::open_with_fs(
        dir.path(),
        LogConfig::default(),
        Arc::new(SystemClock),
        fs.clone(),
    )
    .unwrap();
    append(&mut log, 5);
    log.flush().unwrap();
    fs.fail_writes_after(30);
    let err = log.append(&build_simple(2, 50, 1), &AppendOptions::default());
    assert!(err.is_err(), "a torn write must be an error");
    drop(log);
    // The torn batch is gone after recovery; everything before it is there.
    let mut log = Log::open_with_fs(
        dir.path(),
        LogConfig::default(),
        Arc::new(SystemClock),
        Arc::new(RealFs),
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 10);
    append(&mut log, 1);
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn a_failed_fsync_does_not_advance_the_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::default());
    let mut log = Log::open_with_fs(
        dir.path(),
        LogConfig::default(),
        Arc::new(SystemClock),
        fs.clone(),
    )
    .unwrap();
    append(&mut log, 3);
    fs.fail_syncs(true);
    assert!(log.flush().is_err());
    assert_eq!(log.durable_offset(), 0);
    fs.fail_syncs(false);
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), 6);
}

#[test]
fn one_group_sync_covers_the_logs_of_many_partitions() {
    let data = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::default());
    let mut logs: Vec<Log> = (0..3)
        .map(|i| {
            Log::open_with_fs(
                &data.path().join(format!("t-{i}")),
                LogConfig::default(),
                Arc::new(SystemClock),
                fs.clone(),
            )
            .unwrap()
        })
        .collect();
    for (i, log) in logs.iter_mut().enumerate() {
        append(log, i + 1);
    }
    for method in [SyncMethod::Auto, SyncMethod::PerFile] {
        let mut group = GroupSync::new(method);
        let points = logs.iter().map(|l| l.sync_point().unwrap()).collect();
        let synced: Vec<i64> = group.sync(points).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(synced, [2, 4, 6], "{method:?}: each log's end, in order");
    }
    // A failed round reports the failure to every log it covered.
    fs.fail_syncs(true);
    for method in [SyncMethod::Auto, SyncMethod::PerFile] {
        let points = logs.iter().map(|l| l.sync_point().unwrap()).collect();
        let results = GroupSync::new(method).sync(points);
        assert!(
            results.iter().all(|r| r.is_err()),
            "{method:?}: {results:?}"
        );
    }
    // A log with nothing new to sync adds nothing to a round.
    fs.fail_syncs(false);
    let log = &mut logs[0];
    log.flush().unwrap();
    let point = log.sync_point().unwrap();
    assert!(point.is_empty());
    assert_eq!(
        GroupSync::new(SyncMethod::Auto)
            .sync(vec![point])
            .pop()
            .unwrap()
            .unwrap(),
        2
    );
}

#[test]
fn index_files_are_written_when_a_segment_is_sealed_and_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), Arc::new(SystemClock)).unwrap();
    append(&mut log, 20);
    let len = |name: &str| std::fs::metadata(dir.path().join(name)).map(|m| m.len());
    let first = "00000000000000000000";
    assert!(
        len(&format!("{first}.index")).is_err(),
        "not before sealing"
    );
    log.roll().unwrap();
    let index = len(&format!("{first}.index")).unwrap();
    let time = len(&format!("{first}.timeindex")).unwrap();
    assert!(index > 0 && index % 8 == 0, "{index} bytes of offset index");
    assert!(time > 0 && time % 12 == 0, "{time} bytes of time index");
    append(&mut log, 20);
    log.close().unwrap();
    assert!(len("00000000000000000040.index").unwrap() > 0);
    // Reopened, the indexes are rebuilt from the log: lookups still land.
    drop(log);
    let log = Log::open(dir.path(), config, Arc::new(SystemClock)).unwrap();
    for offset in [0, 17, 39, 40, 79] {
        let r = log.read(offset, 1).unwrap();
        let h = sluice_storage::BatchHeader::parse(&r.records).unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}
