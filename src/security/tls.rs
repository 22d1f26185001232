//! TLS for SSL and SASL_SSL listeners (rustls), configured with Kafka's
//! `ssl.*` keys, each of which a listener can override with
//! `listener.name.<listener name in lower case>.ssl.*`.
//!
//! Key stores and trust stores are PEM only (`ssl.keystore.type` and
//! `ssl.truststore.type` = PEM): a file (`ssl.keystore.location`, key and
//! chain in one file; `ssl.truststore.location`) or the PEM text inline
//! (`ssl.keystore.certificate.chain` + `ssl.keystore.key`;
//! `ssl.truststore.certificates`). Keys must be unencrypted.
//!
//! A listener's [`TlsContext`] builds its rustls configuration at start and
//! builds it again, for the connections that follow, when one of its files
//! changes on disk (checked at most once a second, when a connection
//! arrives): a renewed certificate is served without a restart. A file
//! that no longer reads keeps the previous configuration, with a log line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::KafkaPrincipal;
use super::ssl_principal::{self, Rule};
use crate::config::Config;

/// The `ssl.*` keys Sluice reads.
const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.protocol",
    "ssl.endpoint.identification.algorithm",
    "ssl.handshake.timeout.ms",
];

/// Kafka keys that tune the JVM's TLS engine: accepted, without effect.
const IGNORED: &[&str] = &[
    "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm",
    "ssl.secure.random.implementation",
    "ssl.provider",
    "ssl.engine.factory.class",
    "ssl.allow.dn.changes",
    "ssl.allow.san.changes",
];

/// Kafka's default for `ssl.handshake.timeout.ms` (a Sluice key): a client
/// that has not finished its handshake by then is disconnected.
const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// How often a listener looks at its files for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// One listener's TLS settings, its overrides applied.
#[derive(Debug, Clone)]
pub struct SslSettings {
    pub listener: String,
    keystore_location: Option<PathBuf>,
    keystore_chain: Option<String>,
    keystore_key: Option<String>,
    truststore_location: Option<PathBuf>,
    truststore_certificates: Option<String>,
    pub client_auth: ClientAuth,
    rules: Vec<Rule>,
    versions: Vec<&'static SupportedProtocolVersion>,
    provider: Arc<CryptoProvider>,
    pub handshake_timeout: Duration,
    /// `ssl.endpoint.identification.algorithm` = https (the default): a
    /// TLS client checks the name in the server's certificate.
    pub verify_hostname: bool,
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The IANA name of a rustls cipher suite (as Java and Kafka write them).
fn iana_name(suite: rustls::SupportedCipherSuite) -> String {
    let name = suite
        .suite()
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("{:?}", suite.suite()));
    name.replacen("TLS13_", "TLS_", 1)
}

