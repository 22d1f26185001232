//! The internal listener of a broker in a cluster serves other brokers'
//! Kafka requests after their hello ("SLKF"), as the client listener serves
//! a client's, and outside `max.connections`; anything else on it is
//! closed. One broker, a quorum of one, in this process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use sluice::broker::Broker;
use sluice::cluster::Cluster;
use sluice::config::Config;
use sluice::replication::transport::{LinkKind, hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

mod common;
use common::{Client, TIMEOUT};

struct Node {
    client: std::net::SocketAddr,
    internal: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Node 1 alone in its controller quorum, serving clients.
async fn start(dir: &Path, max_connections: usize) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = listener.local_addr().unwrap();
    // A free port for the internal listener, which the cluster binds.
    let internal = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = Config {
        listen: client,
        data_dir: dir.to_owned(),
        node_id: 1,
        controller_voters: Some(format!("1@{internal}")),
        max_connections,
        ..Config::default()
    };
    let voters = config.voters().unwrap();
    let clock: Arc<dyn sluice_storage::Clock> = Arc::new(sluice_storage::SystemClock);
    let cluster = Cluster::start(&config, voters, clock.clone())
        .await
        .unwrap();
    let broker = Broker::open_with(
        config,
        sluice::handlers::version_table(),
        clock,
        Some(cluster),
    )
    .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sluice::server::run(listener, broker, async move {
        let _ = rx.await;
    }));
    Node {
        client,
        internal,
        stop,
        task,
    }
}

impl Node {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("broker stops in time")
            .unwrap()
            .unwrap();
    }

    /// A connection to the internal listener that sent `first`.
    async fn internal_with(&self, first: &[u8]) -> Client {
        let mut c = Client::connect(self.internal).await;
        c.send_raw(first).await;
        c
    }
}

/// True when the broker closes `s` within 5 s (whatever it wrote first).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn the_internal_listener_serves_kafka_after_the_hello_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), 100).await;

    // After the hello: the same answers as on the client listener.
    let mut c = node.internal_with(&hello(LinkKind::Kafka, 2)).await;
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(v.error_code, 0);
    let mut direct = Client::connect(node.client).await;
    let w: ApiVersionsResponse = direct
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(v.api_keys, w.api_keys);
    let m: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(m.controller_id.0, 1);
    // The connection goes on serving, in order.
    let again: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    assert_eq!(again.error_code, 0);

    // The client the broker itself uses for its peers gets through too.
    let (mut tx, mut rx) =
        sluice::client::connect_with_hello(&node.internal.to_string(), &hello(LinkKind::Kafka, 3))
            .await
            .unwrap();
    let corr = tx
        .send(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
        .unwrap();
    let m: MetadataResponse = rx.recv(corr, 12).await.unwrap();
    assert_eq!(m.controller_id.0, 1);

    // A Kafka client without the hello, garbage, a hello of another
    // version, a hello cut short: closed.
    let mut framed = Client::connect(node.internal).await;
    let (_, frame) = framed.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    framed.send_raw(&frame).await;
    assert!(
        closed(&mut framed.stream).await,
        "a Kafka frame without the hello"
    );
    let mut junk = node
        .internal_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(closed(&mut junk.stream).await, "garbage");
    let mut newer = hello(LinkKind::Kafka, 2);
    newer[5] = 9;
    let mut v9 = node.internal_with(&newer).await;
    assert!(closed(&mut v9.stream).await, "a hello of version 9");
    let mut short = node.internal_with(&hello(LinkKind::Kafka, 2)[..6]).await;
    short.stream.shutdown().await.unwrap();
    assert!(closed(&mut short.stream).await, "a hello cut short");

    // The listeners go on.
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(v.error_code, 0);
    drop((c, direct, tx, rx));
    node.stop().await;
}

#[tokio::test]
async fn inter_broker_links_are_not_held_up_by_max_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), 1).await;
    // One client takes the only client slot.
    let mut first = Client::connect(node.client).await;
    let _: ApiVersionsResponse = first
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    // A second client waits for it ...
    let mut waiting = Client::connect(node.client).await;
    let (_, frame) = waiting.encode_request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    waiting.send_raw(&frame).await;
    let mut len = [0u8; 4];
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            waiting.stream.read_exact(&mut len)
        )
        .await
        .is_err(),
        "max.connections = 1 holds the second client"
    );
    // ... while another broker's link is served at once.
    let mut link = node.internal_with(&hello(LinkKind::Kafka, 2)).await;
    let v: ApiVersionsResponse = link
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(v.error_code, 0);
    drop((first, waiting, link));
    node.stop().await;
}
