//! The internal (broker-to-broker) listener and the transport of Raft
//! messages over it: one TCP connection per peer, messages of every Raft
//! group batched per destination.
//!
//! A connection to the internal listener opens with a hello naming what it
//! carries: Raft messages (magic "SLRT", below), or Kafka requests from
//! another broker (magic "SLKF": WriteTxnMarkers, AddPartitionsToTxn
//! verify_only; after the hello the connection is served exactly as a
//! client's, see [`serve_with_kafka`]). Both hellos have the same layout,
//! parsed in one place ([`parse_hello`]). Anything else is refused: the
//! connection is closed with a log line.
//!
//! A sender keeps one outgoing connection per peer. Whatever is queued for a
//! peer when its connection is ready to write goes out as one frame, so the
//! heartbeats of many groups travel together in a single write. A message
//! that cannot be sent (peer down, connection lost) is dropped: Raft resends
//! what matters. The connection is re-established with a capped backoff.
//!
//! ```text
//! hello:  magic "SLRT" or "SLKF" (4) · version u16 (= 2) · sender node id u64
//! frame:  length u32 (of what follows) · count u32 ·
//!         count × ( group length u16 · group (UTF-8) · message length u32 ·
//!                   raft Message in protobuf )
//! ```
//! Frames are at most [`MAX_FRAME`] bytes; a receiver closes a connection
//! that sends anything else (with a log line).
//!
//! With a [`TlsContext`] (when `inter.broker.listener.name` names a TLS
//! listener) every connection is mutual TLS: the handshake comes before
//! the hello, the listener requires a client certificate its trust store
//! accepts, and a sender presents this broker's certificate and checks the
//! peer's. Without one, connections are bare TCP, as they always were.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::security::tls::TlsContext;

/// The hello of a connection carrying Raft messages.
pub const MAGIC: &[u8; 4] = b"SLRT";
/// The hello of a connection carrying Kafka requests from another broker.
pub const KAFKA_MAGIC: &[u8; 4] = b"SLKF";
/// The version of both hellos. 2: Raft's own entries of topics created
/// since take no offset, which a broker of version 1 would store as taking
/// one, its offsets then differing from its group's; the two never connect
/// (a cluster moves to this release all at once).
pub const VERSION: u16 = 2;
/// Bytes of a hello: magic, version, sender node id.
pub const HELLO_LEN: usize = 14;
/// How long an accepted connection may take to send its hello.
const HELLO_WAIT: Duration = Duration::from_secs(10);
pub const MAX_FRAME: usize = 64 << 20;
/// Messages put in one frame at most.
const MAX_BATCH: usize = 4096;
/// Bytes a sender puts in one frame, short of a single larger message.
const FRAME_BUDGET: usize = 8 << 20;

/// What a connection to the internal listener carries, as its hello says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Raft,
    Kafka,
}

/// The hello opening a connection of `kind` from node `me`.
pub fn hello(kind: LinkKind, me: u64) -> [u8; HELLO_LEN] {
    let magic = match kind {
        LinkKind::Raft => MAGIC,
        LinkKind::Kafka => KAFKA_MAGIC,
    };
    let mut out = [0u8; HELLO_LEN];
    out[..4].copy_from_slice(magic);
    out[4..6].copy_from_slice(&VERSION.to_be_bytes());
    out[6..].copy_from_slice(&me.to_be_bytes());
    out
}

/// What a hello announces, and the sender's node id; Err for anything
/// that is not a hello of this version.
pub fn parse_hello(hello: &[u8; HELLO_LEN]) -> Result<(LinkKind, u64), String> {
    let kind = match &hello[..4] {
        m if m == MAGIC => LinkKind::Raft,
        m if m == KAFKA_MAGIC => LinkKind::Kafka,
        _ => return Err("not a Sluice peer (bad hello)".into()),
    };
    let version = u16::from_be_bytes([hello[4], hello[5]]);
    if version != VERSION {
        return Err(format!("unknown hello version {version}"));
    }
    let mut from = [0u8; 8];
    from.copy_from_slice(&hello[6..]);
    Ok((kind, u64::from_be_bytes(from)))
}