impl SslSettings {
    /// The settings of `listener`: `listener.name.<name>.ssl.x` if set,
    /// else `ssl.x`.
    pub fn for_listener(config: &Config, listener: &str) -> Result<Self, String> {
        let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
        let get = |key: &str| {
            non_empty(config.ssl.get(&format!("{prefix}{key}")))
                .or_else(|| non_empty(config.ssl.get(key)))
        };
        let err = |msg: String| format!("listener {listener}: {msg}");
        for key in ["ssl.keystore.type", "ssl.truststore.type"] {
            if let Some(t) = get(key)
                && !t.eq_ignore_ascii_case("PEM")
            {
                return Err(err(format!(
                    "{key}={t} is not supported; Sluice reads PEM key and trust stores (set {key}=PEM)"
                )));
            }
        }
        if get("ssl.keystore.password").is_some() {
            return Err(err(
                "ssl.keystore.password cannot be specified with PEM format, only key password may be specified".into(),
            ));
        }
        if get("ssl.truststore.password").is_some() {
            return Err(err(
                "ssl.truststore.password cannot be specified with PEM format".into(),
            ));
        }
        if get("ssl.key.password").is_some() {
            return Err(err(
                "ssl.key.password: encrypted private keys are not supported; decrypt the key (e.g. openssl pkcs8 -topk8 -nocrypt) and leave ssl.key.password unset".into(),
            ));
        }
        let keystore_location = get("ssl.keystore.location").map(PathBuf::from);
        let keystore_chain = get("ssl.keystore.certificate.chain");
        let keystore_key = get("ssl.keystore.key");
        match (&keystore_location, &keystore_chain, &keystore_key) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (None, None, None) => {
                return Err(err(
                    "a TLS listener needs ssl.keystore.location, or ssl.keystore.certificate.chain and ssl.keystore.key".into(),
                ));
            }
            (Some(_), _, _) => {
                return Err(err(
                    "set either ssl.keystore.location or ssl.keystore.certificate.chain and ssl.keystore.key, not both".into(),
                ));
            }
            _ => {
                return Err(err(
                    "ssl.keystore.certificate.chain and ssl.keystore.key go together".into(),
                ));
            }
        }
        let truststore_location = get("ssl.truststore.location").map(PathBuf::from);
        let truststore_certificates = get("ssl.truststore.certificates");
        if truststore_location.is_some() && truststore_certificates.is_some() {
            return Err(err(
                "set either ssl.truststore.location or ssl.truststore.certificates, not both"
                    .into(),
            ));
        }
        let client_auth = match get("ssl.client.auth")
            .unwrap_or_else(|| "none".into())
            .to_ascii_lowercase()
            .as_str()
        {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(err(format!(
                    "ssl.client.auth={other}: expected none, requested or required"
                )));
            }
        };
        if client_auth != ClientAuth::None
            && truststore_location.is_none()
            && truststore_certificates.is_none()
        {
            return Err(err(format!(
                "ssl.client.auth={} needs a trust store (ssl.truststore.location or ssl.truststore.certificates)",
                match client_auth {
                    ClientAuth::Requested => "requested",
                    _ => "required",
                }
            )));
        }
        let rules = ssl_principal::parse_rules(
            &get("ssl.principal.mapping.rules").unwrap_or_else(|| "DEFAULT".into()),
        )
        .map_err(err)?;
        let mut versions = Vec::new();
        for v in get("ssl.enabled.protocols")
            .unwrap_or_else(|| "TLSv1.2,TLSv1.3".into())
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match v {
                "TLSv1.3" => versions.push(&rustls::version::TLS13),
                "TLSv1.2" => versions.push(&rustls::version::TLS12),
                "TLSv1.1" | "TLSv1" | "SSLv3" => {
                    tracing::warn!(
                        listener,
                        protocol = v,
                        "ssl.enabled.protocols: not supported, ignored (TLSv1.2 and TLSv1.3 are)"
                    );
                }
                other => {
                    return Err(err(format!(
                        "ssl.enabled.protocols: unknown protocol '{other}' (TLSv1.2, TLSv1.3)"
                    )));
                }
            }
        }
        if versions.is_empty() {
            return Err(err(
                "ssl.enabled.protocols names neither TLSv1.2 nor TLSv1.3".into(),
            ));
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(list) = get("ssl.cipher.suites") {
            let all = provider.cipher_suites.clone();
            let mut chosen = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let suite = all
                    .iter()
                    .find(|s| iana_name(**s).eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        err(format!(
                            "ssl.cipher.suites: unknown or unsupported cipher suite '{name}' (supported: {})",
                            all.iter().map(|s| iana_name(*s)).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                chosen.push(*suite);
            }
            if !chosen.is_empty() {
                provider.cipher_suites = chosen;
            }
        }
        let handshake_timeout = match get("ssl.handshake.timeout.ms") {
            None => Duration::from_millis(DEFAULT_HANDSHAKE_TIMEOUT_MS),
            Some(ms) => Duration::from_millis(
                ms.parse::<u64>().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                    err(format!(
                        "ssl.handshake.timeout.ms={ms}: expected milliseconds > 0"
                    ))
                })?,
            ),
        };
        // Unlike the other keys, an empty value means something here: no
        // host name check.
        let algorithm = config
            .ssl
            .get(&format!("{prefix}ssl.endpoint.identification.algorithm"))
            .or_else(|| config.ssl.get("ssl.endpoint.identification.algorithm"))
            .map(|a| a.trim().to_ascii_lowercase());
        let verify_hostname = match algorithm.as_deref() {
            None | Some("https") => true,
            Some("") => false,
            Some(other) => {
                return Err(err(format!(
                    "ssl.endpoint.identification.algorithm={other}: expected https or empty"
                )));
            }
        };
        Ok(Self {
            listener: listener.to_string(),
            keystore_location,
            keystore_chain,
            keystore_key,
            truststore_location,
            truststore_certificates,
            client_auth,
            rules,
            versions,
            provider: Arc::new(provider),
            handshake_timeout,
            verify_hostname,
        })
    }

    /// The files the configuration is read from.
    fn files(&self) -> Vec<PathBuf> {
        self.keystore_location
            .iter()
            .chain(self.truststore_location.iter())
            .cloned()
            .collect()
    }

    /// The certificate chain and key.
    fn key_pair(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let (chain_pem, key_pem) = match &self.keystore_location {
            Some(path) => {
                let text = std::fs::read(path).map_err(|e| {
                    format!("ssl.keystore.location: cannot read {}: {e}", path.display())
                })?;
                (text.clone(), text)
            }
            None => (
                self.keystore_chain.clone().unwrap_or_default().into_bytes(),
                self.keystore_key.clone().unwrap_or_default().into_bytes(),
            ),
        };
        if String::from_utf8_lossy(&key_pem).contains("ENCRYPTED") {
            return Err(
                "the key store's private key is encrypted; Sluice reads unencrypted PEM keys only (decrypt it, e.g. openssl pkcs8 -topk8 -nocrypt)".into(),
            );
        }
        let chain = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("key store: bad certificate PEM: {e}"))?;
        if chain.is_empty() {
            return Err("key store: no certificate found".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("key store: no usable private key: {e}"))?;
        Ok((chain, key))
    }

    /// The trusted certificates, when a trust store is set.
    fn roots(&self) -> Result<Option<Arc<RootCertStore>>, String> {
        let pem = match (&self.truststore_location, &self.truststore_certificates) {
            (Some(path), _) => std::fs::read(path).map_err(|e| {
                format!(
                    "ssl.truststore.location: cannot read {}: {e}",
                    path.display()
                )
            })?,
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => return Ok(None),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("trust store: bad certificate PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("trust store: unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("trust store: no certificate found".into());
        }
        Ok(Some(Arc::new(roots)))
    }

    /// The rustls server configuration these settings describe, read from
    /// their files now.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let (chain, key) = self.key_pair()?;
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| format!("ssl.enabled.protocols / ssl.cipher.suites: {e}"))?;
        let builder = match (self.client_auth, self.roots()?) {
            (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
            (auth, Some(roots)) => {
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(roots, self.provider.clone());
                if auth == ClientAuth::Requested {
                    verifier = verifier.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(
                    verifier.build().map_err(|e| format!("trust store: {e}"))?,
                )
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("key store: {e}"))?;
        // Kafka clients speak no ALPN; nothing to negotiate.
        config.alpn_protocols.clear();
        Ok(Arc::new(config))
    }

    /// The rustls client configuration of a broker connecting to another
    /// broker's internal listener: this broker's certificate (the key
    /// store) presented as its client certificate, the peer's certificate
    /// checked against the trust store (and its name, unless
    /// `ssl.endpoint.identification.algorithm` is empty).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let (chain, key) = self.key_pair()?;
        let roots = self.roots()?.ok_or_else(|| {
            "the internal listener's mutual TLS needs a trust store (ssl.truststore.location or ssl.truststore.certificates)".to_string()
        })?;
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| format!("ssl.enabled.protocols / ssl.cipher.suites: {e}"))?;
        let builder = if self.verify_hostname {
            builder.with_root_certificates(roots)
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
                .build()
                .map_err(|e| format!("trust store: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
        };
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("key store: {e}"))
            .map(Arc::new)
    }

    /// The principal of a client that presented `cert` (its leaf
    /// certificate), by `ssl.principal.mapping.rules`; `User:ANONYMOUS`
    /// without one. Err when the certificate's subject cannot be read or no
    /// rule matches it: the connection is then refused.
    pub fn principal(&self, cert: Option<&CertificateDer<'_>>) -> Result<KafkaPrincipal, String> {
        let Some(cert) = cert else {
            return Ok(KafkaPrincipal::anonymous());
        };
        let dn = ssl_principal::subject_dn(cert.as_ref())?;
        ssl_principal::apply_rules(&self.rules, &dn)
            .map(KafkaPrincipal::user)
            .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches '{dn}'"))
    }
}

