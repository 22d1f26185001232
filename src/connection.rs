//! One client connection: frames in, responses out, in request order.
//!
//! Requests on a connection are served one after another, as Kafka does: that is
//! what keeps an idempotent producer's pipelined batches in sequence order.
//! Frames already buffered are all answered before the socket is flushed, so a
//! pipelining client gets its responses in few writes.
//!
//! The stream is a plain TCP stream or a TLS stream over one (SSL and
//! SASL_SSL listeners, handshake done by the server): reads and writes never
//! overlap on a connection, so the stream is not split, and a plain TCP
//! stream is served exactly as before, without any TLS layer in between.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::handlers::{self, Parsed, RequestContext};
use crate::security::Session;
use crate::security::sasl::gate::{Admit, Gate};

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
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
            let mut served = None;
            match process(&broker, frame, peer, &session, received, &mut served).await {
                Ok(Some(response)) => {
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
                Ok(None) => {
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
            _ = stop.changed() => return,
        }
    }
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
) -> Result<Option<Bytes>> {
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
            return encode_response(correlation_id, ApiKey::ApiVersions, v, &body).map(Some);
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
    handlers::handle(ctx, key, body).instrument(span).await
}
