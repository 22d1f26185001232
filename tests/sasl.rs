//! SASL over the wire (PLAIN, SCRAM-SHA-256/512, the v0 raw framing,
//! re-authentication, failures) and the SCRAM credential APIs.
//!
//! The broker is the real one; its SASL_PLAINTEXT listener here is a small
//! accept loop handing each connection to `connection::serve` with a
//! SASL_PLAINTEXT session, next to the usual PLAINTEXT server.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{BufMut, Bytes, BytesMut};
use common::{Client, TIMEOUT};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};
use sluice::broker::Broker;
use sluice::config::Config;
use sluice::security::sasl::scram::ScramMechanism;
use sluice::security::{KafkaPrincipal, SecurityProtocol, Session};
use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;

struct SaslBroker {
    plain: SocketAddr,
    sasl: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    stop_sasl: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SaslBroker {
    async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = Config {
            listen: listener.local_addr().unwrap(),
            data_dir: dir.to_owned(),
            ..Config::default()
        };
        tweak(&mut config);
        let broker: Arc<Broker> = Broker::open(config, sluice::handlers::version_table()).unwrap();
        Self::serve(listener, broker).await
    }

    /// Node 1 alone in its controller quorum, as `sluice` starts it.
    async fn start_cluster(dir: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let config = Config {
            listen: listener.local_addr().unwrap(),
            data_dir: dir.to_owned(),
            node_id: 1,
            controller_voters: Some(format!("1@{internal}")),
            ..Config::default()
        };
        let voters = config.voters().unwrap();
        let clock: Arc<dyn sluice_storage::Clock> = Arc::new(sluice_storage::SystemClock);
        let cluster = sluice::cluster::Cluster::start(&config, voters, clock.clone())
            .await
            .unwrap();
        assert!(cluster.wait_caught_up(TIMEOUT).await);
        let broker = Broker::open_with(
            config,
            sluice::handlers::version_table(),
            clock,
            Some(cluster),
        )
        .unwrap();
        tokio::spawn(broker.clone().bootstrap_scram_credentials());
        Self::serve(listener, broker).await
    }

