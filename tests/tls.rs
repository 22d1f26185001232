//! Listeners and TLS on the wire: a broker with a PLAINTEXT and an SSL
//! listener, reached by a rustls client; Metadata answers with the address
//! of the listener asked; client certificates give principals (and refuse
//! connections no mapping rule names); garbage, slow and plaintext clients
//! on the TLS port get a closed connection; a certificate replaced on disk
//! is served to the next connection. Certificates are generated here.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::TIMEOUT;
use common::pki::{Ca, Issued};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rcgen::DnType;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sluice::broker::Broker;
use sluice::config::Config;
use sluice::server::Listener;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn server_cert(ca: &Ca, cn: &str) -> Issued {
    ca.issue(
        &[(DnType::CommonName, cn)],
        &["localhost", "127.0.0.1"],
        false,
    )
}

fn client_cert(ca: &Ca, cn: &str, ou: &str) -> Issued {
    ca.issue(
        &[
            (DnType::OrganizationName, "Example"),
            (DnType::OrganizationalUnitName, ou),
            (DnType::CommonName, cn),
        ],
        &[],
        true,
    )
}

struct Broker2 {
    plain: std::net::SocketAddr,
    ssl: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Broker2 {
    /// A broker with a PLAINTEXT and an SSL listener; `ssl` adds `ssl.*`
    /// keys (TOML) to the configuration.
    async fn start(dir: &Path, ssl: &str) -> Self {
        let p = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (pa, sa) = (p.local_addr().unwrap(), s.local_addr().unwrap());
        let text = format!(
            "listeners = \"PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}\"\n\
             \"advertised.listeners\" = \"SSL://localhost:{}\"\n\
             \"data.dir\" = {:?}\n{ssl}",
            pa.port(),
            sa.port(),
            sa.port(),
            dir.display().to_string(),
        );
        let config = Config::from_toml(&text).unwrap();
        sluice::security::tls::check(&config).unwrap();
        let listeners = vec![
            Listener::from_config(
                &config,
                "PLAINTEXT",
                sluice::security::SecurityProtocol::Plaintext,
                p,
            )
            .unwrap(),
            Listener::from_config(&config, "SSL", sluice::security::SecurityProtocol::Ssl, s)
                .unwrap(),
        ];
        let broker = Broker::open(config, sluice::handlers::version_table()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sluice::server::run_listeners(
            listeners,
            broker,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            plain: pa,
            ssl: sa,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("broker stops in time")
            .unwrap()
            .unwrap();
    }
}

/// TOML for inline PEM (triple-quoted literal strings keep the newlines).
fn inline(key: &str, pem: &str) -> String {
    format!("\"{key}\" = '''\n{pem}'''\n")
}

fn ssl_inline(server: &Issued, ca: &Ca, extra: &str) -> String {
    format!(
        "{}{}{}{extra}",
        inline("ssl.keystore.certificate.chain", &server.cert_pem),
        inline("ssl.keystore.key", &server.key_pem),
        inline("ssl.truststore.certificates", &ca.pem()),
    )
}

fn client_config(ca: &Ca, cert: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice_compat(&ca.pem()))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice_compat(&c.cert_pem)],
                PrivateKeyDer::from_pem_slice_compat(&c.key_pem),
            )
            .unwrap(),
    })
}

trait PemCompat: Sized {
    fn from_pem_slice_compat(pem: &str) -> Self;
}

impl PemCompat for CertificateDer<'static> {
    fn from_pem_slice_compat(pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

impl PemCompat for PrivateKeyDer<'static> {
    fn from_pem_slice_compat(pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
}

/// One request and its response over any stream; None when the broker
/// closed the connection instead of answering.
async fn call<S, Req, Resp>(s: &mut S, key: ApiKey, version: i16, req: &Req) -> Option<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("tls-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut framed = BytesMut::new();
    framed.put_i32(body.len() as i32);
    framed.extend_from_slice(&body);
    s.write_all(&framed).await.ok()?;
    s.flush().await.ok()?;
    let mut len = [0u8; 4];
    tokio::time::timeout(TIMEOUT, s.read_exact(&mut len))
        .await
        .expect("answer or close in time")
        .ok()?;
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).await.ok()?;
    let mut resp = Bytes::from(resp);
    let h = ResponseHeader::decode(&mut resp, Resp::header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 7);
    let out = Resp::decode(&mut resp, version).unwrap();
    assert_eq!(resp.remaining(), 0);
    Some(out)
}