/// A connection between brokers: bare TCP, or TLS over it.
#[derive(Debug)]
pub enum LinkStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The name a broker's certificate is checked against when connecting to
/// it: the host of its `controller.quorum.voters` entry (`host`), or the
/// IP address connected to.
pub fn server_name(host: Option<&str>, addr: SocketAddr) -> ServerName<'static> {
    host.map(|h| h.trim_matches(['[', ']']))
        .and_then(|h| ServerName::try_from(h.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

/// Opens a connection to another broker's internal listener at `addr`: TCP
/// with no delay, then, with `tls`, the TLS handshake (presenting this
/// broker's certificate, checking the peer's as `name`) within the
/// listener's handshake timeout. The hello is the caller's to write.
pub async fn connect(
    addr: SocketAddr,
    name: &ServerName<'static>,
    tls: Option<&TlsContext>,
) -> std::io::Result<LinkStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let Some(connector) = tls.and_then(TlsContext::connector) else {
        return Ok(LinkStream::Plain(stream));
    };
    let timeout = tls.map_or(HELLO_WAIT, |t| t.settings.handshake_timeout);
    match tokio::time::timeout(timeout, connector.connect(name.clone(), stream)).await {
        Ok(Ok(s)) => Ok(LinkStream::Tls(Box::new(s.into()))),
        Ok(Err(e)) => Err(std::io::Error::other(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("TLS handshake not done in {timeout:?}"),
        )),
    }
}

/// A connection from another broker that announced Kafka requests, its
/// hello read: the rest is served as a client connection.
#[derive(Debug)]
pub struct KafkaLink {
    /// The sender's node id, from the hello.
    pub from: u64,
    pub stream: LinkStream,
    pub addr: SocketAddr,
}

/// One received message: the sender, the Raft group, the message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: u64,
    pub group: String,
    pub message: Message,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("truncated frame")]
    Truncated,
    #[error("group name is not UTF-8")]
    BadGroup,
    #[error("bad raft message: {0}")]
    BadMessage(String),
}

/// Encodes messages for one peer as one frame (length prefix included).
pub fn encode_frame(messages: &[(String, Message)]) -> Vec<u8> {
    encode_frames(messages, usize::MAX).remove(0)
}

/// Encodes messages for one peer as frames of at most `budget` bytes each
/// (a message alone over the budget gets a frame of its own; one over
/// [`MAX_FRAME`] is dropped with a log line, as a receiver would refuse it).
/// The many groups of a busy node can queue hundreds of megabytes for a
/// peer that fell behind (each group's appends up to its in-flight window):
/// one frame of it all would be over the receiver's limit, and the
/// connection would be closed again and again.
pub fn encode_frames(messages: &[(String, Message)], budget: usize) -> Vec<Vec<u8>> {
    fn finish(body: &mut Vec<u8>, count: &mut u32, out: &mut Vec<Vec<u8>>) {
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.append(body);
        *count = 0;
        out.push(frame);
    }
    let mut out = Vec::new();
    let (mut body, mut count) = (Vec::new(), 0u32);
    for (group, m) in messages {
        let bytes = m.write_to_bytes().unwrap_or_default();
        let size = 2 + group.len() + 4 + bytes.len();
        if size + 4 > MAX_FRAME {
            tracing::error!(
                group,
                bytes = bytes.len(),
                "raft message over the frame limit: dropped"
            );
            continue;
        }
        if count > 0 && body.len() + size + 4 > budget {
            finish(&mut body, &mut count, &mut out);
        }
        body.extend_from_slice(&(group.len() as u16).to_be_bytes());
        body.extend_from_slice(group.as_bytes());
        body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        body.extend_from_slice(&bytes);
        count += 1;
    }
    if count > 0 || out.is_empty() {
        finish(&mut body, &mut count, &mut out);
    }
    out
}

