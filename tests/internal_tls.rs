//! The internal listener over mutual TLS: a broker whose
//! `inter.broker.listener.name` names an SSL listener serves other brokers'
//! Kafka requests (after the "SLKF" hello) only over TLS with a certificate
//! its trust store accepts; a plaintext hello, a client without a
//! certificate, and one with a certificate of another CA are closed. One
//! broker, a quorum of one, in this process; certificates made by rcgen.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::pki::Ca;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use sluice::broker::Broker;
use sluice::cluster::Cluster;
use sluice::config::Config;
use sluice::replication::transport::{self, LinkKind, LinkStream, hello};
use sluice::security::tls::TlsContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn free_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A configuration with a PLAINTEXT and an SSL listener, the SSL one the
/// inter-broker listener, holding `cert` and trusting `ca`.
async fn ssl_config(dir: &Path, cert: &(String, String), ca: &Ca, internal: &str) -> Config {
    let (plain, ssl) = (free_addr().await, free_addr().await);
    let mut c = Config {
        data_dir: dir.to_owned(),
        node_id: 1,
        controller_voters: Some(format!("1@{internal}")),
        listeners: Some(format!("PLAINTEXT://{plain},SSL://{ssl}")),
        inter_broker_listener_name: Some("SSL".into()),
        ..Config::default()
    };
    for (k, v) in [
        ("ssl.keystore.certificate.chain", cert.0.clone()),
        ("ssl.keystore.key", cert.1.clone()),
        ("ssl.truststore.certificates", ca.pem()),
        ("ssl.handshake.timeout.ms", "2000".to_string()),
    ] {
        c.ssl.insert(k.to_string(), v);
    }
    c
}

async fn closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
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
async fn the_internal_listener_serves_other_brokers_over_mutual_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("brokers");
    let internal = free_addr().await;
    let config = ssl_config(
        dir.path(),
        &ca.broker("broker-1"),
        &ca,
        &internal.to_string(),
    )
    .await;
    sluice::security::tls::check(&config).unwrap();
    let voters = config.voters().unwrap();
    let clock: Arc<dyn sluice_storage::Clock> = Arc::new(sluice_storage::SystemClock);
    let cluster = Cluster::start(&config, voters, clock.clone())
        .await
        .unwrap();
    assert!(cluster.internal_tls.is_some());
    let listeners = sluice::server::Listener::bind_all(&config).await.unwrap();
    let broker = Broker::open_with(
        config,
        sluice::handlers::version_table(),
        clock,
        Some(cluster),
    )
    .unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(sluice::server::run_listeners(
        listeners,
        broker,
        async move {
            let _ = rx.await;
        },
    ));

    // Another broker of the same CA: its Kafka requests are served.
    let other = ssl_config(
        dir.path(),
        &ca.broker("broker-2"),
        &ca,
        &internal.to_string(),
    )
    .await;
    let other = TlsContext::for_internal_listener(&other).unwrap().unwrap();
    let name = transport::server_name(Some("127.0.0.1"), internal);
    let stream = transport::connect(internal, &name, Some(&other))
        .await
        .unwrap();
    let LinkStream::Tls(stream) = stream else {
        panic!("not TLS")
    };
    let (mut tx, mut rx) = sluice::client::connect_stream(*stream, &hello(LinkKind::Kafka, 2))
        .await
        .unwrap();
    let corr = tx
        .send(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
        .unwrap();
    let m: MetadataResponse = rx.recv(corr, 12).await.unwrap();
    assert_eq!(m.controller_id.0, 1);

    // A plaintext hello: closed.
    let mut plain = TcpStream::connect(internal).await.unwrap();
    plain.write_all(&hello(LinkKind::Kafka, 2)).await.unwrap();
    assert!(closed(&mut plain).await, "a plaintext hello");

    // A certificate of another CA (trusting ours): closed.
    let evil = Ca::new("evil");
    let mut intruder = ssl_config(dir.path(), &evil.broker("broker-2"), &ca, "").await;
    intruder.controller_voters = Some(format!("1@{internal}"));
    let intruder = TlsContext::for_internal_listener(&intruder)
        .unwrap()
        .unwrap();
    match transport::connect(internal, &name, Some(&intruder)).await {
        Err(_) => {}
        Ok(mut s) => {
            let _ = s.write_all(&hello(LinkKind::Kafka, 2)).await;
            let _ = s.flush().await;
            assert!(closed(&mut s).await, "another CA's certificate");
        }
    }

    // The link served before goes on.
    let corr = tx
        .send(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await
        .unwrap();
    let m: MetadataResponse = rx.recv(corr, 12).await.unwrap();
    assert_eq!(m.controller_id.0, 1);
    drop((tx, rx));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("broker stops in time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_ssl_inter_broker_listener_without_a_trust_store_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("brokers");
    let internal = free_addr().await;
    let mut config = ssl_config(
        dir.path(),
        &ca.broker("broker-1"),
        &ca,
        &internal.to_string(),
    )
    .await;
    config.ssl.remove("ssl.truststore.certificates");
    let err = sluice::security::tls::check(&config).unwrap_err();
    assert!(err.contains("trust store"), "{err}");
}