    /// Serves `broker` on `listener` (PLAINTEXT) and on a second port whose
    /// connections get a SASL_PLAINTEXT session.
    async fn serve(listener: tokio::net::TcpListener, broker: Arc<Broker>) -> Self {
        let sasl_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sasl = sasl_listener.local_addr().unwrap();
        let (stop_sasl, stop_rx) = watch::channel(false);
        let b = broker.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = sasl_listener.accept().await else {
                    return;
                };
                let session = Session {
                    principal: KafkaPrincipal::anonymous(),
                    client_host: peer.ip(),
                    listener: "SASL_PLAINTEXT".into(),
                    protocol: SecurityProtocol::SaslPlaintext,
                    inter_broker: false,
                };
                tokio::spawn(sluice::connection::serve(
                    b.clone(),
                    stream,
                    peer,
                    session,
                    stop_rx.clone(),
                ));
            }
        });
        let (tx, rx) = oneshot::channel::<()>();
        let plain = listener.local_addr().unwrap();
        let server = tokio::spawn(sluice::server::run(listener, broker, async move {
            let _ = rx.await;
        }));
        Self {
            plain,
            sasl,
            stop: Some(tx),
            stop_sasl,
            server,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop_sasl.send(true);
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(TIMEOUT, self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn hmac(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => {
            let mut h = Hmac::<Sha256>::new_from_slice(key).unwrap();
            h.update(data);
            h.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut h = Hmac::<Sha512>::new_from_slice(key).unwrap();
            h.update(data);
            h.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// AlterUserScramCredentials v0 upserting one credential, as an admin
/// client computes it (salt and salted password on the client side).
async fn set_password(
    c: &mut Client,
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> AlterUserScramCredentialsResponse {
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(m.type_code())
            .with_iterations(iterations)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted)),
    ]);
    c.call(ApiKey::AlterUserScramCredentials, 0, &req).await
}

async fn handshake(c: &mut Client, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    c.call(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
    )
    .await
}

async fn authenticate(c: &mut Client, version: i16, bytes: Vec<u8>) -> SaslAuthenticateResponse {
    c.call(
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
    )
    .await
}

/// A full SCRAM login through SaslAuthenticate (`v`); Err(error code,
/// message) when the broker refuses.
async fn scram_login(
    c: &mut Client,
    v: i16,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<SaslAuthenticateResponse, (i16, String)> {
    let h = handshake(c, 1, m.name()).await;
    assert_eq!(h.error_code, 0);
    let bare = format!("n={user},r=clientnonce123");
    let first = authenticate(c, v, format!("n,,{bare}").into_bytes()).await;
    if first.error_code != 0 {
        return Err((first.error_code, msg(&first)));
    }
    let (fin, expect) = client_final(m, password, &bare, &first.auth_bytes);
    let last = authenticate(c, v, fin).await;
    if last.error_code != 0 {
        return Err((last.error_code, msg(&last)));
    }
    assert_eq!(last.auth_bytes, expect.as_bytes(), "server signature");
    Ok(last)
}

fn msg(r: &SaslAuthenticateResponse) -> String {
    r.error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// The client-final message for a server-first, and the server-final
/// message to expect.
fn client_final(
    m: ScramMechanism,
    password: &str,
    bare: &str,
    server_first: &[u8],
) -> (Vec<u8>, String) {
    let sf = std::str::from_utf8(server_first).unwrap();
    let mut nonce = "";
    let mut salt = vec![];
    let mut iterations = 0;
    for a in sf.split(',') {
        if let Some(v) = a.strip_prefix("r=") {
            nonce = v;
        } else if let Some(v) = a.strip_prefix("s=") {
            salt = B64.decode(v).unwrap();
        } else if let Some(v) = a.strip_prefix("i=") {
            iterations = v.parse().unwrap();
        }
    }
    assert!(
        nonce.starts_with("clientnonce123") && nonce.len() > 14,
        "{sf}"
    );
    let salted = m.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = hmac(m, &salted, b"Client Key");
    let stored = hash(m, &client_key);
    let without = format!("c=biws,r={nonce}");
    let auth = format!("{bare},{sf},{without}");
    let sig = hmac(m, &stored, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    let server_key = hmac(m, &salted, b"Server Key");
    (
        format!("{without},p={}", B64.encode(proof)).into_bytes(),
        format!("v={}", B64.encode(hmac(m, &server_key, auth.as_bytes()))),
    )
}

/// True when the broker closed the connection (reads EOF).
async fn closed(c: &mut Client) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(TIMEOUT, c.stream.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn metadata_works(c: &mut Client) {
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
    assert_eq!(r.brokers.len(), 1);
}

#[tokio::test]
async fn scram_credential_apis_follow_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let b = SaslBroker::start(dir.path(), |_| {}).await;
    let mut c = Client::connect(b.plain).await;
    let describe = |users: Option<Vec<&str>>| {
        DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.into_iter()
                .map(|n| UserName::default().with_name(s(n)))
                .collect()
        }))
    };
    let r: DescribeUserScramCredentialsResponse = c
        .call(ApiKey::DescribeUserScramCredentials, 0, &describe(None))
        .await;
    assert_eq!((r.error_code, r.results.len()), (0, 0));

    let r = set_password(&mut c, "alice", ScramMechanism::Sha256, "a-pw", 4096).await;
    assert_eq!(r.results.len(), 1);
    assert_eq!(
        (r.results[0].user.as_str(), r.results[0].error_code),
        ("alice", 0)
    );
    let r = set_password(&mut c, "alice", ScramMechanism::Sha512, "a-pw", 8192).await;
    assert_eq!(r.results[0].error_code, 0);
    // Bounds: 4096..=16384.
    let r = set_password(&mut c, "bob", ScramMechanism::Sha512, "pw", 4095).await;
    assert_eq!(r.results[0].error_code, 93);
    assert_eq!(
        r.results[0].error_message.as_deref(),
        Some("Too few iterations")
    );
    let r = set_password(&mut c, "bob", ScramMechanism::Sha512, "pw", 16385).await;
    assert_eq!(r.results[0].error_code, 93);
    assert_eq!(
        r.results[0].error_message.as_deref(),
        Some("Too many iterations")
    );
    let r = set_password(&mut c, "", ScramMechanism::Sha512, "pw", 4096).await;
    assert_eq!(r.results[0].error_code, 93, "empty user name");

    let up = |name: &str, mechanism: i8| {
        ScramCredentialUpsertion::default()
            .with_name(s(name))
            .with_mechanism(mechanism)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from_static(b"salted"))
    };
    let del = |name: &str, mechanism: i8| {
        ScramCredentialDeletion::default()
            .with_name(s(name))
            .with_mechanism(mechanism)
    };
    // Unknown mechanism; a user named twice (even with two mechanisms); a
    // deletion of a credential that is not there; all in one request, each
    // user with its own error, the others applied.
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![del("carol", 1), del("alice", 1)])
        .with_upsertions(vec![
            up("dave", 0),
            up("erin", 1),
            up("erin", 2),
            up("frank", 2),
        ]);
    let r: AlterUserScramCredentialsResponse =
        c.call(ApiKey::AlterUserScramCredentials, 0, &req).await;
    let code = |u: &str| {
        r.results
            .iter()
            .find(|x| x.user.as_str() == u)
            .map(|x| x.error_code)
            .unwrap_or_else(|| panic!("no result for {u}"))
    };
    assert_eq!(r.results.len(), 5);
    assert_eq!(code("carol"), 91, "RESOURCE_NOT_FOUND");
    assert_eq!(code("alice"), 0);
    assert_eq!(code("dave"), UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(code("erin"), 92, "DUPLICATE_RESOURCE");
    assert_eq!(code("frank"), 0);

    let r: DescribeUserScramCredentialsResponse = c
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            &describe(Some(vec!["alice", "nobody", "frank", "frank"])),
        )
        .await;
    assert_eq!(r.results.len(), 3);
    let alice = &r.results[0];
    assert_eq!((alice.user.as_str(), alice.error_code), ("alice", 0));
    assert_eq!(
        alice
            .credential_infos
            .iter()
            .map(|i| (i.mechanism, i.iterations))
            .collect::<Vec<_>>(),
        vec![(2, 8192)],
        "SCRAM-SHA-256 was deleted"
    );
    assert_eq!(r.results[1].error_code, 91);
    assert_eq!(
        r.results[1].error_message.as_deref(),
        Some("attemptToDescribeUserThatDoesNotExist: nobody")
    );
    assert_eq!(r.results[2].error_code, 92);

    // Durable: still there after a restart.
    b.stop().await;
    let b = SaslBroker::start(dir.path(), |_| {}).await;
    let mut c = Client::connect(b.plain).await;
    let r: DescribeUserScramCredentialsResponse = c
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            &describe(Some(vec![])),
        )
        .await;
    let users: Vec<&str> = r.results.iter().map(|x| x.user.as_str()).collect();
    assert_eq!(users, ["alice", "frank"]);
    // On a listener without SASL, the SASL requests are out of place.
    assert_eq!(
        handshake(&mut c, 1, "PLAIN").await.error_code,
        ILLEGAL_SASL_STATE
    );
    assert_eq!(
        authenticate(&mut c, 2, b"\0alice\0a-pw".to_vec())
            .await
            .error_code,
        ILLEGAL_SASL_STATE
    );
    metadata_works(&mut c).await;
    b.stop().await;
}

