//! One client connection: frames in, responses out, in request order.
//!
//! Requests on a connection are served one after another and answered in
//! order, as Kafka does: that is what keeps an idempotent producer's pipelined
//! batches in sequence order. One step further than Kafka: a Produce is
//! appended when it is read, and while it waits for its acknowledgements
//! (the flush, or the Raft commit) the connection goes on reading and
//! appending the Produce requests behind it (up to [`MAX_WAITING`]). So a
//! client with five requests in flight has them all ride on the same flush
//! instead of one flush each. On a single broker only: in a cluster a
//! Produce is answered before the next is appended (see `pipelined`). Any other request first waits until the
//! Produce requests before it are answered, so it sees their effects.
//! Frames already buffered are all answered before the socket is flushed, so a
//! pipelining client gets its responses in few writes.
//!
//! The stream is a plain TCP stream or a TLS stream over one (SSL and
//! SASL_SSL listeners, handshake done by the server): reads and writes never
//! overlap on a connection, so the stream is not split, and a plain TCP
//! stream is served exactly as before, without any TLS layer in between.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use sluice_protocol::Result;
use sluice_protocol::codec::encode_response;
use sluice_protocol::frame::FrameDecoder;
use sluice_protocol::header::api_name;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::watch;
use tracing::Instrument;

use crate::broker::Broker;
use crate::handlers::{self, Later, Parsed, RequestContext};
use crate::security::Session;
use crate::security::sasl::gate::{Admit, Gate};

/// Produce requests appended and not yet answered, at most, per connection.
pub const MAX_WAITING: usize = 64;

/// A Produce appended and waiting for its acknowledgements.
struct Waiting {
    answer: Later,
    version: i16,
    received: Instant,
}

/// What serving a frame gave: an answer now (or none), or one to come.
enum Step {
    Now(Option<Bytes>),
    /// A response in parts (a Fetch: encoded parts and record sets).
    Parts(Vec<handlers::Part>),
    Later(Later),
}

/// The API key of a request frame (its first two bytes).
fn api_key_of(frame: &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(frame.get(..2)?.try_into().ok()?))
}

