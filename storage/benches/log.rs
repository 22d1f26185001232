//! Storage micro-benchmarks: append (16 KiB and 1 MiB batches, into the page
//! cache), sequential read, and offset lookups.
//!
//! Run: `cargo bench -p sluice-storage --bench log`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_storage::batch::build_simple;
use sluice_storage::index::OffsetIndex;
use sluice_storage::{AppendOptions, Log, LogConfig, SystemClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.measurement_time(Duration::from_secs(5));
    for (name, records, value) in [("16KiB", 16, 1000), ("1MiB", 64, 16 * 1024)] {
        let batch = build_simple(records, value, 0);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append(&batch, &AppendOptions::default()).unwrap());
                }
                let took = start.elapsed();
                // Keep the data set bounded: old segments go, outside the timing.
                let end = log.log_end_offset();
                log.delete_segments_below(end).unwrap();
                took
            })
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), Arc::new(SystemClock)).unwrap();
    let batch = build_simple(64, 16 * 1024, 0);
    for _ in 0..512 {
        log.append(&batch, &AppendOptions::default()).unwrap();
    }
    log.flush().unwrap();
    let total: u64 = log.segments().iter().map(|s| s.size_bytes).sum();
    g.throughput(Throughput::Bytes(total));
    // Every byte is copied out once, as the write to a socket would: this is the
    // cost a fetch pays, not just the (free) slicing of the map.
    let mut sink = vec![0u8; 2 << 20];
    g.bench_function("sequential_1MiB_reads_copied_out", |b| {
        b.iter(|| {
            let mut offset = 0;
            let mut bytes = 0usize;
            while offset < log.log_end_offset() {
                let r = log.read(offset, 1 << 20).unwrap();
                sink[..r.records.len()].copy_from_slice(&r.records);
                bytes += r.records.len();
                offset += 64 * (r.records.len() / batch.len()).max(1) as i64;
            }
            black_box(&sink);
            bytes
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    let dir = tempfile::tempdir().unwrap();
    let mut idx = OffsetIndex::new(0, 10 << 20);
    let n = (10 << 20) / 8;
    for i in 0..n {
        idx.append(i as i64 * 10, (i * 4096) as u32);
    }
    let mut k = 0i64;
    g.bench_function("offset_index_1.3M_entries", |b| {
        b.iter(|| {
            k = (k + 7_919_993) % (n as i64 * 10);
            black_box(idx.lookup(k))
        })
    });
    let mut log = Log::open(
        dir.path().join("log").as_path(),
        config(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let small = build_simple(10, 100, 0);
    for _ in 0..100_000 {
        log.append(&small, &AppendOptions::default()).unwrap();
    }
    let end = log.log_end_offset();
    g.bench_function("log_read_at_random_offset", |b| {
        b.iter(|| {
            k = (k + 7_919_993) % end;
            black_box(log.read(k, 1).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, append, read, lookup);
criterion_main!(benches);
