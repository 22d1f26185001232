//! Three nodes in one process, each with its own folder and internal
//! listener on loopback, replicate a partition over the real transport: the
//! leader's batches commit everywhere; when the leader's node stops, the
//! other two elect a new leader and go on; the stopped node comes back from
//! its folder and catches up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::replication::host::Host;
use sluice::replication::replica::{Replica, ReplicaError, Timing};
use sluice::replication::store::ReplicaStore;
use sluice::replication::transport::{self, Sender};
use sluice_storage::{BatchHeader, LogConfig, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod raft_nodes;
use raft_nodes::{TICK, bind_three, payload, wait_for};

const GROUP: &str = "orders-0";

struct Node {
    host: Host,
    store: ReplicaStore,
    server: JoinHandle<()>,
}

async fn start_node(
    id: u64,
    root: &Path,
    peers: &HashMap<u64, SocketAddr>,
    listener: TcpListener,
) -> Node {
    let store = ReplicaStore::open(
        &root.join(id.to_string()),
        LogConfig::default(),
        Arc::new(SystemClock),
        &[1, 2, 3],
        true,
    )
    .unwrap();
    let replica = Replica::new(id, store.clone(), Timing::default()).unwrap();
    let sender = Sender::start(id, peers);
    let host = Host::start(HashMap::from([(GROUP.to_owned(), replica)]), sender, TICK);
    let server = tokio::spawn(transport::serve(listener, host.deliver()));
    Node {
        host,
        store,
        server,
    }
}

/// Three nodes replicating `GROUP`, with their logs under `root`.
async fn start_three(root: &Path) -> (HashMap<u64, SocketAddr>, HashMap<u64, Node>) {
    let (mut listeners, peers) = bind_three().await;
    let mut nodes = HashMap::new();
    for id in 1..=3u64 {
        let l = listeners.remove(&id).unwrap();
        nodes.insert(id, start_node(id, root, &peers, l).await);
    }
    (peers, nodes)
}

/// The order values committed in a node's log, in offset order.
fn committed(node: &Node) -> Vec<String> {
    let hw = node.host.status(GROUP).map_or(0, |s| s.high_watermark);
    node.store.with_log(|log| {
        let mut out = Vec::new();
        for i in log.first_entry_index()..=log.last_entry_index() {
            let b = log.entry(i).unwrap();
            let h = BatchHeader::parse(&b).unwrap();
            if h.is_control() || h.base_offset >= hw {
                continue;
            }
            let recs = sluice::cleaner::records::records(&b, &h).unwrap();
            out.extend(
                recs.into_iter()
                    .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
            );
        }
        out
    })
}

fn leader_of(nodes: &HashMap<u64, Node>) -> Option<u64> {
    let leaders: Vec<u64> = nodes
        .iter()
        .filter(|(_, n)| n.host.status(GROUP).is_some_and(|s| s.is_leader))
        .map(|(&id, _)| id)
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// Proposes to whichever node leads, following NotLeader answers.
async fn propose(nodes: &HashMap<u64, Node>, batch: Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = leader_of(nodes) {
            match nodes[&l].host.propose(GROUP, batch.clone()) {
                Ok(_) => return,
                Err(ReplicaError::NotLeader { .. }) => {}
                Err(e) => panic!("proposal failed: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "no leader took the proposal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_loopback_and_survive_losing_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = start_three(dir.path()).await;

    wait_for("a leader", Duration::from_secs(20), || {
        leader_of(&nodes).is_some()
    })
    .await;
    for i in 0..50 {
        propose(&nodes, payload(i)).await;
    }
    let want: Vec<String> = (0..50).map(|i| format!("order-{i}")).collect();
    wait_for("50 commits on every node", Duration::from_secs(20), || {
        nodes.values().all(|n| committed(n) == want)
    })
    .await;

    // The leader's node stops (its replica dropped without a close).
    let old = leader_of(&nodes).unwrap();
    let old_term = nodes[&old].host.status(GROUP).unwrap().term;
    let stopped = nodes.remove(&old).unwrap();
    stopped.server.abort();
    stopped.host.stop();
    drop(stopped.store);
    wait_for("a new leader", Duration::from_secs(20), || {
        leader_of(&nodes).is_some()
    })
    .await;
    let new = leader_of(&nodes).unwrap();
    assert_ne!(new, old);
    assert!(nodes[&new].host.status(GROUP).unwrap().term > old_term);
    for i in 50..80 {
        propose(&nodes, payload(i)).await;
    }
    let want: Vec<String> = (0..80).map(|i| format!("order-{i}")).collect();
    wait_for(
        "80 commits on the two left",
        Duration::from_secs(20),
        || nodes.values().all(|n| committed(n) == want),
    )
    .await;

    // It comes back from its folder, on its old address, and catches up.
    let l = TcpListener::bind(peers[&old]).await.unwrap();
    nodes.insert(old, start_node(old, dir.path(), &peers, l).await);
    wait_for(
        "the returning node to catch up",
        Duration::from_secs(20),
        || committed(&nodes[&old]) == want,
    )
    .await;
    for n in nodes.values() {
        n.server.abort();
    }
}

mod controller {
    use super::*;
    use sluice::replication::host::Applier;
    use sluice::replication::metadata::{self, ClusterImage, MetadataRecord};
    use std::sync::Mutex;

    const META: &str = "__cluster_metadata";

    struct MetaNode {
        host: Host,
        image: Arc<Mutex<ClusterImage>>,
        server: JoinHandle<()>,
    }

    async fn start(
        id: u64,
        root: &Path,
        peers: &HashMap<u64, SocketAddr>,
        listener: TcpListener,
    ) -> MetaNode {
        let store = ReplicaStore::open(
            &root.join(id.to_string()).join(META),
            LogConfig::default(),
            Arc::new(SystemClock),
            &[1, 2, 3],
            true,
        )
        .unwrap();
        // The image is not stored: it is rebuilt from the log at every start.
        let replica = Replica::with_replay(id, store, Timing::default(), true).unwrap();
        let image = Arc::new(Mutex::new(ClusterImage::default()));
        let applier: Applier = {
            let image = image.clone();
            Box::new(move |e| {
                if e.data.is_empty() {
                    return;
                }
                if let Ok(record) = metadata::decode(&e.data) {
                    let _ = image.lock().unwrap().apply(e.index, &record);
                }
            })
        };
        let host = Host::start_with(
            HashMap::from([(META.to_owned(), replica)]),
            HashMap::from([(META.to_owned(), applier)]),
            Sender::start(id, peers),
            TICK,
        );
        let server = tokio::spawn(transport::serve(listener, host.deliver()));
        MetaNode {
            host,
            image,
            server,
        }
    }

    fn image(n: &MetaNode) -> ClusterImage {
        n.image.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_node_builds_the_same_image_from_the_quorum() {
        let dir = tempfile::tempdir().unwrap();
        let (mut listeners, peers) = bind_three().await;
        let mut nodes = HashMap::new();
        for id in 1..=3u64 {
            let l = listeners.remove(&id).unwrap();
            nodes.insert(id, start(id, dir.path(), &peers, l).await);
        }
        // Each broker registers through whichever node leads (followers
        // forward), retrying until its registration is applied.
        let deadline = Instant::now() + Duration::from_secs(20);
        while nodes.values().any(|n| image(n).brokers.len() < 3) {
            for (&id, n) in &nodes {
                if !image(n).brokers.contains_key(&id) {
                    n.host.propose_anywhere(
                        META,
                        metadata::encode(&MetadataRecord::RegisterBroker {
                            node_id: id,
                            host: "127.0.0.1".into(),
                            port: 9000 + id as u16,
                            listeners: Vec::new(),
                            rack: None,
                            internal: None,
                            directory_id: None,
                        }),
                    );
                }
            }
            assert!(Instant::now() < deadline, "registrations did not commit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A follower proposes a topic; every image gets it.
        let leader = loop {
            if let Some((&id, _)) = nodes
                .iter()
                .find(|(_, n)| n.host.status(META).is_some_and(|s| s.is_leader))
            {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let brokers: Vec<u64> = image(&nodes[&follower]).brokers.keys().copied().collect();
        let create = MetadataRecord::CreateTopic {
            name: "orders".into(),
            topic_id: "id-orders".into(),
            assignment: metadata::assign("orders", 0, 6, 3, &brokers).unwrap(),
            configs: Default::default(),
            dense_offsets: true,
        };
        nodes[&follower]
            .host
            .propose_anywhere(META, metadata::encode(&create));
        wait_for("the topic on every node", Duration::from_secs(20), || {
            nodes
                .values()
                .all(|n| image(n).topics.contains_key("orders"))
        })
        .await;
        let reference = image(&nodes[&leader]);
        assert_eq!(reference.topics["orders"].assignment.len(), 6);
        for n in nodes.values() {
            assert_eq!(image(n), reference, "identical images");
        }

        // A node that was down rebuilds the image from its log and learns
        // what it missed.
        let gone = follower;
        let stopped = nodes.remove(&gone).unwrap();
        stopped.server.abort();
        stopped.host.stop();
        nodes[&leader].host.propose_anywhere(
            META,
            metadata::encode(&MetadataRecord::DeleteTopic {
                name: "orders".into(),
            }),
        );
        wait_for(
            "the deletion on the live nodes",
            Duration::from_secs(20),
            || nodes.values().all(|n| image(n).topics.is_empty()),
        )
        .await;
        let l = TcpListener::bind(peers[&gone]).await.unwrap();
        nodes.insert(gone, start(gone, dir.path(), &peers, l).await);
        wait_for(
            "the returning node's image",
            Duration::from_secs(20),
            || image(&nodes[&gone]) == image(&nodes[&leader]),
        )
        .await;
        assert_eq!(image(&nodes[&gone]).brokers.len(), 3);
        assert!(image(&nodes[&gone]).topics.is_empty());
        for n in nodes.values() {
            n.server.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_added_and_removed_while_nodes_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut listeners, peers) = bind_three().await;
    // Nodes that start with no group at all (a broker before any topic).
    let mut hosts = HashMap::new();
    let mut servers = Vec::new();
    for id in 1..=3u64 {
        let host = Host::start(HashMap::new(), Sender::start(id, &peers), TICK);
        servers.push(tokio::spawn(transport::serve(
            listeners.remove(&id).unwrap(),
            host.deliver(),
        )));
        hosts.insert(id, host);
    }
    let late = "late-0";
    for (&id, host) in &hosts {
        let store = ReplicaStore::open(
            &dir.path().join(id.to_string()).join(late),
            LogConfig::default(),
            Arc::new(SystemClock),
            &[1, 2, 3],
            true,
        )
        .unwrap();
        host.add_group(late, Replica::new(id, store, Timing::default()).unwrap());
    }
    let leader_of = |hosts: &HashMap<u64, Host>| {
        hosts
            .iter()
            .find(|(_, h)| h.status(late).is_some_and(|s| s.is_leader))
            .map(|(&id, _)| id)
    };
    wait_for(
        "a leader of the added group",
        Duration::from_secs(20),
        || leader_of(&hosts).is_some(),
    )
    .await;
    let leader = leader_of(&hosts).unwrap();
    for i in 0..10 {
        hosts[&leader].propose(late, payload(i)).unwrap();
    }
    wait_for("commits on every node", Duration::from_secs(20), || {
        hosts
            .values()
            .all(|h| h.status(late).is_some_and(|s| s.high_watermark == 10))
    })
    .await;
    // One follower drops the group; the other two go on committing.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    hosts[&follower].remove_group(late);
    wait_for(
        "the group gone from that node",
        Duration::from_secs(10),
        || hosts[&follower].status(late).is_none(),
    )
    .await;
    for i in 10..15 {
        hosts[&leader].propose(late, payload(i)).unwrap();
    }
    wait_for(
        "commits without the removed replica",
        Duration::from_secs(20),
        || {
            hosts[&leader]
                .status(late)
                .is_some_and(|s| s.high_watermark == 15)
        },
    )
    .await;
    for s in servers {
        s.abort();
    }
}

/// A fault-injecting proxy in front of each node's internal listener. It
/// reads the hello of every connection to learn the sending node, and while a
/// node is cut off it refuses that node's connections, in both directions,
/// and closes the ones that are open.
mod faults {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct Faults {
        cut: Arc<Mutex<HashSet<u64>>>,
        changed: watch::Sender<u64>,
    }

    impl Faults {
        pub fn new() -> Self {
            Self {
                cut: Arc::default(),
                changed: watch::channel(0).0,
            }
        }

        pub fn isolate(&self, node: u64) {
            self.cut.lock().unwrap().insert(node);
            self.changed.send_modify(|g| *g += 1);
        }

        pub fn heal(&self) {
            self.cut.lock().unwrap().clear();
            self.changed.send_modify(|g| *g += 1);
        }

        fn blocked(&self, a: u64, b: u64) -> bool {
            let cut = self.cut.lock().unwrap();
            cut.contains(&a) || cut.contains(&b)
        }

        /// Proxies `listener` (node `to`'s public internal address) to
        /// `target` (its real listener).
        pub async fn proxy(self, to: u64, listener: TcpListener, target: SocketAddr) {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let faults = self.clone();
                tokio::spawn(async move {
                    let mut hello = [0u8; 14];
                    if inbound.read_exact(&mut hello).await.is_err() {
                        return;
                    }
                    let from = u64::from_be_bytes(hello[6..14].try_into().unwrap());
                    if faults.blocked(from, to) {
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    if outbound.write_all(&hello).await.is_err() {
                        return;
                    }
                    let mut changed = faults.changed.subscribe();
                    let (mut ri, mut wi) = inbound.split();
                    let (mut ro, mut wo) = outbound.split();
                    let pipe = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut ri, &mut wo) => {}
                            _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        }
                    };
                    let cut = async {
                        loop {
                            if changed.changed().await.is_err() || faults.blocked(from, to) {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = pipe => {}
                        _ = cut => {}
                    }
                });
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_by_a_proxy_is_replaced_and_rejoins_after_healing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = faults::Faults::new();
    // Each node's peers see it through a proxy; it listens on its own port.
    let mut peers = HashMap::new();
    let mut real = HashMap::new();
    for id in 1..=3u64 {
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let private = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, public.local_addr().unwrap());
        let target = private.local_addr().unwrap();
        real.insert(id, private);
        tokio::spawn(faults.clone().proxy(id, public, target));
    }
    let mut nodes = HashMap::new();
    for id in 1..=3u64 {
        let l = real.remove(&id).unwrap();
        nodes.insert(id, start_node(id, dir.path(), &peers, l).await);
    }
    wait_for("a leader", Duration::from_secs(20), || {
        leader_of(&nodes).is_some()
    })
    .await;
    for i in 0..20 {
        propose(&nodes, payload(i)).await;
    }
    wait_for("20 commits everywhere", Duration::from_secs(20), || {
        nodes.values().all(|n| committed(n).len() == 20)
    })
    .await;

    let old = leader_of(&nodes).unwrap();
    let cut_at = Instant::now();
    faults.isolate(old);
    // The cut-off leader still takes a proposal it can never commit.
    let _ = nodes[&old].host.propose(GROUP, payload(999));
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new_leader = || {
        others
            .iter()
            .copied()
            .find(|id| nodes[id].host.status(GROUP).is_some_and(|s| s.is_leader))
    };
    wait_for(
        "a leader on the connected side",
        Duration::from_secs(20),
        || new_leader().is_some(),
    )
    .await;
    let leaderless = cut_at.elapsed();
    eprintln!("partition had no reachable leader for {leaderless:?} after the cut");
    let new = new_leader().unwrap();
    for i in 20..40 {
        nodes[&new].host.propose(GROUP, payload(i)).unwrap();
    }
    let want: Vec<String> = (0..40).map(|i| format!("order-{i}")).collect();
    wait_for(
        "40 commits on the connected side",
        Duration::from_secs(20),
        || others.iter().all(|id| committed(&nodes[id]) == want),
    )
    .await;
    assert!(
        committed(&nodes[&old]).len() <= 20,
        "the cut-off node commits nothing new"
    );

    faults.heal();
    wait_for(
        "every node to agree after healing",
        Duration::from_secs(30),
        || nodes.values().all(|n| committed(n) == want),
    )
    .await;
    for n in nodes.values() {
        n.server.abort();
    }
}

/// A producer proposes continuously while the leader's node is stopped
/// (kill -9 style: its replica dropped unclosed) and later restarted. A
/// proposal counts as acknowledged when the commit index passed its entry
/// and the entry there still has the proposal's term; every acknowledged
/// value must end up in every node's log, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_leader_under_load() {
    use sluice::replication::replica::Proposal;

    let dir = tempfile::tempdir().unwrap();
    let (peers, mut nodes) = start_three(dir.path()).await;
    wait_for("a leader", Duration::from_secs(20), || {
        leader_of(&nodes).is_some()
    })
    .await;

    let mut pending: Vec<(usize, Proposal)> = Vec::new();
    let mut acked: Vec<(usize, u64)> = Vec::new();
    let mut killed: Option<(u64, Instant)> = None;
    let mut leaderless = Duration::ZERO;
    let mut restarted = false;
    let started = Instant::now();
    let mut next = 0usize;
    while started.elapsed() < Duration::from_secs(6) {
        // Produce to whoever leads right now.
        if let Some(l) = leader_of(&nodes)
            && let Ok(p) = nodes[&l].host.propose(GROUP, payload(next))
        {
            pending.push((next, p));
            next += 1;
        }
        // Acknowledge what has committed with its own term.
        pending.retain(|(value, p)| {
            let judge = nodes.values().find(|n| {
                n.host
                    .status(GROUP)
                    .is_some_and(|s| s.commit_index >= p.index)
            });
            match judge {
                None => true,
                Some(n) => {
                    if n.store.entry_term(p.index) == Some(p.term) {
                        acked.push((*value, p.index));
                    }
                    false
                }
            }
        });
        let t = started.elapsed();
        if killed.is_none() && t > Duration::from_secs(2) {
            let old = leader_of(&nodes).unwrap();
            let n = nodes.remove(&old).unwrap();
            n.server.abort();
            n.host.stop();
            killed = Some((old, Instant::now()));
        }
        if let Some((_, at)) = killed
            && leaderless.is_zero()
            && leader_of(&nodes).is_some()
        {
            leaderless = at.elapsed();
        }
        if !restarted && t > Duration::from_secs(4) {
            let (old, _) = killed.unwrap();
            let l = TcpListener::bind(peers[&old]).await.unwrap();
            nodes.insert(old, start_node(old, dir.path(), &peers, l).await);
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    eprintln!(
        "{} proposals, {} acknowledged; no leader for {leaderless:?} after the kill",
        next,
        acked.len()
    );
    assert!(
        acked.len() > 200,
        "the producer made progress: {}",
        acked.len()
    );
    assert!(leaderless > Duration::ZERO && leaderless < Duration::from_secs(10));

    // Let everything settle, then check every node's committed log.
    wait_for("all nodes to agree", Duration::from_secs(30), || {
        let logs: Vec<Vec<String>> = nodes.values().map(committed).collect();
        logs.windows(2).all(|w| w[0] == w[1])
            && nodes.values().all(|n| {
                n.host
                    .status(GROUP)
                    .is_some_and(|s| s.commit_index == n.store.with_log(|l| l.last_entry_index()))
            })
    })
    .await;
    for (id, n) in &nodes {
        let log = committed(n);
        let mut positions = Vec::with_capacity(acked.len());
        for (value, _) in &acked {
            let name = format!("order-{value}");
            let found: Vec<usize> = log
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == name)
                .map(|(i, _)| i)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "node {id}: acknowledged {name} found {} times",
                found.len()
            );
            positions.push(found[0]);
        }
        let mut by_index = acked.clone();
        by_index.sort_by_key(|(_, index)| *index);
        let in_log_order: Vec<usize> = {
            let mut v: Vec<(usize, usize)> = acked
                .iter()
                .map(|(value, _)| *value)
                .zip(positions.iter().copied())
                .collect();
            v.sort_by_key(|(_, pos)| *pos);
            v.into_iter().map(|(value, _)| value).collect()
        };
        let want: Vec<usize> = by_index.iter().map(|(value, _)| *value).collect();
        assert_eq!(
            in_log_order, want,
            "node {id}: acknowledged values in entry order"
        );
    }
    for n in nodes.values() {
        n.server.abort();
    }
}

/// Real files whose fsyncs can be held back (a stalled disk).
#[derive(Debug, Default)]
struct StallingFs {
    stalled: std::sync::atomic::AtomicBool,
}

impl StallingFs {
    fn wait(&self) {
        // Bounded: a test that forgets to let go still ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stalled.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl sluice_storage::fs::FileSystem for StallingFs {
    fn sync(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.wait();
        file.sync_data()
    }
    fn sync_filesystem(&self, anchor: &std::fs::File) -> std::io::Result<()> {
        self.wait();
        anchor.sync_all()
    }
}

/// The leader's fsync runs off its Raft thread, and its appends leave
/// before it: with the leader's disk stalled, the followers still take the
/// batch and the leader, still stepping their answers, counts it committed
/// by their two copies; its own copy (and its high watermark) follows once
/// the disk answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_stalls_still_replicates_and_commits_through_its_followers() {
    let root = tempfile::tempdir().unwrap();
    let (mut listeners, peers) = bind_three().await;
    let mut nodes = HashMap::new();
    let mut disks = HashMap::new();
    for id in 1..=3u64 {
        let fs = Arc::new(StallingFs::default());
        let store = ReplicaStore::open_with_fs(
            &root.path().join(id.to_string()),
            LogConfig::default(),
            Arc::new(SystemClock),
            &[1, 2, 3],
            true,
            fs.clone(),
        )
        .unwrap();
        let replica = Replica::new(id, store.clone(), Timing::default()).unwrap();
        let host = Host::start(
            HashMap::from([(GROUP.to_owned(), replica)]),
            Sender::start(id, &peers),
            TICK,
        );
        let server = tokio::spawn(transport::serve(
            listeners.remove(&id).unwrap(),
            host.deliver(),
        ));
        nodes.insert(
            id,
            Node {
                host,
                store,
                server,
            },
        );
        disks.insert(id, fs);
    }
    propose(&nodes, payload(0)).await;
    wait_for(
        "the first batch everywhere",
        Duration::from_secs(20),
        || nodes.values().all(|n| committed(n).len() == 1),
    )
    .await;
    let leader = leader_of(&nodes).expect("a leader");
    disks[&leader]
        .stalled
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let at = nodes[&leader]
        .host
        .propose(GROUP, payload(1))
        .expect("the leader takes the proposal");
    // The leader's Raft thread answers while its sync thread waits for the
    // disk, and the followers' answers commit the entry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let commit = tokio::time::timeout(
            Duration::from_secs(2),
            nodes[&leader].host.inspect(GROUP, |r| r.commit_index()),
        )
        .await
        .expect("the leader's Raft thread answers while its disk is stalled")
        .expect("the group is on the leader");
        if commit >= at.index {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the followers' copies did not commit the entry (commit {commit}, entry {})",
            at.index
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (&id, n) in &nodes {
        if id != leader {
            let last = n.store.with_log(|l| l.last_entry_index());
            assert!(last >= at.index, "follower {id} holds the entry");
        }
    }
    // Acknowledged (the high watermark) only once the leader's own copy is
    // durable too: raft-rs hands out committed entries up to what it
    // persisted.
    assert!(
        nodes[&leader].host.status(GROUP).unwrap().high_watermark <= at.base_offset,
        "the leader's high watermark waits for its own disk"
    );
    disks[&leader]
        .stalled
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for(
        "the second batch everywhere",
        Duration::from_secs(20),
        || nodes.values().all(|n| committed(n).len() == 2),
    )
    .await;
    for n in nodes.into_values() {
        n.host.stop();
        n.server.abort();
    }
}