/// The waiting answer at the head if it is already there.
fn ready(w: &mut Waiting) -> Option<Result<Option<Bytes>>> {
    match w
        .answer
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

pub async fn serve<S: AsyncRead + AsyncWrite + crate::zero_copy::Socket + Unpin>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    session: Session,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, listener = %session.listener, "connection opened");
    let net = broker.metrics.listener(&session.listener);
    let _open = net.opened();
    let mut session = Arc::new(session);
    // On a SASL listener: authentication first (see security::sasl::gate).
    let mut gate = Gate::for_session(&broker, &session);
    // Writes are buffered; reads go straight to the stream underneath.
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let decoder = FrameDecoder::new(broker.config.socket_request_max_bytes);
    let unauthenticated = FrameDecoder::new(
        broker
            .config
            .sasl_server_max_receive_size
            .min(broker.config.socket_request_max_bytes),
    );
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    // In a cluster a Produce waits for its answer before the next is
    // appended: a replicated partition proposes at predicted offsets, and
    // a proposal refused after a later one from the same producer was
    // proposed would let that later batch in ahead of it (an idempotent
    // producer's sequence gap, then a duplicate when it retries both).
    let pipelined = broker.cluster().is_none();
    // When the bytes of the frames being served arrived.
    let mut received = std::time::Instant::now();
    loop {
        loop {
            let d = match &gate {
                Some(g) if g.authenticating() => &unauthenticated,
                _ => &decoder,
            };
            let frame = match d.decode(&mut buf) {
                Ok(Some(frame)) => frame.freeze(),
                Ok(None) => break,
                Err(e) => {
                    warn_limited!(%peer, error = %e, "closing connection: bad frame");
                    return;
                }
            };
            let frame = match &mut gate {
                None => frame,
                Some(g) => match g.admit(&broker, frame, &mut session).await {
                    Admit::Serve(frame) => frame,
                    Admit::Reply(reply) => {
                        if let Err(e) = writer.write_all(&reply).await {
                            tracing::debug!(%peer, error = %e, "write failed");
                            return;
                        }
                        continue;
                    }
                    Admit::Fail { reply, reason } => {
                        info_limited!(%peer, %reason, "closing connection: SASL authentication failed");
                        let _ = writer.flush().await;
                        // Against password guessing: the answer comes late.
                        tokio::time::sleep(Duration::from_millis(
                            broker.config.connection_failed_authentication_delay_ms,
                        ))
                        .await;
                        if let Some(reply) = reply {
                            let _ = writer.write_all(&reply).await;
                        }
                        let _ = writer.flush().await;
                        return;
                    }
                    Admit::Close(reason) => {
                        warn_limited!(%peer, %reason, "closing connection");
                        let _ = writer.flush().await;
                        return;
                    }
                },
            };
            let produce = api_key_of(&frame) == Some(ApiKey::Produce as i16);
            if !produce {
                // Answered in order: the Produce requests before it first.
                while let Some(sent) =
                    answer_oldest(&broker, &net, &mut writer, peer, &mut waiting).await
                {
                    if !sent {
                        return;
                    }
                }
            }
            let mut served = None;
            // Boxed: serving a request takes far more state than waiting
            // for one, and an idle connection should not carry it (its task
            // is as large as its largest state: 9.6 KiB unboxed, 1.8 KiB so).
            match Box::pin(process(
                &broker,
                frame,
                peer,
                &session,
                received,
                &mut served,
            ))
            .await
            {
                Ok(Step::Later(answer)) => {
                    let version = served.map_or(0, |(_, v)| v);
                    waiting.push_back(Waiting {
                        answer,
                        version,
                        received,
                    });
                    if (waiting.len() >= MAX_WAITING || !pipelined)
                        && answer_oldest(&broker, &net, &mut writer, peer, &mut waiting).await
                            == Some(false)
                    {
                        return;
                    }
                }
                Ok(Step::Now(Some(response))) => {
                    let writing = std::time::Instant::now();
                    if let Err(e) = writer.write_all(&response).await {
                        tracing::debug!(%peer, error = %e, "write failed");
                        return;
                    }
                    net.sent.inc_by(response.len() as u64);
                    if let Some((api, version)) = served {
                        broker
                            .metrics
                            .observe_request(api, version, received.elapsed());
                        if matches!(api, "Produce" | "Fetch") {
                            broker.metrics.observe_stage(
                                api,
                                crate::metrics::STAGE_SEND,
                                writing.elapsed(),
                            );
                        }
                    }
                }
                Ok(Step::Parts(parts)) => {
                    let writing = std::time::Instant::now();
                    match crate::zero_copy::write_parts(&mut writer, &parts).await {
                        Ok((sent, from_files)) => {
                            net.sent.inc_by(sent as u64);
                            net.sent_from_file.inc_by(from_files as u64);
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "write failed");
                            return;
                        }
                    };
                    if let Some((api, version)) = served {
                        let metrics = &broker.metrics;
                        metrics.observe_request(api, version, received.elapsed());
                        metrics.observe_stage(api, crate::metrics::STAGE_SEND, writing.elapsed());
                    }
                }
                Ok(Step::Now(None)) => {
                    if let Some((api, version)) = served {
                        broker
                            .metrics
                            .observe_request(api, version, received.elapsed());
                    }
                }
                Err(e) => {
                    warn_limited!(%peer, error = %e, "closing connection: bad request");
                    let _ = writer.flush().await;
                    return;
                }
            }
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!(%peer, error = %e, "write failed");
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            read = writer.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    net.received.inc_by(n as u64);
                    received = std::time::Instant::now();
                }
                Ok(0) => {
                    if !buf.is_empty() {
                        warn_limited!(%peer, bytes = buf.len(), "connection closed inside a frame");
                    }
                    tracing::debug!(%peer, "connection closed by client");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    return;
                }
            },
            answer = async { waiting.front_mut().expect("checked").answer.as_mut().await },
                if !waiting.is_empty() => {
                let w = waiting.pop_front().expect("checked");
                if !send(&broker, &net, &mut writer, peer, answer, (w.version, w.received)).await {
                    return;
                }
                // Those behind it that are answered too go in the same write.
                while let Some(answer) = waiting.front_mut().and_then(ready) {
                    let w = waiting.pop_front().expect("checked");
                    if !send(&broker, &net, &mut writer, peer, answer, (w.version, w.received)).await {
                        return;
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Waits for the oldest waiting Produce's answer and writes it: None when
/// none waits, Some(false) when the connection is to be closed.
async fn answer_oldest<W: AsyncWrite + Unpin>(
    broker: &Broker,
    net: &crate::metrics::ListenerMetrics,
    writer: &mut W,
    peer: SocketAddr,
    waiting: &mut VecDeque<Waiting>,
) -> Option<bool> {
    let w = waiting.pop_front()?;
    let answer = w.answer.await;
    Some(send(broker, net, writer, peer, answer, (w.version, w.received)).await)
}

/// Writes a Produce's answer (none for acks=0); false when the connection
/// is to be closed.
async fn send<W: AsyncWrite + Unpin>(
    broker: &Broker,
    net: &crate::metrics::ListenerMetrics,
    writer: &mut W,
    peer: SocketAddr,
    answer: Result<Option<Bytes>>,
    (version, received): (i16, Instant),
) -> bool {
    let response = match answer {
        Ok(Some(response)) => response,
        Ok(None) => {
            broker
                .metrics
                .observe_request("Produce", version, received.elapsed());
            return true;
        }
        Err(e) => {
            warn_limited!(%peer, error = %e, "closing connection: bad request");
            let _ = writer.flush().await;
            return false;
        }
    };
    let writing = Instant::now();
    if let Err(e) = writer.write_all(&response).await {
        tracing::debug!(%peer, error = %e, "write failed");
        return false;
    }
    net.sent.inc_by(response.len() as u64);
    let metrics = &broker.metrics;
    metrics.observe_request("Produce", version, received.elapsed());
    metrics.observe_stage("Produce", crate::metrics::STAGE_SEND, writing.elapsed());
    true
}

/// Serves one request frame; `None` means "no response" (acks=0 produce).
/// `served` names the API and version once the header is read.
async fn process(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: SocketAddr,
    session: &Arc<Session>,
    received: std::time::Instant,
    served: &mut Option<(&'static str, i16)>,
) -> Result<Step> {
    let (key, version, header, body) = match handlers::parse_request(frame, &broker.versions)? {
        Parsed::Request {
            key,
            version,
            header,
            body,
        } => (key, version, header, body),
        Parsed::UnsupportedApiVersions {
            correlation_id,
            version,
        } => {
            // Answer in a v0 body listing what we support; the client retries.
            let (body, v) = broker.versions.api_versions_response(version);
            tracing::debug!(%peer, version, "ApiVersions version not supported; sent our ranges");
            return encode_response(correlation_id, ApiKey::ApiVersions, v, &body)
                .map(|r| Step::Now(Some(r)));
        }
    };
    if key == ApiKey::Metadata && broker.cluster().is_some_and(|c| c.cut_off()) {
        // What this broker knows of leaders is stale while it is cut off
        // from the quorum; closing makes the client ask another broker.
        warn_limited!(%peer, "Metadata refused: this broker is cut off from the controller quorum; closing the connection");
        return Err(sluice_protocol::ProtocolError::Refused(
            "cut off from the controller quorum".into(),
        ));
    }
    let api = api_name(key);
    *served = Some((api, version));
    if matches!(key, ApiKey::Produce | ApiKey::Fetch) {
        broker
            .metrics
            .observe_stage(api, crate::metrics::STAGE_QUEUE, received.elapsed());
    }
    let span = tracing::info_span!(
        "request",
        api = api_name(key),
        v = version,
        corr = header.correlation_id,
        client = header.client_id.as_deref().unwrap_or(""),
        %peer,
    );
    let ctx = RequestContext {
        broker: broker.clone(),
        header,
        version,
        peer,
        session: session.clone(),
    };
    if key == ApiKey::Fetch {
        return handlers::fetch_spliced(ctx, body)
            .instrument(span)
            .await
            .map(Step::Parts);
    }
    if key == ApiKey::Produce {
        return handlers::produce_appended(ctx, body)
            .instrument(span)
            .await
            .map(Step::Later);
    }
    handlers::handle(ctx, key, body)
        .instrument(span)
        .await
        .map(Step::Now)
}
