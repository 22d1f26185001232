//! A connection's SASL progress on a SASL_PLAINTEXT or SASL_SSL listener:
//! what it may send before it is authenticated, the exchange itself, and
//! KIP-368 re-authentication.
//!
//! The connection hands every frame to [`Gate::admit`] first:
//! - before SaslHandshake only ApiVersions is served; anything else closes
//!   the connection (SaslAuthenticate too);
//! - after SaslHandshake v1 only SaslAuthenticate is accepted, carrying the
//!   mechanism's messages; after SaslHandshake v0 the next frames are the
//!   raw messages themselves (no Kafka header), answered the same way, as
//!   clients from before KIP-152 expect;
//! - success sets the session's principal to `User:<name>`; a failure is
//!   answered with SASL_AUTHENTICATION_FAILED and a message naming only the
//!   mechanism, and the connection closes (the connection waits
//!   `connection.failed.authentication.delay.ms` first);
//! - with `connections.max.reauth.ms` > 0 the session lasts that long
//!   (told to v1+ clients as session_lifetime_ms): a SaslHandshake on the
//!   authenticated connection starts a re-authentication, which must use
//!   the same mechanism and end with the same principal, and a request
//!   other than that handshake after the session expired closes the
//!   connection.
//!
//! SaslHandshake and SaslAuthenticate that reach the handlers (a PLAINTEXT
//! listener, or an authenticated connection without re-authentication) are
//! answered ILLEGAL_SASL_STATE there, as Kafka answers them.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::codec::{decode_body, encode_response};
use sluice_protocol::header::api_name;

use super::scram::{ScramServer, ScramStep};
use super::{Failure, Mechanism, plain};
use crate::broker::Broker;
use crate::handlers::{self, Parsed};
use crate::security::{KafkaPrincipal, Session};

/// What the connection does with a frame.
#[derive(Debug)]
pub enum Admit {
    /// Serve it as usual.
    Serve(Bytes),
    /// Write this answer (already framed) and go on.
    Reply(Bytes),
    /// Authentication failed: wait the failed-authentication delay, write
    /// `reply` if any, and close.
    Fail {
        reply: Option<Bytes>,
        reason: String,
    },
    /// A request out of turn: close at once.
    Close(String),
}

enum State {
    /// Waiting for SaslHandshake (ApiVersions may come first).
    Handshake,
    /// Between SaslHandshake and the end of the exchange.
    Exchange(Box<Exchange>),
    /// Authenticated; `expires` when re-authentication is on.
    Authenticated {
        mechanism: Mechanism,
        expires: Option<Instant>,
        client_reauthenticates: bool,
    },
}

struct Exchange {
    mechanism: Mechanism,
    scram: Option<ScramServer>,
    /// SaslHandshake v0: raw messages, no SaslAuthenticate framing.
    raw: bool,
    /// Re-authenticating: the principal it must keep.
    reauth: Option<KafkaPrincipal>,
    /// Re-authentication asked for another mechanism: the next message
    /// fails with this.
    refused: Option<String>,
    /// A SaslAuthenticate v1+ came: the client knows about session lifetimes.
    client_reauthenticates: bool,
}

pub struct Gate {
    enabled: Vec<Mechanism>,
    max_reauth_ms: i64,
    state: State,
}

/// The secret the salts shown for unknown users derive from; one per
/// process, so a name gets the same salt on every attempt.
fn secret() -> [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s);
        s
    })
}

impl Gate {
    /// The gate for a connection, when its listener uses SASL (connections
    /// between brokers are not authenticated here).
    pub fn for_session(broker: &Broker, session: &Session) -> Option<Self> {
        if !session.protocol.uses_sasl() || session.inter_broker {
            return None;
        }
        Some(Self {
            enabled: broker.config.sasl_mechanisms(),
            max_reauth_ms: broker.config.connections_max_reauth_ms,
            state: State::Handshake,
        })
    }

    /// True until the connection is authenticated, and during a
    /// re-authentication: frames are held to `sasl.server.max.receive.size`.
    pub fn authenticating(&self) -> bool {
        !matches!(self.state, State::Authenticated { .. })
    }

