//! Who is on the other end of a connection: the listener it came in on, its
//! security protocol and the principal its authentication established (the
//! session), as the handlers and the authorizer see it.
//!
//! A connection starts with the principal its transport gives it —
//! `User:ANONYMOUS` on a PLAINTEXT listener — and keeps its session for
//! its lifetime, except that SASL authentication sets the principal.
//! Connections other brokers open on the internal listener are marked as
//! inter-broker.

pub mod acl;
pub mod listener;
pub mod sasl;
pub mod ssl_principal;
pub mod tls;

use std::fmt;
use std::net::IpAddr;

/// A listener's security protocol (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name, as in `listener.security.protocol.map`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// Kafka's `KafkaPrincipal`: a type (`User`) and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            principal_type: "User".into(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`, the principal of an unauthenticated connection.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name` (as in ACL bindings and `super.users`).
    pub fn parse(s: &str) -> Option<Self> {
        let (t, n) = s.split_once(':')?;
        if t.is_empty() {
            return None;
        }
        Some(Self {
            principal_type: t.into(),
            name: n.into(),
        })
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// A connection's security context.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: KafkaPrincipal,
    pub client_host: IpAddr,
    /// The listener's name (`PLAINTEXT` for the `--listen` shorthand).
    pub listener: String,
    pub protocol: SecurityProtocol,
    /// Opened by another broker on the internal listener.
    pub inter_broker: bool,
}

impl Session {
    /// A new client connection on a listener: `User:ANONYMOUS` until its
    /// transport or SASL authentication says otherwise.
    pub fn new(listener: &str, protocol: SecurityProtocol, client_host: IpAddr) -> Self {
        Self {
            principal: KafkaPrincipal::anonymous(),
            client_host,
            listener: listener.into(),
            protocol,
            inter_broker: false,
        }
    }

    /// A client connection on a PLAINTEXT listener.
    pub fn plaintext(listener: &str, client_host: IpAddr) -> Self {
        Self {
            principal: KafkaPrincipal::anonymous(),
            client_host,
            listener: listener.into(),
            protocol: SecurityProtocol::Plaintext,
            inter_broker: false,
        }
    }

    /// A connection another broker opened on the internal listener.
    pub fn inter_broker(node: u64, client_host: IpAddr) -> Self {
        Self {
            principal: KafkaPrincipal::user(format!("broker-{node}")),
            client_host,
            listener: "INTERNAL".into(),
            protocol: SecurityProtocol::Plaintext,
            inter_broker: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_and_protocols_parse_as_kafka_writes_them() {
        let p = KafkaPrincipal::parse("User:alice").unwrap();
        assert_eq!(p, KafkaPrincipal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!(
            KafkaPrincipal::parse("User:CN=a,O=b").unwrap().name,
            "CN=a,O=b"
        );
        assert!(KafkaPrincipal::parse("alice").is_none());
        assert!(KafkaPrincipal::parse(":alice").is_none());
        for p in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Ssl.uses_sasl());
    }
}