/// Decodes a frame body (after its length prefix).
pub fn decode_frame(mut body: &[u8]) -> Result<Vec<(String, Message)>, FrameError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FrameError> {
        if b.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let count = u32::from_be_bytes(take(&mut body, 4)?.try_into().expect("4 bytes")) as usize;
    // Each message takes at least 6 bytes: a count past that is a lie.
    if count > body.len() / 6 + 1 {
        return Err(FrameError::Truncated);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let glen = u16::from_be_bytes(take(&mut body, 2)?.try_into().expect("2 bytes")) as usize;
        let group = std::str::from_utf8(take(&mut body, glen)?)
            .map_err(|_| FrameError::BadGroup)?
            .to_owned();
        let mlen = u32::from_be_bytes(take(&mut body, 4)?.try_into().expect("4 bytes")) as usize;
        let m = Message::parse_from_bytes(take(&mut body, mlen)?)
            .map_err(|e| FrameError::BadMessage(e.to_string()))?;
        out.push((group, m));
    }
    if !body.is_empty() {
        return Err(FrameError::BadMessage(format!(
            "{} bytes after the last message",
            body.len()
        )));
    }
    Ok(out)
}

/// Frames and messages written, over all peers.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames: AtomicU64,
    pub messages: AtomicU64,
}

/// Sends messages to peers; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    queues: Arc<std::sync::RwLock<HashMap<u64, PeerQueue>>>,
    /// What starting a connection task for a peer learnt later needs.
    base: Arc<SenderBase>,
    pub counters: Arc<Counters>,
}

/// One peer's queue and the address its connection task reaches.
struct PeerQueue {
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<(String, Message)>,
}

struct SenderBase {
    me: u64,
    hosts: HashMap<u64, String>,
    tls: Option<Arc<TlsContext>>,
    runtime: tokio::runtime::Handle,
}

impl Sender {
    /// Starts one connection task per peer (`peers`: node id → internal
    /// address); `me` is this node's id, sent in the hello.
    pub fn start(me: u64, peers: &HashMap<u64, SocketAddr>) -> Self {
        Self::start_with_tls(me, peers, &HashMap::new(), None)
    }

    /// As [`start`](Self::start), over mutual TLS when `tls` is set, each
    /// peer's certificate checked against its host in `hosts` (else its
    /// IP address). Runs inside the Tokio runtime.
    pub fn start_with_tls(
        me: u64,
        peers: &HashMap<u64, SocketAddr>,
        hosts: &HashMap<u64, String>,
        tls: Option<Arc<TlsContext>>,
    ) -> Self {
        let sender = Self {
            queues: Arc::default(),
            base: Arc::new(SenderBase {
                me,
                hosts: hosts.clone(),
                tls,
                runtime: tokio::runtime::Handle::current(),
            }),
            counters: Arc::new(Counters::default()),
        };
        for (&id, &addr) in peers {
            sender.add_peer(id, addr);
        }
        sender
    }