async fn metadata<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<MetadataResponse> {
    call(s, ApiKey::Metadata, 12, &MetadataRequest::default()).await
}

/// Reads until the broker closes; the bytes it sent meanwhile.
async fn until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {within:?}"),
        }
    }
}

#[tokio::test]
async fn each_listener_advertises_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let b = Broker2::start(dir.path(), &ssl_inline(&server, &ca, "")).await;

    let mut tls = tls_connect(b.ssl, client_config(&ca, None)).await.unwrap();
    let m = metadata(&mut tls).await.expect("answered over TLS");
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].host.as_str(), "localhost");
    assert_eq!(m.brokers[0].port, b.ssl.port() as i32);
    let d: DescribeClusterResponse = call(
        &mut tls,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    )
    .await
    .unwrap();
    assert_eq!(d.brokers[0].port, b.ssl.port() as i32);

    let mut plain = TcpStream::connect(b.plain).await.unwrap();
    let m = metadata(&mut plain).await.expect("answered in plaintext");
    assert_eq!(m.brokers[0].host.as_str(), "127.0.0.1");
    assert_eq!(m.brokers[0].port, b.plain.port() as i32);
    b.stop().await;
}

#[tokio::test]
async fn plaintext_garbage_and_slow_clients_on_the_tls_port_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let b = Broker2::start(
        dir.path(),
        &ssl_inline(&server, &ca, "\"ssl.handshake.timeout.ms\" = 700\n"),
    )
    .await;

    // A Kafka request in plaintext: no Kafka answer, a closed connection
    // (at most a TLS alert record before it).
    let mut s = TcpStream::connect(b.ssl).await.unwrap();
    s.write_all(&[0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 7, 0, 0])
        .await
        .unwrap();
    let got = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.is_empty() || got[0] == 0x15,
        "nothing but a TLS alert: {got:?}"
    );

    // Garbage that looks like a TLS record.
    let mut s = TcpStream::connect(b.ssl).await.unwrap();
    s.write_all(&[0x16, 3, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    until_closed(&mut s, Duration::from_secs(5)).await;

    // A client that says nothing (and one that stops mid-hello) is closed
    // after the handshake timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(b.ssl).await.unwrap();
    let mut half = TcpStream::connect(b.ssl).await.unwrap();
    half.write_all(&[0x16, 3, 1, 0, 200, 1]).await.unwrap();
    until_closed(&mut silent, Duration::from_secs(5)).await;
    until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(600));

    // The listener still serves TLS clients.
    let mut tls = tls_connect(b.ssl, client_config(&ca, None)).await.unwrap();
    assert!(metadata(&mut tls).await.is_some());
    b.stop().await;
}

#[tokio::test]
async fn client_certificates_required_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let other_ca = Ca::new("other-ca");
    let server = server_cert(&ca, "broker");
    let extra = "\"ssl.client.auth\" = \"required\"\n\
                 \"ssl.principal.mapping.rules\" = \"RULE:^CN=([^,]*),OU=billing,.*$/$1/L\"\n";
    let b = Broker2::start(dir.path(), &ssl_inline(&server, &ca, extra)).await;

    // A certificate the rules map: served.
    let alice = client_cert(&ca, "Alice", "billing");
    let mut tls = tls_connect(b.ssl, client_config(&ca, Some(&alice)))
        .await
        .unwrap();
    assert!(metadata(&mut tls).await.is_some(), "alice is served");

    // No certificate, one from another CA, one no rule maps: closed.
    for (who, cert) in [
        ("no certificate", None),
        (
            "untrusted",
            Some(client_cert(&other_ca, "mallory", "billing")),
        ),
        ("unmapped", Some(client_cert(&ca, "bob", "sales"))),
    ] {
        let refused = match tls_connect(b.ssl, client_config(&ca, cert.as_ref())).await {
            Err(_) => true,
            // TLS 1.3: the client finishes before the server checks its
            // certificate; the refusal comes with the first read.
            Ok(mut s) => metadata(&mut s).await.is_none(),
        };
        assert!(refused, "{who} must not be served");
    }
    b.stop().await;
}