/// When a file was last changed, as far as we can tell.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// A server certificate verifier that checks the chain against the trust
/// store but not the name (`ssl.endpoint.identification.algorithm` empty).
/// The name is the last thing webpki checks, so a name error means the
/// chain itself was trusted.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

struct Current {
    acceptor: TlsAcceptor,
    /// Set on the internal listener's context: how this broker connects to
    /// the others.
    connector: Option<TlsConnector>,
    stamp: Stamp,
    checked: Instant,
}

/// A TLS listener's settings and its current rustls configuration.
pub struct TlsContext {
    pub settings: SslSettings,
    files: Vec<PathBuf>,
    internal: bool,
    current: Mutex<Current>,
}

impl TlsContext {
    pub fn new(settings: SslSettings) -> Result<Arc<Self>, String> {
        Self::build(settings, false)
    }

    /// The internal listener's mutual TLS, from the settings of the TLS
    /// listener `inter.broker.listener.name` names: client certificates
    /// always required and checked against its trust store, and a client
    /// configuration presenting this broker's certificate to the others.
    pub fn internal(mut settings: SslSettings) -> Result<Arc<Self>, String> {
        settings.client_auth = ClientAuth::Required;
        Self::build(settings, true)
    }

    /// The internal listener's TLS context when `inter.broker.listener.name`
    /// names a listener that uses TLS (SSL or SASL_SSL); None otherwise
    /// (the internal listener is plaintext).
    pub fn for_internal_listener(config: &Config) -> Result<Option<Arc<Self>>, String> {
        let Some(name) = config.inter_broker_listener_name.as_deref() else {
            return Ok(None);
        };
        let Some(spec) = config
            .listener_specs()?
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
        else {
            return Ok(None);
        };
        if !spec.protocol.uses_tls() {
            return Ok(None);
        }
        let settings = SslSettings::for_listener(config, &spec.name)?;
        Self::internal(settings)
            .map(Some)
            .map_err(|e| format!("internal listener (inter.broker.listener.name={name}): {e}"))
    }

