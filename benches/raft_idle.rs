//! What idle partitions cost: `cargo bench --bench raft_idle [-- GROUPS]
//! [--awake]`.
//!
//! Three nodes in this process, each holding a replica of every one of
//! GROUPS (default 1,000) partitions, replication factor 3, talking over the
//! real transport on loopback with a 100 ms tick. Once every group has a
//! leader, nothing is produced for 10 seconds, and the process's CPU time over
//! that window is reported (user + system, from getrusage), with the
//! messages and frames the transport sent. The three nodes share this
//! process, so per node it is a third of the total. Groups may go quiet
//! when idle, as a broker's partitions do; `--awake` keeps them ticking and
//! heartbeating, as every group did before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::replication::host::Host;
use sluice::replication::replica::{Replica, Timing};
use sluice::replication::store::ReplicaStore;
use sluice::replication::transport::{self, Sender};
use sluice_storage::{LogConfig, SystemClock};
use std::sync::atomic::Ordering;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let groups: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let awake = std::env::args().any(|a| a == "--awake");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_bytes: 1 << 20,
            max_index_bytes: 64 << 10,
            ..LogConfig::default()
        };
        let mut listeners = HashMap::new();
        let mut peers = HashMap::new();
        for id in 1..=3u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            peers.insert(id, l.local_addr().expect("addr"));
            listeners.insert(id, l);
        }
        eprintln!("opening {groups} partitions x 3 replicas…");
        let mut hosts = Vec::new();
        let mut senders = Vec::new();
        for id in 1..=3u64 {
            let mut replicas = HashMap::new();
            for g in 0..groups {
                let name = format!("idle-{g}");
                let store = ReplicaStore::open(
                    &dir.path().join(id.to_string()).join(&name),
                    config.clone(),
                    Arc::new(SystemClock),
                    &[1, 2, 3],
                    true,
                )
                .expect("open replica");
                let mut replica = Replica::new(id, store, Timing::default()).expect("replica");
                // Preferred leaders rotate over the nodes, as `assign` makes them.
                replica.set_preferred_leader(Some(1 + g as u64 % 3));
                if !awake {
                    replica.allow_quiesce();
                }
                replicas.insert(name, replica);
            }
            let sender = Sender::start(id, &peers);
            senders.push(sender.clone());
            let host = Host::start(replicas, sender, Duration::from_millis(100));
            tokio::spawn(transport::serve(
                listeners.remove(&id).expect("listener"),
                host.deliver(),
            ));
            hosts.push(host);
        }
        let started = Instant::now();
        loop {
            let led = (0..groups)
                .filter(|g| {
                    let name = format!("idle-{g}");
                    hosts
                        .iter()
                        .filter(|h| h.status(&name).is_some_and(|s| s.is_leader))
                        .count()
                        == 1
                })
                .count();
            eprint!("\r{led}/{groups} groups have a leader after {:.1} s", started.elapsed().as_secs_f64());
            if led == groups {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "elections did not finish");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let leaders_per_node = |hosts: &[Host]| {
            let mut per_node = [0usize; 3];
            for g in 0..groups {
                let name = format!("idle-{g}");
                for (i, h) in hosts.iter().enumerate() {
                    if h.status(&name).is_some_and(|s| s.is_leader) {
                        per_node[i] += 1;
                    }
                }
            }
            per_node
        };
        let per_node = leaders_per_node(&hosts);
        eprintln!("\nleaders per node right after the elections: {per_node:?}");
        // Let the hand-overs to preferred leaders and the elections' traffic
        // settle first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let per_node = leaders_per_node(&hosts);
        let quiet: Vec<usize> = hosts.iter().map(|h| h.quiet_groups()).collect();
        eprintln!(
            "leaders per node after hand-overs: {per_node:?}; quiet groups per node: {quiet:?}; idle for 10 s…"
        );
        let count = |f: fn(&transport::Counters) -> u64| -> u64 {
            senders.iter().map(|s| f(&s.counters)).sum()
        };
        let (m0, f0) = (
            count(|c| c.messages.load(Ordering::Relaxed)),
            count(|c| c.frames.load(Ordering::Relaxed)),
        );
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let msgs = count(|c| c.messages.load(Ordering::Relaxed)) - m0;
        let frames = count(|c| c.frames.load(Ordering::Relaxed)) - f0;
        let quiet: usize = hosts.iter().map(|h| h.quiet_groups()).sum();
        println!("| groups | replicas | leaders per node | replicas quiet | CPU, 3 nodes | CPU per node | raft msgs/s | frames/s | msgs per frame |");
        println!("|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {groups} | {} | {per_node:?} | {quiet} | {:.1} % of one core | {:.1} % | {:.0} | {:.0} | {:.1} |",
            groups * 3,
            cpu / secs * 100.0,
            cpu / secs * 100.0 / 3.0,
            msgs as f64 / secs,
            frames as f64 / secs,
            msgs as f64 / frames.max(1) as f64,
        );
        for h in hosts {
            h.stop();
        }
    });
}
