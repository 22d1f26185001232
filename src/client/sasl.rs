//! The client side of SASL on a new connection (after ApiVersions):
//! SaslHandshake names the mechanism, then SaslAuthenticate carries PLAIN's
//! one message or SCRAM's two rounds (RFC 5802, no channel binding, as
//! Kafka), the server's signature checked at the end.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Receiver, Result, Sender, answer};
use crate::security::sasl::scram::ScramMechanism;

/// A user's SASL login.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub username: String,
    pub password: String,
}

/// The SCRAM client's state between its two messages.
struct ScramClient {
    m: ScramMechanism,
    password: String,
    bare: String,
}

const GS2: &str = "n,,";

impl ScramClient {
    fn new(m: ScramMechanism, user: &str, password: &str) -> Self {
        let nonce: [u8; 18] = rand::random();
        // RFC 5802 saslname: ',' and '=' escaped.
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            m,
            password: password.to_owned(),
            bare: format!("n={user},r={}", B64.encode(nonce)),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{GS2}{}", self.bare).into_bytes()
    }

    /// The client-final message and the server-final message to expect.
    fn last(&self, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let sf =
            std::str::from_utf8(server_first).map_err(|_| "SCRAM: server-first is not UTF-8")?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for a in sf.split(',') {
            if let Some(v) = a.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = a.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|_| "SCRAM: bad salt")?);
            } else if let Some(v) = a.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|_| "SCRAM: bad iteration count")?);
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("SCRAM: malformed server-first message {sf:?}").into());
        };
        let ours = self.bare.rsplit_once("r=").map_or("", |(_, n)| n);
        if !nonce.starts_with(ours) || iterations == 0 {
            return Err("SCRAM: the server's nonce does not extend ours".into());
        }
        let salted = self
            .m
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.m.hmac(&salted, b"Client Key");
        let stored_key = self.m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(GS2));
        let auth = format!("{},{sf},{without_proof}", self.bare);
        let signature = self.m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.m.hmac(&salted, b"Server Key");
        let expect = format!(
            "v={}",
            B64.encode(self.m.hmac(&server_key, auth.as_bytes()))
        );
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            expect.into_bytes(),
        ))
    }
}

/// One SaslAuthenticate round: the server's answer bytes.
async fn round(tx: &mut Sender, rx: &mut Receiver, bytes: Vec<u8>) -> Result<Bytes> {
    let v = tx.version(ApiKey::SaslAuthenticate, 0..=2)?;
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let corr = tx.send(ApiKey::SaslAuthenticate, v, &req).await?;
    let r: SaslAuthenticateResponse = answer(rx, ApiKey::SaslAuthenticate, corr, v).await?;
    if r.error_code != 0 {
        return Err(format!(
            "{} (error {}){}",
            super::error_name(r.error_code),
            r.error_code,
            r.error_message
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )
        .into());
    }
    Ok(r.auth_bytes)
}

/// Authenticates a new connection with `login`.
pub async fn authenticate(tx: &mut Sender, rx: &mut Receiver, login: &SaslLogin) -> Result<()> {
    let scram = match login.mechanism.as_str() {
        "PLAIN" => None,
        m => Some(ScramMechanism::parse(m).ok_or_else(|| {
            format!("SASL mechanism {m}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        })?),
    };
    let v = tx.version(ApiKey::SaslHandshake, 1..=1)?;
    let req = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_string(login.mechanism.clone()));
    let corr = tx.send(ApiKey::SaslHandshake, v, &req).await?;
    let r: SaslHandshakeResponse = answer(rx, ApiKey::SaslHandshake, corr, v).await?;
    if r.error_code != 0 {
        let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(format!(
            "the broker does not take SASL mechanism {} (it offers: {})",
            login.mechanism,
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )
        .into());
    }
    match scram {
        None => {
            let msg = format!("\0{}\0{}", login.username, login.password).into_bytes();
            round(tx, rx, msg).await?;
        }
        Some(m) => {
            let client = ScramClient::new(m, &login.username, &login.password);
            let server_first = round(tx, rx, client.first()).await?;
            let (last, expect) = client.last(&server_first)?;
            let server_final = round(tx, rx, last).await?;
            if server_final.as_ref() != expect.as_slice() {
                return Err("SCRAM: the server's signature does not match (not the broker holding this user's credential?)".into());
            }
        }
    }
    Ok(())
}
