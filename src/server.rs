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
//!
//! The broker listens on every listener of its configuration at once
//! (`listeners`, or the one PLAINTEXT listener of `listen`); each accepted
//! connection gets a session naming its listener and security protocol. On
//! a listener that uses TLS (SSL, SASL_SSL) the connection task first
//! completes the TLS handshake, within `ssl.handshake.timeout.ms`, and takes
//! the client certificate's principal, if it presented one; a connection
//! whose handshake fails or times out is closed with a log line, and its
//! task ends. The request loop then runs over the TLS stream.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::Broker;
use crate::connection;
use crate::replication::transport::{KafkaLink, LinkStream};
use crate::security::tls::{SslSettings, TlsContext};
use crate::security::{SecurityProtocol, Session};

/// One bound listener.
pub struct Listener {
    /// Its name, upper case (`PLAINTEXT`, `SSL`, or any name of `listeners`).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub socket: TcpListener,
    /// Set when the protocol uses TLS.
    pub tls: Option<Arc<TlsContext>>,
}

impl Listener {
    /// A PLAINTEXT listener on a bound socket.
    pub fn plaintext(name: &str, socket: TcpListener) -> Self {
        Self {
            name: name.to_string(),
            protocol: SecurityProtocol::Plaintext,
            socket,
            tls: None,
        }
    }

    /// A listener of `config` on a bound socket, its TLS settings read
    /// (files included) when its protocol uses TLS.
    pub fn from_config(
        config: &crate::config::Config,
        name: &str,
        protocol: SecurityProtocol,
        socket: TcpListener,
    ) -> Result<Self, String> {
        let tls = if protocol.uses_tls() {
            Some(TlsContext::new(SslSettings::for_listener(config, name)?)?)
        } else {
            None
        };
        Ok(Self {
            name: name.to_ascii_uppercase(),
            protocol,
            socket,
            tls,
        })
    }

    /// Binds every listener of `config`.
    pub async fn bind_all(config: &crate::config::Config) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for spec in config.listener_specs()? {
            let socket = TcpListener::bind(&spec.bind)
                .await
                .map_err(|e| format!("cannot listen on {} ({}): {e}", spec.bind, spec.name))?;
            out.push(Self::from_config(
                config,
                &spec.name,
                spec.protocol,
                socket,
            )?);
        }
        Ok(out)
    }
}

/// The next client connection on any listener (and that listener's
/// index), once `limit` has room for it. The listeners are polled from a
/// rotating start, so a busy one cannot starve the others.
async fn accept_client(
    listeners: &[Listener],
    limit: &Arc<Semaphore>,
    rotate: &AtomicUsize,
) -> std::io::Result<(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit, usize)> {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore is never closed");
    let start = rotate.fetch_add(1, Ordering::Relaxed);
    let (stream, peer, i) = std::future::poll_fn(|cx| {
        for k in 0..listeners.len() {
            let i = (start + k) % listeners.len();
            if let Poll::Ready(r) = listeners[i].socket.poll_accept(cx) {
                return Poll::Ready(r.map(|(s, p)| (s, p, i)));
            }
        }
        Poll::Pending
    })
    .await?;
    Ok((stream, peer, permit, i))
}

/// Serves one client connection of a listener: the TLS handshake first
/// when it uses TLS.
async fn serve_client(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    listener: (String, SecurityProtocol, Option<Arc<TlsContext>>),
    stop: watch::Receiver<bool>,
) {
    let (name, protocol, tls) = listener;
    let session = Session::new(&name, protocol, peer.ip());
    let Some(tls) = tls else {
        return connection::serve(broker, stream, peer, session, stop).await;
    };
    // Boxed: a task's future is as large as its largest state, and the TLS
    // states (handshake, rustls session) would make every plaintext
    // connection pay for them.
    Box::pin(serve_tls(broker, stream, peer, (name, tls), session, stop)).await
}