#[tokio::test]
async fn scram_and_plain_logins_over_sasl_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let b = SaslBroker::start(dir.path(), |_| {}).await;
    let mut admin = Client::connect(b.plain).await;
    for m in ScramMechanism::ALL {
        assert_eq!(
            set_password(&mut admin, "alice", m, "alice-pw", 4096)
                .await
                .results[0]
                .error_code,
            0
        );
    }
    for m in ScramMechanism::ALL {
        for v in 0..=2 {
            let mut c = Client::connect(b.sasl).await;
            let _: ApiVersionsResponse = c
                .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
                .await;
            let r = scram_login(&mut c, v, m, "alice", "alice-pw")
                .await
                .unwrap();
            assert_eq!(r.session_lifetime_ms, 0, "re-authentication is off");
            metadata_works(&mut c).await;
            // Authenticated without re-authentication: another handshake is
            // out of place, and the connection goes on.
            assert_eq!(
                handshake(&mut c, 1, "PLAIN").await.error_code,
                ILLEGAL_SASL_STATE
            );
            metadata_works(&mut c).await;
        }
    }
    // PLAIN against the SCRAM credentials.
    let mut c = Client::connect(b.sasl).await;
    let h = handshake(&mut c, 1, "PLAIN").await;
    assert_eq!(h.error_code, 0);
    assert_eq!(
        h.mechanisms
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    );
    let r = authenticate(&mut c, 2, b"\0alice\0alice-pw".to_vec()).await;
    assert_eq!(r.error_code, 0);
    metadata_works(&mut c).await;

    // A wrong password, an unknown user, a wrong SCRAM proof: the same
    // answer, after the delay, then a closed connection.
    for (mech, user, pw) in [
        ("PLAIN", "alice", "wrong"),
        ("PLAIN", "mallory", "alice-pw"),
        ("SCRAM-SHA-512", "alice", "wrong"),
        ("SCRAM-SHA-256", "mallory", "alice-pw"),
    ] {
        let mut c = Client::connect(b.sasl).await;
        let started = Instant::now();
        let err = if mech == "PLAIN" {
            assert_eq!(handshake(&mut c, 1, mech).await.error_code, 0);
            let r = authenticate(&mut c, 2, format!("\0{user}\0{pw}").into_bytes()).await;
            (r.error_code, msg(&r))
        } else {
            let m = ScramMechanism::parse(mech).unwrap();
            scram_login(&mut c, 2, m, user, pw).await.unwrap_err()
        };
        assert_eq!(
            err,
            (
                SASL_AUTHENTICATION_FAILED,
                format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}"
                )
            )
        );
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert!(closed(&mut c).await, "closed after a failed login");
    }
    b.stop().await;
}

