//! Log cleaner throughput and memory: `cargo bench --bench cleaner`.
//!
//! Each workload writes a partition log of keyed updates into a temporary
//! folder, then times one full cleaner pass the way the broker runs it: plan,
//! read the dirty part into the key map, rewrite the sealed segments, and swap
//! each merged group in (written and fsynced). It reports the log size before
//! and after, MB/s of log cleaned, the key map's size, and the peak of heap
//! memory allocated during the pass (counted by this binary's allocator;
//! segments are read through their memory maps, which are not heap).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice::cleaner::{self, CompactionPolicy};
use sluice_storage::{AppendOptions, Log, LogConfig, SystemClock};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Workload {
    name: &'static str,
    updates: usize,
    keys: usize,
    value_size: usize,
    compression: Compression,
    map_memory: u64,
}

const BATCH: usize = 100;
const SEGMENT_BYTES: u64 = 64 << 20;

fn write_log(dir: &std::path::Path, w: &Workload) -> Log {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir, config, Arc::new(SystemClock)).expect("open log");
    let value = Bytes::from(vec![b'v'; w.value_size]);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = BytesMut::new();
    for start in (0..w.updates).step_by(BATCH) {
        let records: Vec<Record> = (start..(start + BATCH).min(w.updates))
            .map(|i| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: (i - start) as i64,
                    // The encoder starts a new batch where offset - sequence
                    // changes; one batch per 100 records is wanted.
                    sequence: (i - start) as i32,
                    timestamp: 1_000 + i as i64,
                    key: Some(Bytes::from(format!("key-{:08}", rng % w.keys as u64))),
                    value: Some(value.clone()),
                    headers: Default::default(),
                }
            })
            .collect();
        out.clear();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: w.compression,
            },
        )
        .expect("encode");
        log.append(&out, &AppendOptions::default()).expect("append");
    }
    log.roll().expect("roll");
    log.flush().expect("flush");
    log
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks workloads.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let workloads = [
        Workload {
            name: "1M updates of 10k keys, 100 B, uncompressed",
            updates: 1_000_000,
            keys: 10_000,
            value_size: 100,
            compression: Compression::None,
            map_memory: 128 << 20,
        },
        Workload {
            name: "1M updates of 10k keys, 100 B, lz4",
            updates: 1_000_000,
            keys: 10_000,
            value_size: 100,
            compression: Compression::Lz4,
            map_memory: 128 << 20,
        },
        Workload {
            name: "200k updates of 1 KiB, 1k keys, uncompressed",
            updates: 200_000,
            keys: 1_000,
            value_size: 1024,
            compression: Compression::None,
            map_memory: 128 << 20,
        },
        Workload {
            name: "1M distinct keys, 100 B, 8 MiB map (passes until clean)",
            updates: 1_000_000,
            keys: 1 << 40,
            value_size: 100,
            compression: Compression::None,
            map_memory: 8 << 20,
        },
    ];
    let policy = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: 0,
        segment_bytes: SEGMENT_BYTES,
    };
    println!(
        "| workload | log MB | after MB | passes | seconds | MB/s cleaned | M records/s | map MiB | peak heap MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for w in workloads
        .iter()
        .filter(|w| filter.as_ref().is_none_or(|f| w.name.contains(f.as_str())))
    {
        let dir = tempfile::tempdir().expect("tempdir");
        eprint!("{}: writing the log…\r", w.name);
        let mut log = write_log(dir.path(), w);
        let before: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = Instant::now();
        let mut passes = 0;
        let mut map_bytes = 0;
        let mut bytes_cleaned = 0u64;
        let mut records = 0u64;
        loop {
            let sealed = log.sealed_segments().unwrap();
            let stats: Vec<_> = sealed.iter().map(cleaner::segment_stat).collect();
            let first_dirty = log.first_dirty_offset();
            let hw = log.log_end_offset();
            let Some(end) = cleaner::plan(&stats, first_dirty, hw, &policy, i64::MAX / 2) else {
                break;
            };
            let out = cleaner::clean(
                &sealed,
                (first_dirty, end),
                &policy,
                w.map_memory,
                10_000,
                hw,
            )
            .expect("clean");
            drop(sealed);
            for g in &out.groups {
                log.replace_segments(std::slice::from_ref(g), first_dirty)
                    .expect("swap");
            }
            log.replace_segments(&[], out.first_dirty)
                .expect("checkpoint");
            passes += 1;
            map_bytes = map_bytes.max(out.stats.map_bytes);
            bytes_cleaned += out.stats.bytes_before;
            records += out.stats.records_read;
            eprint!(
                "{}: pass {passes} cleaned up to offset {}…\r",
                w.name, out.first_dirty
            );
        }
        let secs = started.elapsed().as_secs_f64();
        let after: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
        let mb = |b: u64| b as f64 / 1e6;
        eprint!("\r\x1b[2K");
        println!(
            "| {} | {:.1} | {:.1} | {passes} | {secs:.2} | {:.0} | {:.2} | {:.1} | {:.1} |",
            w.name,
            mb(before),
            mb(after),
            mb(bytes_cleaned) / secs,
            records as f64 / secs / 1e6,
            map_bytes as f64 / (1 << 20) as f64,
            PEAK.load(Ordering::Relaxed).saturating_sub(base) as f64 / (1 << 20) as f64,
        );
    }
}
