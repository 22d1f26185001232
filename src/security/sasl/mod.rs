//! SASL authentication: the mechanisms (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512) as pure state machines, and a connection's progress
//! through SaslHandshake / SaslAuthenticate ([`gate`]).
//!
//! Nothing here reads the network: the connection hands each client
//! message in and writes back what it is told.

pub mod gate;
pub mod offline;
pub mod plain;
pub mod scram;

use std::fmt;

use scram::ScramMechanism;

/// A mechanism Sluice can serve (`sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub const ALL: [Self; 3] = [
        Self::Plain,
        Self::Scram(ScramMechanism::Sha256),
        Self::Scram(ScramMechanism::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }

    /// Mechanism names are case-sensitive, as in Kafka.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Sluice's default for `sasl.enabled.mechanisms` (Kafka's is GSSAPI,
/// which Sluice does not offer).
pub const DEFAULT_ENABLED_MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";

/// Parses `sasl.enabled.mechanisms`: a comma-separated list of names Sluice
/// serves, in the order clients are told.
pub fn parse_enabled(list: &str) -> Result<Vec<Mechanism>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = Mechanism::parse(name).ok_or_else(|| {
            format!(
                "sasl.enabled.mechanisms: '{name}' is not supported (Sluice serves {})",
                DEFAULT_ENABLED_MECHANISMS.replace(',', ", ")
            )
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Why an authentication failed: for the broker's log only. The client is
/// told nothing more than that the credentials were invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_mechanisms_parse() {
        assert_eq!(
            parse_enabled(DEFAULT_ENABLED_MECHANISMS).unwrap(),
            Mechanism::ALL.to_vec()
        );
        assert_eq!(
            parse_enabled(" SCRAM-SHA-512 , PLAIN,PLAIN").unwrap(),
            vec![Mechanism::Scram(ScramMechanism::Sha512), Mechanism::Plain]
        );
        assert!(parse_enabled("GSSAPI").is_err());
        assert!(parse_enabled("plain").is_err());
        assert!(parse_enabled("").unwrap().is_empty());
    }
}