#[tokio::test]
async fn requests_out_of_turn_and_bad_input_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = SaslBroker::start(dir.path(), |c| {
        c.sasl_enabled_mechanisms = "SCRAM-SHA-512".into();
    })
    .await;
    // Metadata before the handshake.
    let mut c = Client::connect(b.sasl).await;
    let (_, frame) = c.encode_request(ApiKey::Metadata, 12, &MetadataRequest::default());
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await);
    // SaslAuthenticate before the handshake.
    let mut c = Client::connect(b.sasl).await;
    let (_, frame) = c.encode_request(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default(),
    );
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await);
    // Anything but SaslAuthenticate after the handshake.
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 1, "SCRAM-SHA-512").await.error_code, 0);
    let (_, frame) = c.encode_request(ApiKey::Metadata, 12, &MetadataRequest::default());
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await);
    // A mechanism that is not enabled: the enabled list, then closed.
    let mut c = Client::connect(b.sasl).await;
    let h = handshake(&mut c, 1, "PLAIN").await;
    assert_eq!(h.error_code, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(
        h.mechanisms
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["SCRAM-SHA-512"]
    );
    assert!(closed(&mut c).await);
    // Not Kafka at all (a TLS hello, garbage).
    let mut c = Client::connect(b.sasl).await;
    c.send_raw(&[0, 0, 0, 5, 0x16, 3, 1, 0, 0]).await;
    assert!(closed(&mut c).await);
    // A frame over sasl.server.max.receive.size before authentication.
    let mut c = Client::connect(b.sasl).await;
    let mut big = BytesMut::new();
    big.put_i32(600_000);
    big.extend_from_slice(&[0u8; 1024]);
    c.send_raw(&big).await;
    assert!(closed(&mut c).await);
    // An oversized SCRAM message inside a frame that fits, and malformed
    // messages: failures, not panics.
    for bad in [
        vec![b'n'; 400_000],
        b"n,,n=alice".to_vec(),
        b"p=tls-server-end-point,,n=alice,r=x".to_vec(),
        b"n,,n=alice,r=abc,tokenauth=true".to_vec(),
        vec![0xff; 10],
    ] {
        let mut c = Client::connect(b.sasl).await;
        assert_eq!(handshake(&mut c, 1, "SCRAM-SHA-512").await.error_code, 0);
        let r = authenticate(&mut c, 2, bad).await;
        assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(closed(&mut c).await);
    }
    // A client-final with another nonce.
    let mut admin = Client::connect(b.plain).await;
    set_password(&mut admin, "alice", ScramMechanism::Sha512, "pw", 4096).await;
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 1, "SCRAM-SHA-512").await.error_code, 0);
    let bare = "n=alice,r=clientnonce123";
    let first = authenticate(&mut c, 2, format!("n,,{bare}").into_bytes()).await;
    let (fin, _) = client_final(ScramMechanism::Sha512, "pw", bare, &first.auth_bytes);
    let fin = String::from_utf8(fin)
        .unwrap()
        .replace(",r=clientnonce123", ",r=clientnonce124");
    let r = authenticate(&mut c, 2, fin.into_bytes()).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(closed(&mut c).await);
    b.stop().await;
}

