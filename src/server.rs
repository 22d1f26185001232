//! Accepting connections and shutting down cleanly.
//!
//! `run` owns the listener; the binary only parses flags and binds, so tests can
//! bind `127.0.0.1:0` and call the same function. A semaphore caps open
//! connections (`max.connections`): past it, new connections wait in the kernel's
//! backlog until one closes. On shutdown every connection is told to stop after
//! the request it is serving, then every partition is flushed and marked clean.
//!
//! In a cluster the same loop serves the Kafka connections other brokers
//! open on the internal listener (their hello already read, see
//! [`crate::replication::transport`]): served exactly as a client's, stopped
//! alike, but not counted against `max.connections` (Kafka, too, keeps its
//! inter-broker listener's connections out of reach of that broker-wide
//! limit), so clients filling it cannot hold up transaction markers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::Broker;
use crate::connection;
use crate::replication::transport::KafkaLink;
use crate::security::Session;

/// The next client connection, once `limit` has room for it.
async fn accept_client(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit)> {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore is never closed");
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

/// The next inter-broker Kafka connection; never, alone or once the
/// internal listener has stopped.
async fn next_link(links: &mut Option<mpsc::Receiver<KafkaLink>>) -> KafkaLink {
    if let Some(rx) = links {
        if let Some(link) = rx.recv().await {
            return link;
        }
        *links = None;
    }
    std::future::pending().await
}

/// Runs a retention pass every `log.retention.check.interval.ms`, on a
/// blocking thread (segment deletion touches the disk).
async fn run_retention(broker: std::sync::Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let every = match broker.upgrade() {
        Some(b) => Duration::from_millis(b.config.log_retention_check_interval_ms.max(10)),
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let Some(b) = broker.upgrade() else { return };
        if let Err(e) = tokio::task::spawn_blocking(move || b.apply_retention()).await {
            tracing::error!(error = %e, "retention task failed");
        }
    }
}

/// Runs a log-cleaner pass every `log.cleaner.backoff.ms` (when
/// `log.cleaner.enable`), on a blocking thread: one cleaner, like Kafka's
/// default `log.cleaner.threads` = 1.
async fn run_cleaner(broker: std::sync::Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let every = match broker.upgrade() {
        Some(b) if b.config.log_cleaner_enable => {
            Duration::from_millis(b.config.log_cleaner_backoff_ms.max(10))
        }
        _ => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let Some(b) = broker.upgrade() else { return };
        if let Err(e) = tokio::task::spawn_blocking(move || b.apply_compaction()).await {
            tracing::error!(error = %e, "log cleaner task failed");
        }
    }
}

pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::spawn(crate::group::run_timers(
        Arc::downgrade(&broker),
        stop_rx.clone(),
    ));
    tokio::spawn(crate::txn::run_timers(
        Arc::downgrade(&broker),
        Duration::from_millis(
            broker
                .config
                .transaction_abort_timed_out_transaction_cleanup_interval_ms,
        ),
        Duration::from_millis(
            broker
                .config
                .transaction_remove_expired_transaction_cleanup_interval_ms,
        ),
        stop_rx.clone(),
    ));
    tokio::spawn(run_retention(Arc::downgrade(&broker), stop_rx.clone()));
    tokio::spawn(run_cleaner(Arc::downgrade(&broker), stop_rx.clone()));
    tokio::pin!(shutdown);
    let mut links = broker.cluster().and_then(|c| c.take_kafka_links());
    tracing::info!(addr = %listener.local_addr()?, "listening for Kafka clients");
    loop {
        let (stream, peer, permit, from) = tokio::select! {
            _ = &mut shutdown => break,
            link = next_link(&mut links) => (link.stream, link.addr, None, Some(link.from)),
            accepted = accept_client(&listener, &limit) => match accepted {
                Ok((stream, peer, permit)) => (stream, peer, Some(permit), None),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn_limited!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let session = match from {
                None => Session::plaintext("PLAINTEXT", peer.ip()),
                Some(node) => Session::inter_broker(node, peer.ip()),
            };
            let served = connection::serve(broker, stream, peer, session, stop);
            match from {
                None => served.await,
                Some(node) => {
                    served
                        .instrument(tracing::info_span!("inter_broker", from = node))
                        .await
                }
            }
            drop(permit);
        });
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("shutting down: closing connections");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after 5 s; closing them");
        connections.abort_all();
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown())
        .await
        .map_err(std::io::Error::other)?;
    tracing::info!("shutdown complete: logs flushed and marked clean");
    Ok(())
}