    fn configs(
        settings: &SslSettings,
        internal: bool,
    ) -> Result<(TlsAcceptor, Option<TlsConnector>), String> {
        let mut server = settings.server_config()?;
        let connector = if internal {
            // Brokers do not resume sessions; no tickets to hand out.
            Arc::make_mut(&mut server).send_tls13_tickets = 0;
            Some(TlsConnector::from(settings.client_config()?))
        } else {
            None
        };
        Ok((TlsAcceptor::from(server), connector))
    }

    fn build(settings: SslSettings, internal: bool) -> Result<Arc<Self>, String> {
        let files = settings.files();
        let stamp = stamp(&files);
        let (acceptor, connector) = Self::configs(&settings, internal)
            .map_err(|e| format!("listener {}: {e}", settings.listener))?;
        Ok(Arc::new(Self {
            settings,
            files,
            internal,
            current: Mutex::new(Current {
                acceptor,
                connector,
                stamp,
                checked: Instant::now(),
            }),
        }))
    }

    /// The current configuration, read again first if one of its files
    /// changed (looked at no more than once a second).
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if self.files.is_empty() || cur.checked.elapsed() < RELOAD_CHECK {
            return cur;
        }
        cur.checked = Instant::now();
        let now = stamp(&self.files);
        if now != cur.stamp {
            cur.stamp = now;
            match Self::configs(&self.settings, self.internal) {
                Ok((acceptor, connector)) => {
                    cur.acceptor = acceptor;
                    cur.connector = connector;
                    tracing::info!(listener = %self.settings.listener, "key or trust store changed on disk: reloaded");
                }
                Err(e) => tracing::error!(
                    listener = %self.settings.listener,
                    error = %e,
                    "key or trust store changed on disk but cannot be read; keeping the previous one"
                ),
            }
        }
        cur
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current().acceptor.clone()
    }

    /// The connector for a new connection to another broker's internal
    /// listener; None on a client listener's context.
    pub fn connector(&self) -> Option<TlsConnector> {
        self.current().connector.clone()
    }
}

/// Checks every `ssl.*` key of the configuration, and the TLS settings of
/// every listener that uses TLS (their files included): what the broker
/// would fail on at start is reported when the configuration is loaded.
pub fn check(config: &Config) -> Result<(), String> {
    for key in config.ssl.keys() {
        let base = match key.strip_prefix("listener.name.") {
            Some(rest) => match rest.split_once('.') {
                Some((_, base)) if base.starts_with("ssl.") => base,
                // Other per-listener keys (SASL's) are not TLS's to judge.
                _ => continue,
            },
            None => key.as_str(),
        };
        if IGNORED.contains(&base) {
            tracing::warn!(key, "has no effect in Sluice (rustls has no such setting)");
        } else if !KEYS.contains(&base) {
            return Err(format!("unknown key '{key}'"));
        }
    }
    for spec in config.listener_specs()? {
        if spec.protocol.uses_tls() {
            SslSettings::for_listener(config, &spec.name)?.server_config()?;
        }
    }
    // In a cluster, the internal listener's mutual TLS (a trust store
    // required, the key store usable as a client certificate).
    if config
        .controller_voters
        .as_deref()
        .is_some_and(|v| !v.trim().is_empty())
    {
        TlsContext::for_internal_listener(config)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_use_iana_names() {
        let names: Vec<String> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| iana_name(*s))
            .collect();
        assert!(names.contains(&"TLS_AES_128_GCM_SHA256".to_string()));
        assert!(names.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()));
    }
}