/// Writes a raw SASL message (SaslHandshake v0 framing) and reads the answer.
async fn raw(c: &mut Client, message: &[u8]) -> Option<Bytes> {
    let mut f = BytesMut::new();
    f.put_u32(message.len() as u32);
    f.extend_from_slice(message);
    c.send_raw(&f).await;
    c.read_frame().await
}

#[tokio::test]
async fn handshake_v0_takes_raw_messages() {
    let dir = tempfile::tempdir().unwrap();
    let b = SaslBroker::start(dir.path(), |_| {}).await;
    let mut admin = Client::connect(b.plain).await;
    set_password(&mut admin, "bob", ScramMechanism::Sha256, "bob-pw", 4096).await;
    // PLAIN: one message, an empty answer.
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 0, "PLAIN").await.error_code, 0);
    assert_eq!(raw(&mut c, b"\0bob\0bob-pw").await.unwrap().len(), 0);
    metadata_works(&mut c).await;
    // SCRAM: server-first, then server-final, unframed.
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 0, "SCRAM-SHA-256").await.error_code, 0);
    let bare = "n=bob,r=clientnonce123";
    let sf = raw(&mut c, format!("n,,{bare}").as_bytes()).await.unwrap();
    let (fin, expect) = client_final(ScramMechanism::Sha256, "bob-pw", bare, &sf);
    assert_eq!(raw(&mut c, &fin).await.unwrap(), expect.as_bytes());
    metadata_works(&mut c).await;
    // A wrong password: no answer, a closed connection.
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 0, "PLAIN").await.error_code, 0);
    assert!(raw(&mut c, b"\0bob\0nope").await.is_none());
    b.stop().await;
}

#[tokio::test]
async fn sessions_expire_without_reauthentication() {
    let dir = tempfile::tempdir().unwrap();
    let b = SaslBroker::start(dir.path(), |c| c.connections_max_reauth_ms = 1500).await;
    let mut admin = Client::connect(b.plain).await;
    for u in ["alice", "bob"] {
        set_password(
            &mut admin,
            u,
            ScramMechanism::Sha512,
            &format!("{u}-pw"),
            4096,
        )
        .await;
    }
    // Re-authenticating as the same user keeps the connection going.
    let mut c = Client::connect(b.sasl).await;
    let r = scram_login(&mut c, 2, ScramMechanism::Sha512, "alice", "alice-pw")
        .await
        .unwrap();
    assert_eq!(r.session_lifetime_ms, 1500);
    metadata_works(&mut c).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = scram_login(&mut c, 2, ScramMechanism::Sha512, "alice", "alice-pw")
        .await
        .unwrap();
    assert_eq!(r.session_lifetime_ms, 1500);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    metadata_works(&mut c).await;
    // As PLAIN: another mechanism than the session's is refused.
    let h = handshake(&mut c, 1, "PLAIN").await;
    assert_eq!(h.error_code, 0);
    let r = authenticate(&mut c, 2, b"\0alice\0alice-pw".to_vec()).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(
        msg(&r).contains("not supported for re-authentication"),
        "{}",
        msg(&r)
    );
    assert!(closed(&mut c).await);
    // Another user: refused, closed.
    let mut c = Client::connect(b.sasl).await;
    scram_login(&mut c, 2, ScramMechanism::Sha512, "alice", "alice-pw")
        .await
        .unwrap();
    let err = scram_login(&mut c, 2, ScramMechanism::Sha512, "bob", "bob-pw")
        .await
        .unwrap_err();
    assert_eq!(err.0, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        err.1,
        "Cannot change principals during re-authentication from User.alice: User.bob"
    );
    assert!(closed(&mut c).await);
    // No re-authentication in time: the next request closes the connection.
    let mut c = Client::connect(b.sasl).await;
    scram_login(&mut c, 1, ScramMechanism::Sha512, "alice", "alice-pw")
        .await
        .unwrap();
    metadata_works(&mut c).await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (_, frame) = c.encode_request(ApiKey::Metadata, 12, &MetadataRequest::default());
    c.send_raw(&frame).await;
    assert!(closed(&mut c).await);
    b.stop().await;
}