    /// Reaches node `id` at `addr` from now on (a broker that registered
    /// after this one started, or one that moved): a new connection task,
    /// the old one (if any) ending with its queue.
    pub fn add_peer(&self, id: u64, addr: SocketAddr) {
        if id == self.base.me {
            return;
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        if queues.get(&id).is_some_and(|q| q.addr == addr) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = Peer {
            id,
            addr,
            name: server_name(self.base.hosts.get(&id).map(String::as_str), addr),
            tls: self.base.tls.clone(),
        };
        self.base
            .runtime
            .spawn(peer_loop(self.base.me, peer, rx, self.counters.clone()));
        queues.insert(id, PeerQueue { addr, tx });
    }

    /// The other nodes this sender reaches.
    pub fn peers(&self) -> Vec<u64> {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        queues.keys().copied().collect()
    }

    /// Queues `message` (for its `to` replica's broker, see
    /// [`super::raft_id`]) of `group`. Unknown peers and
    /// stopped senders drop it.
    pub fn send(&self, group: &str, message: Message) {
        let queues = self.queues.read().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = queues.get(&super::broker_of(message.to)) {
            let _ = q.tx.send((group.to_owned(), message));
        }
    }
}

/// Where a sender reaches one peer.
struct Peer {
    id: u64,
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: Option<Arc<TlsContext>>,
}

async fn peer_loop(
    me: u64,
    peer: Peer,
    mut rx: mpsc::UnboundedReceiver<(String, Message)>,
    counters: Arc<Counters>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut batch = Vec::new();
    loop {
        // Wait for something to send before connecting.
        if batch.is_empty() {
            match rx.recv().await {
                Some(m) => batch.push(m),
                None => return,
            }
        }
        let stream = match connect(peer.addr, &peer.name, peer.tls.as_deref()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = peer.id, addr = %peer.addr, error = %e, "raft peer unreachable");
                batch.clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Messages queued meanwhile are stale: Raft resends.
                while rx.try_recv().is_ok() {}
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // The plaintext path writes to the bare TcpStream, as it always did.
        let open = match stream {
            LinkStream::Plain(s) => {
                send_until_lost(s, me, peer.id, &mut batch, &mut rx, &counters).await
            }
            LinkStream::Tls(s) => {
                send_until_lost(*s, me, peer.id, &mut batch, &mut rx, &counters).await
            }
        };
        if !open {
            return;
        }
    }
}

/// Writes the hello, then everything queued, on one connection until it
/// fails (true: connect again) or the queue is closed (false).
async fn send_until_lost<S: AsyncWrite + Unpin>(
    stream: S,
    me: u64,
    peer: u64,
    batch: &mut Vec<(String, Message)>,
    rx: &mut mpsc::UnboundedReceiver<(String, Message)>,
    counters: &Counters,
) -> bool {
    let mut w = BufWriter::new(stream);
    if w.write_all(&hello(LinkKind::Raft, me)).await.is_err() {
        return true;
    }
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let frames = encode_frames(batch, FRAME_BUDGET);
        counters
            .frames
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        counters
            .messages
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        if let Err(e) = async {
            for frame in &frames {
                w.write_all(frame).await?;
            }
            w.flush().await
        }
        .await
        {
            tracing::debug!(peer, error = %e, "raft connection lost");
            return true;
        }
        match rx.recv().await {
            Some(m) => batch.push(m),
            None => return false,
        }
    }
}

/// Where received messages go; false means "stop reading".
pub type Deliver = Arc<dyn Fn(Envelope) -> bool + Send + Sync>;

/// Accepts peers on the internal listener and hands every Raft message to
/// `deliver`; Kafka links are refused. Runs until the listener fails.
pub async fn serve(listener: TcpListener, deliver: Deliver) {
    serve_links(listener, deliver, None, None).await
}

/// As [`serve`], and hands every connection that announced Kafka requests
/// to `kafka` (the broker serves them as client connections); refused
/// when `kafka` is full or closed.
pub async fn serve_with_kafka(
    listener: TcpListener,
    deliver: Deliver,
    kafka: mpsc::Sender<KafkaLink>,
    tls: Option<Arc<TlsContext>>,
) {
    serve_links(listener, deliver, Some(kafka), tls).await
}

/// As [`serve`], over mutual TLS: a connection without a client
/// certificate `tls` trusts is closed before its hello is read.
pub async fn serve_tls(listener: TcpListener, deliver: Deliver, tls: Arc<TlsContext>) {
    serve_links(listener, deliver, None, Some(tls)).await
}

async fn serve_links(
    listener: TcpListener,
    deliver: Deliver,
    kafka: Option<mpsc::Sender<KafkaLink>>,
    tls: Option<Arc<TlsContext>>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "internal listener failed");
                return;
            }
        };
        let deliver = deliver.clone();
        let kafka = kafka.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => accept_link(LinkStream::Plain(stream), addr, &deliver, kafka).await,
                Some(tls) => match accept_tls(stream, &tls).await {
                    Ok(s) => accept_link(s, addr, &deliver, kafka).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                crate::warn_limited!(peer = %addr, error = %e, "closing internal connection");
            }
        });
    }
}

