//! What the Raft integration tests share: loopback listeners for three
//! nodes, a tick, a record batch per test value, and waiting on a condition.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_storage::batch::{self, BuildOptions, RecordSpec};
use tokio::net::TcpListener;

pub const TICK: Duration = Duration::from_millis(20);

/// Three internal listeners on free loopback ports, and the peer map naming
/// them.
pub async fn bind_three() -> (HashMap<u64, TcpListener>, HashMap<u64, SocketAddr>) {
    let mut listeners = HashMap::new();
    let mut peers = HashMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap());
        listeners.insert(id, l);
    }
    (listeners, peers)
}

pub fn payload(i: usize) -> Vec<u8> {
    let v = format!("order-{i}");
    batch::build(
        &[RecordSpec {
            key: Some(b"k"),
            value: Some(v.as_bytes()),
            timestamp: i as i64,
        }],
        BuildOptions::default(),
    )
}

pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
