//! The admin HTTP listener (`admin.listen`, default 127.0.0.1:9644):
//!
//! - `GET /metrics`: every series in the OpenMetrics text format;
//! - `GET /health`: 200 once the broker serves clients, 503 while it opens
//!   (replays its logs) or while it is cut off from the controller quorum;
//! - `GET /ready`: 200 when healthy and, in a cluster, caught up with the
//!   metadata log; 503 otherwise.
//!
//! A small HTTP/1.1 server of its own: one request per connection (the
//! answer closes it), a request head of at most 8 KiB read within 5 s,
//! unknown paths 404, methods other than GET and HEAD 405. It runs on its
//! own tasks, so a slow or stuck scraper never holds up the Kafka listeners;
//! at most [`MAX_CONNECTIONS`] connections are served at once (the rest wait
//! in the kernel's backlog).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::broker::Broker;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_CONNECTIONS: usize = 4096;

/// What the admin listener answers from: the broker once it is open.
#[derive(Default)]
pub struct AdminState {
    broker: OnceLock<Arc<Broker>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("serving", &self.broker.get().is_some())
            .finish()
    }
}

impl AdminState {
    /// The broker is open and serves clients.
    pub fn serving(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    /// (healthy, why not).
    pub fn health(&self) -> (bool, &'static str) {
        match self.broker.get() {
            None => (false, "starting: opening the logs"),
            Some(b) => match b.cluster() {
                Some(c) if c.cut_off() => (false, "cut off from the controller quorum"),
                _ => (true, "serving"),
            },
        }
    }

    pub fn ready(&self) -> (bool, &'static str) {
        let (healthy, why) = self.health();
        if !healthy {
            return (false, why);
        }
        match self.broker.get().and_then(|b| b.cluster().cloned()) {
            Some(c) if !c.caught_up() => (false, "catching up with the metadata log"),
            _ => (true, "ready"),
        }
    }

    fn metrics(&self) -> Option<Arc<String>> {
        self.broker.get().map(|b| b.metrics.render())
    }
}

/// Serves the admin listener until the process ends.
pub async fn run(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    serve(stream, &state).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn_limited!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the request asked for.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    Get { path: &'a str, head_only: bool },
    BadMethod,
    Malformed,
}

/// Parses a request head's first line.
pub fn parse(head: &str) -> Request<'_> {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or(target);
    match method {
        "GET" => Request::Get {
            path,
            head_only: false,
        },
        "HEAD" => Request::Get {
            path,
            head_only: true,
        },
        _ => Request::BadMethod,
    }
}

async fn serve(mut stream: TcpStream, state: &AdminState) {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(end);
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let answer = match head {
        Ok(Some(end)) => {
            let text = String::from_utf8_lossy(&buf[..end]);
            respond(parse(&text), state)
        }
        Ok(None) if buf.len() > MAX_HEAD => {
            reply(431, "text/plain", "request head too large\n".into(), false)
        }
        _ => return,
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

fn respond(req: Request<'_>, state: &AdminState) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match req {
        Request::Malformed => reply(400, TEXT, "bad request\n".into(), false),
        Request::BadMethod => reply(405, TEXT, "only GET and HEAD\n".into(), false),
        Request::Get { path, head_only } => {
            let (status, kind, body) = match path {
                "/metrics" => match state.metrics() {
                    Some(text) => (
                        200,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        text.as_bytes().to_vec(),
                    ),
                    None => (503, TEXT, b"starting: opening the logs\n".to_vec()),
                },
                "/health" => {
                    let (ok, why) = state.health();
                    (
                        if ok { 200 } else { 503 },
                        TEXT,
                        format!("{why}\n").into_bytes(),
                    )
                }
                "/ready" => {
                    let (ok, why) = state.ready();
                    (
                        if ok { 200 } else { 503 },
                        TEXT,
                        format!("{why}\n").into_bytes(),
                    )
                }
                _ => (
                    404,
                    TEXT,
                    b"not found: try /metrics, /health or /ready\n".to_vec(),
                ),
            };
            reply(status, kind, body, head_only)
        }
    }
}

fn reply(status: u16, kind: &str, body: Vec<u8>, head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse("GET /metrics HTTP/1.1\r\nHost: x"),
            Request::Get {
                path: "/metrics",
                head_only: false
            }
        );
        assert_eq!(
            parse("HEAD /health?x=1 HTTP/1.0"),
            Request::Get {
                path: "/health",
                head_only: true
            }
        );
        assert_eq!(parse("POST /metrics HTTP/1.1"), Request::BadMethod);
        assert_eq!(parse("GET metrics HTTP/1.1"), Request::Malformed);
        assert_eq!(parse("\u{0}\u{1}garbage"), Request::Malformed);
        assert_eq!(parse(""), Request::Malformed);
    }

    #[test]
    fn answers_before_the_broker_opens() {
        let state = AdminState::default();
        let text = |r: Vec<u8>| String::from_utf8(r).unwrap();
        let health = text(respond(parse("GET /health HTTP/1.1"), &state));
        assert!(health.starts_with("HTTP/1.1 503 "), "{health}");
        let nf = text(respond(parse("GET /nope HTTP/1.1"), &state));
        assert!(nf.starts_with("HTTP/1.1 404 "), "{nf}");
        let bad = text(respond(parse("DELETE /metrics HTTP/1.1"), &state));
        assert!(
            bad.starts_with("HTTP/1.1 405 ") && bad.contains("Allow: GET, HEAD"),
            "{bad}"
        );
        let head = text(respond(parse("HEAD /health HTTP/1.1"), &state));
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
    }
}