    pub async fn admit(
        &mut self,
        broker: &Arc<Broker>,
        frame: Bytes,
        session: &mut Arc<Session>,
    ) -> Admit {
        if let State::Exchange(x) = &self.state
            && x.raw
        {
            return self.raw_message(broker, frame, session).await;
        }
        let key = match sluice_protocol::header::peek(&frame)
            .ok()
            .and_then(|p| ApiKey::try_from(p.api_key).ok())
        {
            Some(k) => k,
            None => {
                return Admit::Close(
                    "not a Kafka request during SASL authentication (is the client \
                     configured with the listener's security protocol?)"
                        .into(),
                );
            }
        };
        match &self.state {
            State::Handshake => match key {
                ApiKey::ApiVersions => Admit::Serve(frame),
                ApiKey::SaslHandshake => self.handshake(broker, frame, None),
                other => Admit::Close(format!(
                    "unexpected {} request during SASL handshake",
                    api_name(other)
                )),
            },
            State::Exchange(_) => match key {
                ApiKey::SaslAuthenticate => self.authenticate(broker, frame, session).await,
                other => Admit::Close(format!(
                    "unexpected {} request during SASL authentication",
                    api_name(other)
                )),
            },
            State::Authenticated {
                mechanism,
                expires,
                client_reauthenticates,
            } => {
                if key == ApiKey::SaslHandshake && expires.is_some() && *client_reauthenticates {
                    let previous = (session.principal.clone(), *mechanism);
                    return self.handshake(broker, frame, Some(previous));
                }
                if expires.is_some_and(|e| Instant::now() >= e) {
                    return Admit::Close(
                        "SASL session expired: the client did not re-authenticate within \
                         connections.max.reauth.ms"
                            .into(),
                    );
                }
                Admit::Serve(frame)
            }
        }
    }

    fn handshake(
        &mut self,
        broker: &Broker,
        frame: Bytes,
        reauth: Option<(KafkaPrincipal, Mechanism)>,
    ) -> Admit {
        let (header, version, mut body) = match handlers::parse_request(frame, &broker.versions) {
            Ok(Parsed::Request {
                header,
                version,
                body,
                ..
            }) => (header, version, body),
            Ok(_) => return Admit::Close("bad SaslHandshake request".into()),
            Err(e) => return Admit::Close(format!("bad SaslHandshake request: {e}")),
        };
        let req: SaslHandshakeRequest = match decode_body(&mut body, ApiKey::SaslHandshake, version)
        {
            Ok(r) => r,
            Err(e) => return Admit::Close(e.to_string()),
        };
        let answer = |code: i16| {
            let resp = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(
                    self.enabled
                        .iter()
                        .map(|m| StrBytes::from_static_str(m.name()))
                        .collect(),
                );
            encode_response(header.correlation_id, ApiKey::SaslHandshake, version, &resp)
        };
        let asked = req.mechanism.as_str();
        let Some(mechanism) = Mechanism::parse(asked).filter(|m| self.enabled.contains(m)) else {
            return match answer(ResponseError::UnsupportedSaslMechanism.code()) {
                Ok(reply) => Admit::Fail {
                    reply: Some(reply),
                    reason: format!("SASL mechanism '{asked}' requested by client is not enabled"),
                },
                Err(e) => Admit::Close(e.to_string()),
            };
        };
        if reauth.is_some() && version == 0 {
            return Admit::Close("re-authentication with SaslHandshake v0".into());
        }
        let refused = match &reauth {
            Some((_, previous)) if *previous != mechanism => Some(format!(
                "SASL mechanism '{mechanism}' requested by client is not supported for \
                 re-authentication of mechanism '{previous}'"
            )),
            _ => None,
        };
        let reply = match answer(0) {
            Ok(r) => r,
            Err(e) => return Admit::Close(e.to_string()),
        };
        self.state = State::Exchange(Box::new(Exchange {
            mechanism,
            scram: match mechanism {
                Mechanism::Plain => None,
                Mechanism::Scram(m) => Some(ScramServer::new(m, secret())),
            },
            raw: version == 0,
            reauth: reauth.map(|(p, _)| p),
            refused,
            client_reauthenticates: false,
        }));
        Admit::Reply(reply)
    }