/// The TLS handshake of an accepted connection, within the handshake
/// timeout; the client must present a certificate the trust store accepts.
async fn accept_tls(stream: TcpStream, tls: &TlsContext) -> Result<LinkStream, String> {
    let timeout = tls.settings.handshake_timeout;
    match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Ok(LinkStream::Tls(Box::new(s.into()))),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err(format!(
            "TLS handshake not done within ssl.handshake.timeout.ms ({} ms)",
            timeout.as_millis()
        )),
    }
}

/// Reads a connection's hello and serves it as what it announced.
async fn accept_link(
    mut stream: LinkStream,
    addr: SocketAddr,
    deliver: &Deliver,
    kafka: Option<mpsc::Sender<KafkaLink>>,
) -> Result<(), String> {
    let mut bytes = [0u8; HELLO_LEN];
    match tokio::time::timeout(HELLO_WAIT, stream.read_exact(&mut bytes)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("no hello: {e}")),
        Err(_) => return Err(format!("no hello in {HELLO_WAIT:?}")),
    }
    match parse_hello(&bytes)? {
        (LinkKind::Raft, from) => match stream {
            // The plaintext path reads the bare TcpStream, as it always did.
            LinkStream::Plain(s) => read_peer(s, from, deliver).await,
            LinkStream::Tls(s) => read_peer(*s, from, deliver).await,
        },
        (LinkKind::Kafka, from) => {
            let Some(kafka) = kafka else {
                return Err("inter-broker Kafka requests are not served here".into());
            };
            kafka
                .try_send(KafkaLink { from, stream, addr })
                .map_err(|e| format!("Kafka link from node {from} not taken: {e}"))
        }
    }
}

