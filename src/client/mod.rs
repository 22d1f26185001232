//! A small Kafka wire client, shared by `sluice bench`, the admin CLI
//! (`crate::cli`) and the broker's requests to other brokers: one
//! connection, the versions negotiated with ApiVersions, requests written
//! and answers read on separate halves so that several requests can be in
//! flight; answers awaited for a bounded time, retries of retriable errors
//! bounded too, and error codes named for people.

pub mod sasl;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProducerId, RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// How the bench reaches brokers over TLS (SSL listeners): the rustls
/// client configuration; None for plaintext.
pub type Tls = Option<std::sync::Arc<rustls::ClientConfig>>;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The TLS client configuration trusting the CA certificates of the PEM
/// file `ca` (None: plaintext), presenting `cert` with `key` when given
/// (for a listener with ssl.client.auth).
pub fn tls_config(
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Tls> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Some(ca) = ca else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca: {e}"))? {
        roots.add(cert.map_err(|e| format!("--tls-ca: {e}"))?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("--tls-cert: {e}"))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| format!("--tls-cert: {e}"))?,
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key: {e}"))?,
        )?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(std::sync::Arc::new(config)))
}
pub type Result<T> = std::result::Result<T, Error>;

/// The longest wait for an answer in [`answer`] (produce requests carry a
/// 30 s timeout of their own).
pub const ANSWER_WAIT: Duration = Duration::from_secs(40);
/// How long [`Retry`] retries an error before the run gives up.
pub const RETRY_FOR: Duration = Duration::from_secs(10);
/// The transaction timeout InitProducerId asks for (Kafka's default).
pub const TXN_TIMEOUT_MS: i32 = 60_000;

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub const PRODUCER_FENCED: i16 = 90;
/// Errors a producer waits out: the coordinator loading or moving, or the
/// previous transaction still completing.
pub const RETRIABLE: &[i16] = &[
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    CONCURRENT_TRANSACTIONS,
];

/// The request-writing half, with the versions the broker serves.
pub struct Sender {
    half: WriteHalf,
    next_correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

/// The answer-reading half.
pub struct Receiver {
    half: ReadHalf,
    /// Where answers are read into: reused once the previous answer's
    /// bytes are dropped, and never zeroed first.
    buf: BytesMut,
}

/// A connection to `addr`, over TLS when `tls` is set.
pub async fn connect(addr: &str, tls: &Tls) -> Result<(Sender, Receiver)> {
    let Some(config) = tls else {
        return connect_with_hello(addr, &[]).await;
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true)?;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    let (r, w) = tokio::io::split(stream);
    handshake(Box::new(w), Box::new(r)).await
}

/// As [`connect`], writing `hello` first: a broker's internal listener
/// takes Kafka requests after the hello of an inter-broker link.
pub async fn connect_with_hello(addr: &str, hello: &[u8]) -> Result<(Sender, Receiver)> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true)?;
    connect_tcp(stream, hello).await
}

/// As [`connect_with_hello`], on a TCP connection already open.
pub async fn connect_tcp(stream: TcpStream, hello: &[u8]) -> Result<(Sender, Receiver)> {
    let (r, mut w) = stream.into_split();
    if !hello.is_empty() {
        w.write_all(hello).await?;
    }
    handshake(Box::new(w), Box::new(r)).await
}

/// As [`connect_with_hello`], on a connection already open (TLS or not).
pub async fn connect_stream<S>(stream: S, hello: &[u8]) -> Result<(Sender, Receiver)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, mut w) = tokio::io::split(stream);
    if !hello.is_empty() {
        w.write_all(hello).await?;
    }
    handshake(Box::new(w), Box::new(r)).await
}

/// Asks the broker's API versions on a new connection.
async fn handshake(w: WriteHalf, r: ReadHalf) -> Result<(Sender, Receiver)> {
    let mut tx = Sender {
        half: w,
        next_correlation: 1,
        versions: HashMap::new(),
    };
    let mut rx = Receiver {
        half: r,
        buf: BytesMut::new(),
    };
    // ApiVersions v0: every broker answers it.
    let corr = tx
        .send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await?;
    let resp: ApiVersionsResponse = rx.recv(corr, 0).await?;
    if resp.error_code != 0 {
        return Err(format!("ApiVersions failed with error {}", resp.error_code).into());
    }
    tx.versions = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    Ok((tx, rx))
}

impl Sender {
    /// The highest version in `ours` that the broker serves.
    pub fn version(&self, key: ApiKey, ours: RangeInclusive<i16>) -> Result<i16> {
        let (min, max) = self
            .versions
            .get(&(key as i16))
            .copied()
            .ok_or_else(|| format!("the broker does not serve {key:?}"))?;
        let v = max.min(*ours.end());
        if v < min.max(*ours.start()) {
            return Err(
                format!("no common version of {key:?}: broker {min}-{max}, ours {ours:?}").into(),
            );
        }
        Ok(v)
    }