#[tokio::test]
async fn principal_of_a_client_certificate() {
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let text = format!(
        "listeners = \"SSL://127.0.0.1:19093\"\n{}",
        ssl_inline(
            &server,
            &ca,
            "\"ssl.client.auth\" = \"requested\"\n\
             \"listener.name.ssl.ssl.principal.mapping.rules\" = \"RULE:^CN=([^,]*),OU=billing,.*$/svc-$1/L,DEFAULT\"\n"
        )
    );
    let config = Config::from_toml(&text).unwrap();
    let settings = sluice::security::tls::SslSettings::for_listener(&config, "SSL").unwrap();
    let der = |i: &Issued| CertificateDer::from_pem_slice_compat(&i.cert_pem);
    let alice = der(&client_cert(&ca, "Alice", "billing"));
    assert_eq!(
        settings.principal(Some(&alice)).unwrap().to_string(),
        "User:svc-alice"
    );
    let bob = der(&client_cert(&ca, "Bob", "sales"));
    assert_eq!(
        settings.principal(Some(&bob)).unwrap().to_string(),
        "User:CN=Bob,OU=sales,O=Example"
    );
    assert_eq!(
        settings.principal(None).unwrap().to_string(),
        "User:ANONYMOUS"
    );
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let store = dir.path().join("broker.pem");
    let write = |cn: &str| {
        let c = server_cert(&ca, cn);
        std::fs::write(&store, format!("{}{}", c.key_pem, c.cert_pem)).unwrap();
    };
    write("first");
    let b = Broker2::start(
        &dir.path().join("data"),
        &format!(
            "\"ssl.keystore.location\" = {:?}\n",
            store.display().to_string()
        ),
    )
    .await;
    let served_cn = || async {
        let tls = tls_connect(b.ssl, client_config(&ca, None)).await.unwrap();
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        sluice::security::ssl_principal::subject_dn(cert.as_ref()).unwrap()
    };
    assert_eq!(served_cn().await, "CN=first");
    write("second");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_cn().await == "CN=second" {
            break;
        }
        assert!(Instant::now() < deadline, "new certificate not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken file keeps the last good certificate.
    std::fs::write(&store, "not a pem").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(served_cn().await, "CN=second");
    b.stop().await;
}

#[tokio::test]
async fn bad_tls_settings_are_refused_at_start() {
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let base = "listeners = \"PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19093\"\n";
    let ok = format!("{base}{}", ssl_inline(&server, &ca, ""));
    sluice::security::tls::check(&Config::from_toml(&ok).unwrap()).unwrap();
    let encrypted_key =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    for (why, extra) in [
        (
            "unknown key",
            "\"ssl.keystore.locaton\" = \"x\"\n".to_string(),
        ),
        ("JKS", "\"ssl.keystore.type\" = \"JKS\"\n".into()),
        (
            "keystore password",
            "\"ssl.keystore.password\" = \"x\"\n".into(),
        ),
        ("key password", "\"ssl.key.password\" = \"x\"\n".into()),
        (
            "bad client auth",
            "\"ssl.client.auth\" = \"always\"\n".into(),
        ),
        (
            "bad protocol",
            "\"ssl.enabled.protocols\" = \"TLSv2\"\n".into(),
        ),
        (
            "only old protocols",
            "\"ssl.enabled.protocols\" = \"TLSv1.1\"\n".into(),
        ),
        (
            "unknown suite",
            "\"ssl.cipher.suites\" = \"TLS_RSA_WITH_NULL_MD5\"\n".into(),
        ),
        (
            "bad rules",
            "\"ssl.principal.mapping.rules\" = \"RULE:x\"\n".into(),
        ),
        ("bad timeout", "\"ssl.handshake.timeout.ms\" = 0\n".into()),
        (
            "listener override",
            "\"listener.name.ssl.ssl.client.auth\" = \"sometimes\"\n".into(),
        ),
    ] {
        let text = format!("{ok}{extra}");
        let checked = Config::from_toml(&text)
            .map_err(|e| e.to_string())
            .and_then(|c| sluice::security::tls::check(&c));
        assert!(checked.is_err(), "{why} must be refused");
    }
    // Whole settings that do not fit together.
    for (why, text) in [
        ("no key store", base.to_string()),
        (
            "encrypted key",
            format!(
                "{base}{}{}",
                inline("ssl.keystore.certificate.chain", &server.cert_pem),
                inline("ssl.keystore.key", encrypted_key)
            ),
        ),
        (
            "client auth without trust store",
            format!(
                "{base}{}{}\"ssl.client.auth\" = \"required\"\n",
                inline("ssl.keystore.certificate.chain", &server.cert_pem),
                inline("ssl.keystore.key", &server.key_pem)
            ),
        ),
        (
            "missing file",
            format!("{base}\"ssl.keystore.location\" = \"/nonexistent/broker.pem\"\n"),
        ),
    ] {
        let c = Config::from_toml(&text).unwrap();
        assert!(
            sluice::security::tls::check(&c).is_err(),
            "{why} must be refused"
        );
    }
    // Cipher suites and protocols by Kafka's names.
    let text = format!(
        "{ok}\"ssl.cipher.suites\" = \"TLS_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"\n\
         \"ssl.enabled.protocols\" = \"TLSv1.3\"\n"
    );
    sluice::security::tls::check(&Config::from_toml(&text).unwrap()).unwrap();
}

#[tokio::test]
async fn enabled_protocols_and_cipher_suites_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let b = Broker2::start(
        dir.path(),
        &ssl_inline(
            &server,
            &ca,
            "\"ssl.enabled.protocols\" = \"TLSv1.2\"\n\
             \"ssl.cipher.suites\" = \"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\"\n",
        ),
    )
    .await;
    let tls = tls_connect(b.ssl, client_config(&ca, None)).await.unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
    // A TLS 1.3-only client is refused.
    let only13 = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice_compat(&ca.pem()))
                .unwrap();
            r
        })
        .with_no_client_auth(),
    );
    assert!(tls_connect(b.ssl, only13).await.is_err());
    b.stop().await;
}

