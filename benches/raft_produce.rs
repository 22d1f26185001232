//! Replicated appends through the Raft core: `cargo bench --bench raft_produce`.
//!
//! One partition, batches of 64 records of 1 KiB (as a producer with a 64 KiB
//! batch size sends), 100,000 records in all, proposed to the leader as fast
//! as it takes them. Replication factor 3 runs three nodes in this process on
//! loopback (the replica core, the host thread and the TCP transport of
//! `src/replication/`); replication factor 1 runs one. The clock stops when
//! the leader's high watermark (commit point: every batch fsynced on a
//! majority) reaches the end. The three nodes share this machine's two cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::replication::host::Host;
use sluice::replication::replica::{Replica, Timing};
use sluice::replication::store::ReplicaStore;
use sluice::replication::transport::{self, Sender};
use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use sluice_storage::{LogConfig, SystemClock};

const RECORDS: usize = 100_000;
const PER_BATCH: usize = 64;
const VALUE: usize = 1024;
const GROUP: &str = "bench-0";

fn make_batch() -> Vec<u8> {
    let value = vec![b'v'; VALUE];
    let specs: Vec<RecordSpec<'_>> = (0..PER_BATCH)
        .map(|_| RecordSpec {
            key: None,
            value: Some(&value),
            timestamp: 0,
        })
        .collect();
    batch::build(&specs, BuildOptions::default())
}

async fn run(replicas: u64) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters: Vec<u64> = (1..=replicas).collect();
    let mut listeners = HashMap::new();
    let mut peers = HashMap::new();
    for &id in &voters {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        peers.insert(id, l.local_addr().expect("addr"));
        listeners.insert(id, l);
    }
    let mut hosts = HashMap::new();
    for &id in &voters {
        let store = ReplicaStore::open(
            &dir.path().join(id.to_string()),
            LogConfig::default(),
            Arc::new(SystemClock),
            &voters,
            true,
        )
        .expect("store");
        let replica = Replica::new(id, store, Timing::default()).expect("replica");
        let host = Host::start(
            HashMap::from([(GROUP.to_owned(), replica)]),
            Sender::start(id, &peers),
            Duration::from_millis(100),
        );
        tokio::spawn(transport::serve(
            listeners.remove(&id).expect("listener"),
            host.deliver(),
        ));
        hosts.insert(id, host);
    }
    let leader = loop {
        if let Some((&id, _)) = hosts
            .iter()
            .find(|(_, h)| h.status(GROUP).is_some_and(|s| s.is_leader))
        {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the leader's own first entry commit before timing.
    while hosts[&leader].status(GROUP).map_or(0, |s| s.high_watermark) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let batch = make_batch();
    let batches = RECORDS / PER_BATCH;
    let target = 1 + (batches * PER_BATCH) as i64;
    let started = Instant::now();
    for _ in 0..batches {
        hosts[&leader]
            .propose(GROUP, batch.clone())
            .expect("the leader takes the proposal");
    }
    let mut last_print = Instant::now();
    loop {
        let hw = hosts[&leader].status(GROUP).map_or(0, |s| s.high_watermark);
        if hw >= target {
            break;
        }
        if last_print.elapsed() > Duration::from_millis(500) {
            eprint!("\rreplication factor {replicas}: {hw} of {target} committed");
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "commits stalled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    eprint!("\r\x1b[2K");
    for (_, h) in hosts {
        h.stop();
    }
    (secs, batch.len() * batches)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| replication factor | records | seconds | records/s | MB/s committed |");
    println!("|---|---|---|---|---|");
    for rf in [1, 3] {
        let (secs, bytes) = rt.block_on(run(rf));
        let records = (RECORDS / PER_BATCH) * PER_BATCH;
        println!(
            "| {rf} | {records} | {secs:.2} | {:.0} | {:.1} |",
            records as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
}