/// A connection on a TLS listener: the handshake, the principal from the
/// client's certificate, then the Kafka protocol.
async fn serve_tls(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    (name, tls): (String, Arc<TlsContext>),
    mut session: Session,
    stop: watch::Receiver<bool>,
) {
    let timeout = tls.settings.handshake_timeout;
    let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn_limited!(%peer, listener = %name, error = %e, "closing connection: TLS handshake failed");
            return;
        }
        Err(_) => {
            warn_limited!(%peer, listener = %name, "closing connection: TLS handshake not done within ssl.handshake.timeout.ms ({} ms)", timeout.as_millis());
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first());
    match tls.settings.principal(cert) {
        Ok(p) => session.principal = p,
        Err(e) => {
            warn_limited!(%peer, listener = %name, error = %e, "closing connection: no principal for the client certificate");
            return;
        }
    }
    tracing::debug!(%peer, listener = %name, principal = %session.principal, "TLS handshake done");
    connection::serve(broker, stream, peer, session, stop).await
}

/// Serves another broker's Kafka connection from the internal listener
/// (outside `max.connections`), over TLS when the internal listener uses it.
async fn serve_link(broker: Arc<Broker>, link: KafkaLink, stop: watch::Receiver<bool>) {
    let KafkaLink { from, stream, addr } = link;
    let session = Session::inter_broker(from, addr.ip());
    let span = tracing::info_span!("inter_broker", from);
    match stream {
        LinkStream::Plain(s) => {
            let _ = s.set_nodelay(true);
            connection::serve(broker, s, addr, session, stop)
                .instrument(span)
                .await
        }
        LinkStream::Tls(s) => {
            connection::serve(broker, *s, addr, session, stop)
                .instrument(span)
                .await
        }
    }
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

/// Forgets idle producer ids every
/// `producer.id.expiration.check.interval.ms`, on a blocking thread.
async fn run_producer_expiry(broker: std::sync::Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let every = match broker.upgrade() {
        Some(b) => Duration::from_millis(b.config.producer_id_expiration_check_interval_ms.max(10)),
        None => return,
    };
    // A first pass at startup: a log opened from a snapshot older than the
    // last expiry has those producers back.
    loop {
        let Some(b) = broker.upgrade() else { return };
        if let Err(e) = tokio::task::spawn_blocking(move || b.expire_producers()).await {
            tracing::error!(error = %e, "producer id expiry task failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
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

/// Serves one PLAINTEXT listener (the `listen` shorthand).
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_listeners(
        vec![Listener::plaintext("PLAINTEXT", listener)],
        broker,
        shutdown,
    )
    .await
}

/// Serves every listener until `shutdown`.
pub async fn run_listeners(
    listeners: Vec<Listener>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if listeners.is_empty() {
        return Err(std::io::Error::other("no listener"));
    }
    let rotate = AtomicUsize::new(0);
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
    tokio::spawn(run_producer_expiry(
        Arc::downgrade(&broker),
        stop_rx.clone(),
    ));
    tokio::pin!(shutdown);
    let mut links = broker.cluster().and_then(|c| c.take_kafka_links());
    for l in &listeners {
        tracing::info!(addr = %l.socket.local_addr()?, listener = %l.name, protocol = l.protocol.name(), "listening for Kafka clients");
    }
    loop {
        let (stream, peer, permit, which) = tokio::select! {
            _ = &mut shutdown => break,
            link = next_link(&mut links) => {
                connections.spawn(serve_link(broker.clone(), link, stop_rx.clone()));
                while connections.try_join_next().is_some() {}
                continue;
            }
            accepted = accept_client(&listeners, &limit, &rotate) => match accepted {
                Ok((stream, peer, permit, i)) => (stream, peer, permit, i),
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
        let l = &listeners[which];
        let listener = (l.name.clone(), l.protocol, l.tls.clone());
        connections.spawn(async move {
            serve_client(broker, stream, peer, listener, stop).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs is mostly its task: the future of
    /// `serve_client`, as large as its largest state. Serving a request and
    /// the TLS states are boxed so that a connection waiting for its next
    /// request stays small (10,000 idle connections under 200 MiB).
    #[tokio::test]
    async fn a_plaintext_connection_task_stays_small_while_idle() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let broker = Broker::open(config, crate::handlers::version_table()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let task = serve_client(
            broker,
            stream,
            peer,
            ("PLAINTEXT".into(), SecurityProtocol::Plaintext, None),
            stop,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 4096, "a connection's task takes {size} bytes");
    }
}