#[tokio::test]
async fn offline_credentials_log_in() {
    let dir = tempfile::tempdir().unwrap();
    sluice::security::sasl::offline::add(dir.path(), None, "svc", "svc-pw", "SCRAM-SHA-512", 4096)
        .unwrap();
    let b = SaslBroker::start(dir.path(), |_| {}).await;
    let mut c = Client::connect(b.sasl).await;
    scram_login(&mut c, 2, ScramMechanism::Sha512, "svc", "svc-pw")
        .await
        .unwrap();
    let mut c = Client::connect(b.sasl).await;
    assert_eq!(handshake(&mut c, 1, "PLAIN").await.error_code, 0);
    assert_eq!(
        authenticate(&mut c, 2, b"\0svc\0svc-pw".to_vec())
            .await
            .error_code,
        0
    );
    metadata_works(&mut c).await;
    b.stop().await;
}

#[tokio::test]
async fn in_a_cluster_credentials_go_through_the_controller_quorum() {
    let dir = tempfile::tempdir().unwrap();
    // Before the first start, as on every node of a new cluster.
    sluice::security::sasl::offline::add(dir.path(), None, "svc", "svc-pw", "SCRAM-SHA-256", 4096)
        .unwrap();
    let b = SaslBroker::start_cluster(dir.path()).await;
    let mut c = Client::connect(b.plain).await;
    let describe = |user: &str| {
        DescribeUserScramCredentialsRequest::default()
            .with_users(Some(vec![UserName::default().with_name(s(user))]))
    };
    // The broker proposes the bootstrap credential; then it leaves the file.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r: DescribeUserScramCredentialsResponse = c
            .call(ApiKey::DescribeUserScramCredentials, 0, &describe("svc"))
            .await;
        if r.results[0].error_code == 0 {
            assert_eq!(r.results[0].credential_infos[0].mechanism, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bootstrap credential never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + TIMEOUT;
    while std::fs::read_to_string(dir.path().join("cluster-metadata.json"))
        .unwrap()
        .contains("scram_credentials")
    {
        assert!(
            Instant::now() < deadline,
            "bootstrap credential left in the file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut l = Client::connect(b.sasl).await;
    scram_login(&mut l, 2, ScramMechanism::Sha256, "svc", "svc-pw")
        .await
        .unwrap();
    metadata_works(&mut l).await;
    // Through AlterUserScramCredentials: a new user who logs in, svc removed.
    let r = set_password(&mut c, "ops", ScramMechanism::Sha512, "ops-pw", 4096).await;
    assert_eq!(r.results[0].error_code, 0);
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
        ScramCredentialDeletion::default()
            .with_name(s("svc"))
            .with_mechanism(1),
    ]);
    let r: AlterUserScramCredentialsResponse =
        c.call(ApiKey::AlterUserScramCredentials, 0, &req).await;
    assert_eq!(r.results[0].error_code, 0);
    let r: DescribeUserScramCredentialsResponse = c
        .call(ApiKey::DescribeUserScramCredentials, 0, &describe("svc"))
        .await;
    assert_eq!(r.results[0].error_code, 91);
    let mut l = Client::connect(b.sasl).await;
    scram_login(&mut l, 2, ScramMechanism::Sha512, "ops", "ops-pw")
        .await
        .unwrap();
    let mut l = Client::connect(b.sasl).await;
    assert_eq!(
        scram_login(&mut l, 2, ScramMechanism::Sha256, "svc", "svc-pw")
            .await
            .unwrap_err()
            .0,
        SASL_AUTHENTICATION_FAILED
    );
    b.stop().await;
}