/// Large record sets over TLS are written from memory (encrypted), over the
/// plaintext listener of the same broker sent from the files: both answers
/// carry the same record bytes, exactly the produced records.
#[tokio::test]
async fn large_fetches_over_tls_and_plaintext_return_the_same_records() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
        ProduceRequest, ProduceResponse, TopicName,
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test-ca");
    let server = server_cert(&ca, "broker");
    let b = Broker2::start(dir.path(), &ssl_inline(&server, &ca, "")).await;
    let mut plain = TcpStream::connect(b.plain).await.unwrap();
    let name = || TopicName(StrBytes::from_static_str("big"));
    let created: CreateTopicsResponse = call(
        &mut plain,
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name())
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(5000),
    )
    .await
    .unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    for i in 0..8i64 {
        let produced: ProduceResponse = call(
            &mut plain,
            ApiKey::Produce,
            9,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name())
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(common::large_batch(i * 100, 100, 1000))),
                        ]),
                ]),
        )
        .await
        .unwrap();
        let p = &produced.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i * 100));
    }
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name())
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(10 << 20),
                ]),
        ]);
    let mut tls = tls_connect(b.ssl, client_config(&ca, None)).await.unwrap();
    let over_tls: FetchResponse = call(&mut tls, ApiKey::Fetch, 12, &fetch).await.unwrap();
    let over_plain: FetchResponse = call(&mut plain, ApiKey::Fetch, 12, &fetch).await.unwrap();
    let records = |r: &FetchResponse| r.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(records(&over_tls), records(&over_plain));
    let mut set = records(&over_tls);
    let mut next = 0;
    while !set.is_empty() {
        let batch = kafka_protocol::records::RecordBatchDecoder::decode(&mut set).unwrap();
        for r in batch.records {
            assert_eq!(r.offset, next);
            assert_eq!(r.value, Some(common::large_value(next, 1000)));
            next += 1;
        }
    }
    assert_eq!(next, 800);
    b.stop().await;
}
