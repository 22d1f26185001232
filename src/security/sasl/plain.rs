//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, one message.
//!
//! Sluice keeps no clear-text passwords: a PLAIN login is checked against
//! the user's SCRAM credentials, by deriving the keys from the password
//! with the stored salt and iteration count.

use super::Failure;
use super::scram::{ScramCredential, ScramMechanism};

/// A parsed PLAIN message.
#[derive(PartialEq, Eq)]
pub struct PlainLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Parses a PLAIN message: exactly three NUL-separated UTF-8 parts, a
/// user and a password that are not empty, and an authorization id that is
/// empty or the user itself.
pub fn parse(message: &[u8]) -> Result<PlainLogin, Failure> {
    let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authzid, user, password] = parts[..] else {
        return Err(Failure::new(format!(
            "invalid SASL/PLAIN message: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| Failure::new("SASL/PLAIN message is not UTF-8"))
    };
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() {
        return Err(Failure::new("SASL/PLAIN: user name not specified"));
    }
    if password.is_empty() {
        return Err(Failure::new("SASL/PLAIN: password not specified"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(Failure::new(
            "authorization id differs from the authenticated user",
        ));
    }
    Ok(PlainLogin { user, password })
}

/// True when `password` matches any of the user's SCRAM credentials.
pub fn verify(password: &str, credentials: &[(ScramMechanism, ScramCredential)]) -> bool {
    credentials
        .iter()
        .any(|(m, c)| c.matches_password(*m, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_as_rfc_4616_says() {
        let ok = parse(b"\0alice\0pw").unwrap();
        assert_eq!((ok.user.as_str(), ok.password.as_str()), ("alice", "pw"));
        assert_eq!(parse(b"alice\0alice\0pw").unwrap(), ok);
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0pw\0",
            b"\0\0pw",
            b"\0alice\0",
            b"bob\0alice\0pw",
            b"\0al\xffice\0pw",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{ok:?}").contains("pw"), "no password in logs");
    }

    #[test]
    fn passwords_are_checked_against_scram_credentials() {
        let creds = vec![
            (
                ScramMechanism::Sha256,
                ScramMechanism::Sha256.credential_for_password("one", 4096),
            ),
            (
                ScramMechanism::Sha512,
                ScramMechanism::Sha512.credential_for_password("two", 4096),
            ),
        ];
        assert!(verify("one", &creds));
        assert!(verify("two", &creds));
        assert!(!verify("three", &creds));
        assert!(!verify("one", &[]));
    }
}