    /// Writes one request; returns its correlation id.
    pub async fn send<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<i32> {
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice")))
            .encode(&mut body, Req::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.half.write_all(&frame).await?;
        // A plain TCP half writes through; a TLS half may keep records
        // until flushed.
        self.half.flush().await?;
        Ok(correlation)
    }
}

impl Receiver {
    /// Reads the next answer, which must be for `correlation`.
    pub async fn recv<Resp: Decodable + HeaderVersion>(
        &mut self,
        correlation: i32,
        version: i16,
    ) -> Result<Resp> {
        let mut len = [0u8; 4];
        self.half.read_exact(&mut len).await?;
        let n = i32::from_be_bytes(len);
        if !(0..=(256 << 20)).contains(&n) {
            return Err(format!("bad response length {n}").into());
        }
        let n = n as usize;
        self.buf.clear();
        self.buf.reserve(n);
        while self.buf.len() < n {
            let want = n - self.buf.len();
            let mut rest = (&mut self.buf).limit(want);
            if self.half.read_buf(&mut rest).await? == 0 {
                return Err("connection closed inside a response".into());
            }
        }
        let mut b = self.buf.split().freeze();
        let header = ResponseHeader::decode(&mut b, Resp::header_version(version))?;
        if header.correlation_id != correlation {
            return Err(format!(
                "answer {} out of order (expected {correlation})",
                header.correlation_id
            )
            .into());
        }
        let resp = Resp::decode(&mut b, version)?;
        if b.has_remaining() {
            return Err("trailing bytes in a response".into());
        }
        Ok(resp)
    }
}

/// Kafka's name of an error code, as its Java clients print it
/// (`TOPIC_ALREADY_EXISTS`).
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// A broker's error code for a person: what failed, the error's name and
/// code, and for the transactional ones a hint.
pub fn failure(what: &str, code: i16, gave_up: bool) -> Error {
    let name = ResponseError::try_from_code(code).map_or("no error".to_owned(), |e| e.to_string());
    let retried = if gave_up {
        format!(", still after {} s of retries", RETRY_FOR.as_secs())
    } else {
        String::new()
    };
    let hint = match code {
        COORDINATOR_NOT_AVAILABLE => {
            ": the broker has no transaction coordinator for this id yet (a cluster may still be electing the leader of its __transaction_state partition; a broker without transactions never has one)"
        }
        PRODUCER_FENCED | INVALID_PRODUCER_EPOCH => {
            ": another producer with the same transactional id took over (this one is fenced), or the transaction ran past its timeout"
        }
        CONCURRENT_TRANSACTIONS => ": the id's previous transaction was still completing",
        _ => "",
    };
    format!("{what} failed: {name} (error {code}){retried}{hint}").into()
}

/// Retries of one request while its error is one worth waiting out, for at
/// most [`RETRY_FOR`].
pub struct Retry {
    what: String,
    until: Instant,
    pause: Duration,
}

impl Retry {
    pub fn new(what: String, pause: Duration) -> Self {
        Self {
            what,
            until: Instant::now() + RETRY_FOR,
            pause,
        }
    }

    /// After a pause, Ok to try again; the error for a person when `code`
    /// is not `retriable` or the retries have run out.
    pub async fn after(&self, code: i16, retriable: &[i16]) -> Result<()> {
        if !retriable.contains(&code) {
            return Err(failure(&self.what, code, false));
        }
        if Instant::now() + self.pause > self.until {
            return Err(failure(&self.what, code, true));
        }
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

/// Reads the answer to `correlation`, waiting at most [`ANSWER_WAIT`].
pub async fn answer<Resp: Decodable + HeaderVersion>(
    rx: &mut Receiver,
    key: ApiKey,
    correlation: i32,
    version: i16,
) -> Result<Resp> {
    tokio::time::timeout(ANSWER_WAIT, rx.recv(correlation, version))
        .await
        .map_err(|_| format!("no answer to {key:?} within {} s", ANSWER_WAIT.as_secs()))?
}

/// One request and its answer.
pub async fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
    tx: &mut Sender,
    rx: &mut Receiver,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Result<Resp> {
    let correlation = tx.send(key, version, req).await?;
    answer(rx, key, correlation, version).await
}

/// A producer id and epoch from InitProducerId: an idempotent producer's
/// (no transactional id), or the transactional id's, from its coordinator.
pub async fn init_producer_id(
    tx: &mut Sender,
    rx: &mut Receiver,
    transactional_id: Option<&str>,
) -> Result<(i64, i16)> {
    let v = tx.version(ApiKey::InitProducerId, 0..=4)?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned()))),
        )
        .with_transaction_timeout_ms(TXN_TIMEOUT_MS)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let what = match transactional_id {
        Some(id) => format!("InitProducerId of transactional id {id}"),
        None => "InitProducerId".to_owned(),
    };
    let retry = Retry::new(what, Duration::from_millis(20));
    loop {
        let r: InitProducerIdResponse = call(tx, rx, ApiKey::InitProducerId, v, &req).await?;
        if r.error_code == 0 {
            return Ok((r.producer_id.0, r.producer_epoch));
        }
        retry.after(r.error_code, RETRIABLE).await?;
    }
}