    async fn authenticate(
        &mut self,
        broker: &Arc<Broker>,
        frame: Bytes,
        session: &mut Arc<Session>,
    ) -> Admit {
        let (header, version, mut body) = match handlers::parse_request(frame, &broker.versions) {
            Ok(Parsed::Request {
                header,
                version,
                body,
                ..
            }) => (header, version, body),
            Ok(_) => return Admit::Close("bad SaslAuthenticate request".into()),
            Err(e) => return Admit::Close(format!("bad SaslAuthenticate request: {e}")),
        };
        let req: SaslAuthenticateRequest =
            match decode_body(&mut body, ApiKey::SaslAuthenticate, version) {
                Ok(r) => r,
                Err(e) => return Admit::Close(e.to_string()),
            };
        let State::Exchange(x) = &mut self.state else {
            return Admit::Close("SaslAuthenticate out of turn".into());
        };
        x.client_reauthenticates |= version > 0;
        let encode = |resp: SaslAuthenticateResponse| {
            encode_response(
                header.correlation_id,
                ApiKey::SaslAuthenticate,
                version,
                &resp,
            )
        };
        let outcome = self.step(broker, &req.auth_bytes, session).await;
        let (resp, failed) = match outcome {
            Ok(Progress::Challenge(bytes)) => (
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes)),
                None,
            ),
            Ok(Progress::Done {
                response,
                lifetime_ms,
            }) => (
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(response))
                    .with_session_lifetime_ms(lifetime_ms),
                None,
            ),
            Err((told, reason)) => (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(told))),
                Some(reason),
            ),
        };
        match (encode(resp), failed) {
            (Ok(reply), None) => Admit::Reply(reply),
            (Ok(reply), Some(reason)) => Admit::Fail {
                reply: Some(reply),
                reason,
            },
            (Err(e), _) => Admit::Close(e.to_string()),
        }
    }

    /// A raw message after SaslHandshake v0: answered with the raw
    /// response, size-prefixed; a failure closes without an answer.
    async fn raw_message(
        &mut self,
        broker: &Arc<Broker>,
        frame: Bytes,
        session: &mut Arc<Session>,
    ) -> Admit {
        match self.step(broker, &frame, session).await {
            Ok(Progress::Challenge(bytes))
            | Ok(Progress::Done {
                response: bytes, ..
            }) => {
                let mut out = BytesMut::with_capacity(4 + bytes.len());
                out.put_u32(bytes.len() as u32);
                out.extend_from_slice(&bytes);
                Admit::Reply(out.freeze())
            }
            Err((_, reason)) => Admit::Fail {
                reply: None,
                reason,
            },
        }
    }

    /// One client message through the mechanism. Err carries what the
    /// client is told and what the log says.
    async fn step(
        &mut self,
        broker: &Arc<Broker>,
        message: &[u8],
        session: &mut Arc<Session>,
    ) -> Result<Progress, (String, String)> {
        let State::Exchange(x) = &mut self.state else {
            return Err((
                "Unexpected SASL message".into(),
                "no exchange under way".into(),
            ));
        };
        let mechanism = x.mechanism;
        let phase = if x.reauth.is_some() {
            "re-authentication"
        } else {
            "authentication"
        };
        let generic = |f: Failure| {
            (
                format!(
                    "Authentication failed during {phase} due to invalid credentials with SASL mechanism {mechanism}"
                ),
                f.0,
            )
        };
        if let Some(refused) = &x.refused {
            return Err((refused.clone(), refused.clone()));
        }
        let (user, response) = match (&mut x.scram, mechanism) {
            (Some(scram), _) => {
                let m = scram.mechanism();
                let lookup = |u: &str| broker.scram_credential(u, m);
                match scram.step(message, &lookup).map_err(generic)? {
                    ScramStep::Challenge(c) => return Ok(Progress::Challenge(c)),
                    ScramStep::Done { user, response } => (user, response),
                }
            }
            (None, _) => {
                let login = plain::parse(message).map_err(generic)?;
                let credentials = broker.scram_credentials_of(&login.user);
                let password = login.password;
                // Deriving keys costs thousands of HMACs: off the runtime.
                let ok =
                    tokio::task::spawn_blocking(move || plain::verify(&password, &credentials))
                        .await
                        .unwrap_or(false);
                if !ok {
                    return Err(generic(Failure::new(format!(
                        "invalid credentials for user '{}'",
                        login.user
                    ))));
                }
                (login.user, Vec::new())
            }
        };
        let principal = KafkaPrincipal::user(user);
        if let Some(previous) = &x.reauth
            && *previous != principal
        {
            let told = format!(
                "Cannot change principals during re-authentication from {}.{}: {}.{}",
                previous.principal_type, previous.name, principal.principal_type, principal.name
            );
            return Err((told.clone(), told));
        }
        let lifetime_ms = self.max_reauth_ms.max(0);
        let expires =
            (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64));
        let client_reauthenticates = x.client_reauthenticates;
        tracing::debug!(%principal, %mechanism, phase, "SASL authentication succeeded");
        if session.principal != principal {
            let mut s = (**session).clone();
            s.principal = principal;
            *session = Arc::new(s);
        }
        self.state = State::Authenticated {
            mechanism,
            expires,
            client_reauthenticates,
        };
        Ok(Progress::Done {
            response,
            lifetime_ms,
        })
    }
}

enum Progress {
    Challenge(Vec<u8>),
    Done { response: Vec<u8>, lifetime_ms: i64 },
}
