//! Idle groups go quiet: their leaders stop heartbeating and their followers
//! stop counting towards an election, so a node's idle cost no longer grows
//! with its groups. A quiet group still elects a new leader when its
//! leader's node goes (the other nodes stop hearing its pings), takes writes
//! on the survivors, and the node that comes back catches up on every group.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice::replication::host::Host;
use sluice::replication::replica::{Replica, Timing};
use sluice::replication::store::ReplicaStore;
use sluice::replication::transport::{self, Sender};
use sluice_storage::{LogConfig, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod raft_nodes;
use raft_nodes::{TICK, bind_three, payload, wait_for};

const GROUPS: u64 = 24;

fn name(g: u64) -> String {
    format!("quiet-{g}")
}

struct QuietNode {
    host: Host,
    server: JoinHandle<()>,
    sent: Arc<transport::Counters>,
}

/// A node holding every group, each preferring a different leader.
fn start(id: u64, root: &Path, peers: &HashMap<u64, SocketAddr>, l: TcpListener) -> QuietNode {
    let sender = Sender::start(id, peers);
    let sent = sender.counters.clone();
    let mut replicas = HashMap::new();
    for g in 0..GROUPS {
        let store = ReplicaStore::open(
            &root.join(id.to_string()).join(name(g)),
            LogConfig::default(),
            Arc::new(SystemClock),
            &[1, 2, 3],
            true,
        )
        .unwrap();
        let mut r = Replica::new(id, store, Timing::default()).unwrap();
        r.set_preferred_leader(Some(g % 3 + 1));
        r.allow_quiesce();
        replicas.insert(name(g), r);
    }
    let host = Host::start(replicas, sender, TICK);
    let server = tokio::spawn(transport::serve(l, host.deliver()));
    QuietNode { host, server, sent }
}

fn leader(nodes: &HashMap<u64, QuietNode>, g: u64) -> Option<u64> {
    let leaders: Vec<u64> = nodes
        .iter()
        .filter(|(_, n)| n.host.status(&name(g)).is_some_and(|s| s.is_leader))
        .map(|(&id, _)| id)
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// One batch to every group through its leader; waits until every node
/// in `nodes` has it committed (high watermark `hw`).
async fn write_all(nodes: &HashMap<u64, QuietNode>, i: usize, hw: impl Fn(i64) -> bool) {
    for g in 0..GROUPS {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = leader(nodes, g)
                && nodes[&l].host.propose(&name(g), payload(i)).is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "group {g} took no write");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_for(
        "every group's write committed everywhere",
        Duration::from_secs(20),
        || {
            nodes.values().all(|n| {
                (0..GROUPS).all(|g| {
                    n.host
                        .status(&name(g))
                        .is_some_and(|s| hw(s.high_watermark))
                })
            })
        },
    )
    .await;
}

async fn wait_quiet(nodes: &HashMap<u64, QuietNode>) {
    wait_for(
        "every group quiet on every node",
        Duration::from_secs(30),
        || {
            nodes
                .values()
                .all(|n| n.host.quiet_groups() == GROUPS as usize)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_go_quiet_and_still_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut listeners, peers) = bind_three().await;
    let mut nodes = HashMap::new();
    for id in 1..=3u64 {
        let l = listeners.remove(&id).unwrap();
        nodes.insert(id, start(id, dir.path(), &peers, l));
    }
    wait_for("a leader for every group", Duration::from_secs(20), || {
        (0..GROUPS).all(|g| leader(&nodes, g).is_some())
    })
    .await;
    // The first leader's empty entry takes no offset, the batch offset 0.
    write_all(&nodes, 0, |hw| hw >= 1).await;
    wait_quiet(&nodes).await;
    // Quiet, a node sends its peers a ping per tick and nothing else:
    // 2 peers × 50 ticks a second. Awake, the heartbeats of 8 led
    // groups to 2 followers every 2 ticks alone would be 400 more.
    let before: Vec<u64> = (1..=3)
        .map(|id| nodes[&id].sent.messages.load(Ordering::Relaxed))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, id) in (1..=3u64).enumerate() {
        let sent = nodes[&id].sent.messages.load(Ordering::Relaxed) - before[i];
        assert!(
            sent < 200,
            "node {id} sent {sent} messages in a quiet second"
        );
        assert_eq!(nodes[&id].host.quiet_groups(), GROUPS as usize);
    }

    // Node 1 goes: the groups it led elect new leaders among the two
    // left, which take and commit writes.
    let led: Vec<u64> = (0..GROUPS)
        .filter(|&g| leader(&nodes, g) == Some(1))
        .collect();
    assert!(!led.is_empty(), "node 1 leads nothing");
    let gone = nodes.remove(&1).unwrap();
    gone.server.abort();
    gone.host.stop();
    wait_for(
        "new leaders for node 1's groups",
        Duration::from_secs(20),
        || {
            led.iter()
                .all(|&g| leader(&nodes, g).is_some_and(|l| l != 1))
        },
    )
    .await;
    let hws: HashMap<u64, i64> = (0..GROUPS)
        .map(|g| (g, nodes[&2].host.status(&name(g)).unwrap().high_watermark))
        .collect();
    write_all(&nodes, 1, |hw| hw >= 2).await;
    for g in 0..GROUPS {
        let hw = nodes[&2].host.status(&name(g)).unwrap().high_watermark;
        assert!(hw > hws[&g], "group {g} committed nothing without node 1");
    }
    // Idle again with one node down: quiet again.
    wait_quiet(&nodes).await;

    // Node 1 comes back from its folders and catches up on every group.
    let l = TcpListener::bind(peers[&1]).await.unwrap();
    nodes.insert(1, start(1, dir.path(), &peers, l));
    wait_for(
        "node 1 caught up on every group",
        Duration::from_secs(30),
        || {
            (0..GROUPS).all(|g| {
                let hw = |id: u64| nodes[&id].host.status(&name(g)).map(|s| s.high_watermark);
                hw(1).is_some() && hw(1) == hw(2) && hw(2) == hw(3)
            })
        },
    )
    .await;
    wait_quiet(&nodes).await;
    for n in nodes.values() {
        n.server.abort();
    }
}