async fn read_peer<S: AsyncRead + Unpin>(
    mut stream: S,
    from: u64,
    deliver: &Deliver,
) -> Result<(), String> {
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len).to_string());
        }
        body.resize(len, 0);
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        for (group, message) in decode_frame(&body).map_err(|e| e.to_string())? {
            if !deliver(Envelope {
                from,
                group,
                message,
            }) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    fn msg(to: u64, commit: u64) -> Message {
        Message {
            msg_type: MessageType::MsgHeartbeat,
            to,
            from: 1,
            commit,
            ..Message::default()
        }
    }

    #[test]
    fn frames_round_trip_and_damage_is_an_error() {
        let msgs: Vec<(String, Message)> =
            (0..20).map(|i| (format!("topic-{i}"), msg(2, i))).collect();
        let frame = encode_frame(&msgs);
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let back = decode_frame(&frame[4..]).unwrap();
        assert_eq!(back, msgs);
        for cut in 4..frame.len() - 1 {
            assert!(decode_frame(&frame[4..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = frame[4..].to_vec();
        lying[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_frame(&lying).is_err());
    }

    /// An append carrying `mib` MiB of entry data.
    fn big(to: u64, mib: usize) -> Message {
        let entry = raft::eraftpb::Entry {
            data: vec![7u8; mib << 20].into(),
            ..Default::default()
        };
        Message {
            msg_type: MessageType::MsgAppend,
            to,
            from: 1,
            entries: vec![entry].into(),
            ..Message::default()
        }
    }

    #[test]
    fn frames_stay_within_the_budget() {
        let msgs: Vec<(String, Message)> = (0..10).map(|i| (format!("g{i}"), big(2, 1))).collect();
        let frames = encode_frames(&msgs, 3 << 20);
        assert_eq!(frames.len(), 5, "two 1 MiB messages per 3 MiB frame");
        let mut back = Vec::new();
        for f in &frames {
            assert!(f.len() <= 3 << 20);
            back.extend(decode_frame(&f[4..]).unwrap());
        }
        assert_eq!(back, msgs);
        // A message over the budget alone still goes, in a frame of its own.
        assert_eq!(encode_frames(&msgs[..2], 1 << 20).len(), 2);
    }

    /// 80 MiB queued at once for one peer (more than a receiver accepts in
    /// one frame) all arrive.
    #[tokio::test]
    async fn a_backlog_over_the_frame_limit_arrives_whole() {
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(l, to_channel(tx)));
        let sender = Sender::start(1, &HashMap::from([(2, addr)]));
        for i in 0..80 {
            sender.send(&format!("g{i}"), big(2, 1));
        }
        for i in 0..80 {
            let e = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("messages arrive")
                .unwrap();
            assert_eq!(e.group, format!("g{i}"));
        }
    }

    fn to_channel(tx: mpsc::UnboundedSender<Envelope>) -> Deliver {
        Arc::new(move |e| tx.send(e).is_ok())
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[tokio::test]
    async fn messages_of_many_groups_arrive_in_order_in_few_frames() {
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(l, to_channel(tx)));
        let sender = Sender::start(1, &HashMap::from([(2, addr)]));
        for i in 0..2000u64 {
            sender.send(&format!("g{}", i % 50), msg(2, i));
        }
        sender.send("nobody", msg(9, 0)); // unknown peer: dropped
        let mut got = Vec::new();
        while got.len() < 2000 {
            let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("messages arrive")
                .unwrap();
            assert_eq!(e.from, 1);
            got.push((e.group, e.message.commit));
        }
        let want: Vec<(String, u64)> = (0..2000u64).map(|i| (format!("g{}", i % 50), i)).collect();
        assert_eq!(got, want);
        let frames = sender.counters.frames.load(Ordering::Relaxed);
        assert!(
            frames < 200,
            "2000 queued messages went out in {frames} frames"
        );
    }

    #[test]
    fn hellos_round_trip_and_others_are_refused() {
        for kind in [LinkKind::Raft, LinkKind::Kafka] {
            assert_eq!(parse_hello(&hello(kind, 42)), Ok((kind, 42)));
        }
        assert_eq!(&hello(LinkKind::Kafka, 7)[..6], b"SLKF\x00\x02");
        // Another version (an earlier release's 1, a later one's 3) is
        // refused: their logs would number Raft's own entries otherwise.
        for other in [1, 3] {
            let mut h = hello(LinkKind::Kafka, 7);
            h[5] = other;
            assert!(parse_hello(&h).is_err());
        }
        assert!(parse_hello(b"GET / HTTP/1.1").is_err());
        assert!(parse_hello(&[0u8; HELLO_LEN]).is_err());
    }

    /// Reads from `s` until it is closed; false when it is still open
    /// after 5 s.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn kafka_links_are_handed_over_after_their_hello() {
        let (l, addr) = listener().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let (links_tx, mut links) = mpsc::channel(4);
        tokio::spawn(serve_with_kafka(l, to_channel(tx), links_tx, None));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello(LinkKind::Kafka, 3)).await.unwrap();
        s.write_all(b"request").await.unwrap();
        let mut link = tokio::time::timeout(Duration::from_secs(5), links.recv())
            .await
            .expect("the link is handed over")
            .unwrap();
        assert_eq!(link.from, 3);
        assert_eq!(link.addr, s.local_addr().unwrap());
        // The hello is consumed; what follows it is left for the server.
        let mut rest = [0u8; 7];
        link.stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"request");
        // Garbage and a short hello are closed, and not handed over.
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(closed(&mut junk).await);
        let mut short = TcpStream::connect(addr).await.unwrap();
        short
            .write_all(&hello(LinkKind::Kafka, 3)[..5])
            .await
            .unwrap();
        short.shutdown().await.unwrap();
        assert!(closed(&mut short).await);
        assert!(links.try_recv().is_err());
    }

    #[tokio::test]
    async fn kafka_links_are_refused_where_nothing_serves_them() {
        let (l, addr) = listener().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(l, to_channel(tx)));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello(LinkKind::Kafka, 3)).await.unwrap();
        assert!(closed(&mut s).await);
    }

    #[tokio::test]
    async fn a_restarted_peer_is_reached_again_and_garbage_is_refused() {
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(l, to_channel(tx.clone())));
        let sender = Sender::start(1, &HashMap::from([(2, addr)]));
        sender.send("g", msg(2, 1));
        assert_eq!(rx.recv().await.unwrap().message.commit, 1);
        server.abort();
        let _ = server.await;
        // Sends while the peer is down are lost, not queued forever.
        for i in 0..5 {
            sender.send("g", msg(2, 100 + i));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let l = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(serve(l, to_channel(tx)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            sender.send("g", msg(2, 7));
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                && e.message.commit == 7
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the peer is reached again"
            );
        }
        // A client that is not a peer is closed; the listener goes on.
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0);
        sender.send("g", msg(2, 8));
        let e = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let e = rx.recv().await.unwrap();
                if e.message.commit == 8 {
                    return e;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(e.group, "g");
    }

    // --- mutual TLS ---------------------------------------------------------

    use crate::security::tls::SslSettings;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    impl Ca {
        fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, name);
            params.distinguished_name = dn;
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Self { cert, key }
        }

        /// A broker's certificate (chain PEM, key PEM): for 127.0.0.1 and
        /// localhost, good as server and as client.
        fn broker(&self, cn: &str) -> (String, String) {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            params.distinguished_name = dn;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            (cert.pem(), key.serialize_pem())
        }
    }

    /// The internal listener's TLS of a broker holding `cert`, trusting
    /// `ca`.
    fn internal_tls(cert: &(String, String), ca: &Ca) -> Arc<TlsContext> {
        let mut config = crate::config::Config::default();
        for (k, v) in [
            ("ssl.keystore.certificate.chain", cert.0.clone()),
            ("ssl.keystore.key", cert.1.clone()),
            ("ssl.truststore.certificates", ca.cert.pem()),
            ("ssl.handshake.timeout.ms", "2000".to_string()),
        ] {
            config.ssl.insert(k.to_string(), v);
        }
        TlsContext::internal(SslSettings::for_listener(&config, "SSL").unwrap()).unwrap()
    }

    /// A TLS client trusting `ca`, with no certificate of its own.
    fn anonymous_client(ca: &Ca) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    fn loopback() -> ServerName<'static> {
        ServerName::try_from("127.0.0.1").unwrap()
    }

    #[tokio::test]
    async fn brokers_exchange_raft_messages_over_mutual_tls() {
        let ca = Ca::new("brokers");
        let (one, two) = (
            internal_tls(&ca.broker("broker-1"), &ca),
            internal_tls(&ca.broker("broker-2"), &ca),
        );
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_tls(l, to_channel(tx), two));
        let sender = Sender::start_with_tls(
            1,
            &HashMap::from([(2, addr)]),
            &HashMap::from([(2, "localhost".to_string())]),
            Some(one),
        );
        for i in 0..500u64 {
            sender.send(&format!("g{}", i % 5), msg(2, i));
        }
        for i in 0..500u64 {
            let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("messages arrive")
                .unwrap();
            assert_eq!(
                (e.from, e.group, e.message.commit),
                (1, format!("g{}", i % 5), i)
            );
        }
    }

    /// Nothing arrives from `rx` within `wait`.
    async fn nothing_delivered(rx: &mut mpsc::UnboundedReceiver<Envelope>, wait: Duration) {
        if let Ok(Some(e)) = tokio::time::timeout(wait, rx.recv()).await {
            panic!("delivered from an untrusted peer: {e:?}");
        }
    }

    #[tokio::test]
    async fn hosts_without_a_trusted_certificate_cannot_send_raft_messages() {
        let ca = Ca::new("brokers");
        let evil = Ca::new("evil");
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = internal_tls(&ca.broker("broker-2"), &ca);
        tokio::spawn(serve_tls(l, to_channel(tx), server));

        // A certificate of another CA (the server's own is trusted by it).
        let intruder = internal_tls(&evil.broker("broker-1"), &ca);
        let sender = Sender::start_with_tls(
            1,
            &HashMap::from([(2, addr)]),
            &HashMap::new(),
            Some(intruder),
        );
        for i in 0..20 {
            sender.send("g", msg(2, i));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        nothing_delivered(&mut rx, Duration::from_millis(500)).await;

        // TLS without a client certificate: closed, its hello and frame
        // unread. (With TLS 1.3 the client sees its handshake done before
        // the server has judged its certificate.)
        let anon = anonymous_client(&ca)
            .connect(loopback(), TcpStream::connect(addr).await.unwrap())
            .await;
        if let Ok(mut s) = anon {
            let _ = s.write_all(&hello(LinkKind::Raft, 1)).await;
            let _ = s
                .write_all(&encode_frame(&[("g".into(), msg(2, 99))]))
                .await;
            let _ = s.flush().await;
            let mut buf = [0u8; 64];
            let end = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("closed promptly");
            assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
        }

        // Plaintext: the hello and a frame, closed without being read.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(&hello(LinkKind::Raft, 1)).await.unwrap();
        let _ = plain
            .write_all(&encode_frame(&[("g".into(), msg(2, 100))]))
            .await;
        assert!(closed(&mut plain).await);

        // A sender speaking plaintext to the TLS listener.
        let plain_sender = Sender::start(1, &HashMap::from([(2, addr)]));
        for i in 0..10 {
            plain_sender.send("g", msg(2, 200 + i));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nothing_delivered(&mut rx, Duration::from_millis(500)).await;

        // And a broker whose certificate is trusted still gets through.
        let good = internal_tls(&ca.broker("broker-1"), &ca);
        let sender =
            Sender::start_with_tls(1, &HashMap::from([(2, addr)]), &HashMap::new(), Some(good));
        sender.send("g", msg(2, 7));
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a trusted broker gets through")
            .unwrap();
        assert_eq!(e.message.commit, 7);
    }

    #[tokio::test]
    async fn a_sender_refuses_a_peer_it_does_not_trust() {
        let ca = Ca::new("brokers");
        let evil = Ca::new("evil");
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        // An impostor listener trusting our CA but holding another CA's
        // certificate: our sender does not send it anything.
        tokio::spawn(serve_tls(
            l,
            to_channel(tx),
            internal_tls(&evil.broker("broker-2"), &ca),
        ));
        let sender = Sender::start_with_tls(
            1,
            &HashMap::from([(2, addr)]),
            &HashMap::new(),
            Some(internal_tls(&ca.broker("broker-1"), &ca)),
        );
        for i in 0..10 {
            sender.send("g", msg(2, i));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nothing_delivered(&mut rx, Duration::from_millis(500)).await;
        // Nor is a certificate for another name accepted.
        let name = ServerName::try_from("broker-9.example").unwrap();
        let good = internal_tls(&ca.broker("broker-1"), &ca);
        let (l, addr) = listener().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_tls(
            l,
            to_channel(tx),
            internal_tls(&ca.broker("broker-2"), &ca),
        ));
        assert!(connect(addr, &name, Some(&good)).await.is_err());
        assert!(connect(addr, &loopback(), Some(&good)).await.is_ok());
    }

    #[tokio::test]
    async fn kafka_links_over_mutual_tls_are_handed_over() {
        let ca = Ca::new("brokers");
        let (l, addr) = listener().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let (links_tx, mut links) = mpsc::channel(4);
        let server = internal_tls(&ca.broker("broker-2"), &ca);
        tokio::spawn(serve_with_kafka(l, to_channel(tx), links_tx, Some(server)));
        let me = internal_tls(&ca.broker("broker-1"), &ca);
        let mut s = connect(addr, &loopback(), Some(&me)).await.unwrap();
        assert!(matches!(s, LinkStream::Tls(_)));
        s.write_all(&hello(LinkKind::Kafka, 3)).await.unwrap();
        s.write_all(b"request").await.unwrap();
        s.flush().await.unwrap();
        let mut link = tokio::time::timeout(Duration::from_secs(5), links.recv())
            .await
            .expect("the link is handed over")
            .unwrap();
        assert_eq!(link.from, 3);
        assert!(matches!(link.stream, LinkStream::Tls(_)));
        let mut rest = [0u8; 7];
        link.stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"request");
        link.stream.write_all(b"answer").await.unwrap();
        link.stream.flush().await.unwrap();
        let mut answer = [0u8; 6];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
        // A plaintext SLKF hello is closed and not handed over.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(&hello(LinkKind::Kafka, 3)).await.unwrap();
        assert!(closed(&mut plain).await);
        assert!(links.try_recv().is_err());
    }
}
