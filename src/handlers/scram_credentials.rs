//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! users' SCRAM credentials in the cluster metadata, with Kafka's checks,
//! messages and error codes. The client sends the salted password; the
//! broker keeps only StoredKey and ServerKey derived from it.
//!
//! SaslHandshake and SaslAuthenticate reach the handlers only where there is
//! no authentication to do (a listener without SASL, or a connection already
//! authenticated that may not re-authenticate): they are answered
//! ILLEGAL_SASL_STATE, as Kafka does. The exchange itself is
//! [`crate::security::sasl::gate`]'s, before dispatch.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{RequestContext, str_bytes};
use crate::replication::metadata::ScramChange;
use crate::security::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism};

pub async fn describe(
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let all = ctx.broker.scram_credentials();
    // (user, named more than once), in the order first named; every user
    // with a credential when none is named.
    let mut users: Vec<(String, bool)> = Vec::new();
    match req.users.filter(|u| !u.is_empty()) {
        None => users.extend(all.keys().map(|u| (u.clone(), false))),
        Some(named) => {
            for u in named {
                let name = u.name.to_string();
                match users.iter_mut().find(|(n, _)| *n == name) {
                    Some(entry) => entry.1 = true,
                    None => users.push((name, false)),
                }
            }
        }
    }
    let results = users
        .into_iter()
        .map(|(user, twice)| {
            let r = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&user));
            if twice {
                return r
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            match all.get(&user).filter(|m| !m.is_empty()) {
                Some(mechs) => r.with_credential_infos(
                    mechs
                        .iter()
                        .map(|(m, c)| {
                            CredentialInfo::default()
                                .with_mechanism(m.type_code())
                                .with_iterations(c.iterations)
                        })
                        .collect(),
                ),
                None => r
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(str_bytes(format!(
                        "attemptToDescribeUserThatDoesNotExist: {user}"
                    )))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let current = ctx.broker.scram_credentials();
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    // Accepted changes by user, in request order.
    let mut accepted: Vec<ScramChange> = Vec::new();
    let twice = || {
        (
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request".to_string(),
        )
    };
    let name_and_mechanism = |name: &str, code: i8| {
        if name.is_empty() {
            return Err((
                ResponseError::UnacceptableCredential,
                "Username must not be empty".to_string(),
            ));
        }
        ScramMechanism::from_type_code(code).ok_or((
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism".to_string(),
        ))
    };
    for d in &req.deletions {
        let user = d.name.to_string();
        if errors.contains_key(&user) {
            continue;
        }
        if let Some(i) = accepted.iter().position(|c| c.user == user) {
            accepted.remove(i);
            errors.insert(user, twice());
            continue;
        }
        let checked = name_and_mechanism(&user, d.mechanism).and_then(|m| {
            if current.get(&user).is_some_and(|c| c.contains_key(&m)) {
                Ok(m)
            } else {
                Err((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".to_string(),
                ))
            }
        });
        match checked {
            Ok(mechanism) => accepted.push(ScramChange {
                user,
                mechanism,
                credential: None,
            }),
            Err(e) => {
                errors.insert(user, e);
            }
        }
    }
    for u in &req.upsertions {
        let user = u.name.to_string();
        if errors.contains_key(&user) {
            continue;
        }
        if let Some(i) = accepted.iter().position(|c| c.user == user) {
            accepted.remove(i);
            errors.insert(user, twice());
            continue;
        }
        let checked = name_and_mechanism(&user, u.mechanism).and_then(|m| {
            if u.iterations < MIN_ITERATIONS {
                Err((
                    ResponseError::UnacceptableCredential,
                    "Too few iterations".to_string(),
                ))
            } else if u.iterations > MAX_ITERATIONS {
                Err((
                    ResponseError::UnacceptableCredential,
                    "Too many iterations".to_string(),
                ))
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(mechanism) => accepted.push(ScramChange {
                credential: Some(mechanism.credential(&u.salted_password, &u.salt, u.iterations)),
                user,
                mechanism,
            }),
            Err(e) => {
                errors.insert(user, e);
            }
        }
    }
    let mut results: Vec<AlterUserScramCredentialsResult> = Vec::new();
    let users: Vec<String> = accepted.iter().map(|c| c.user.clone()).collect();
    match ctx.broker.alter_scram_credentials(accepted).await {
        Ok(()) => results.extend(
            users
                .iter()
                .map(|u| AlterUserScramCredentialsResult::default().with_user(str_bytes(u))),
        ),
        Err(e) => results.extend(users.iter().map(|u| {
            AlterUserScramCredentialsResult::default()
                .with_user(str_bytes(u))
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(&e.message)))
        })),
    }
    results.extend(errors.into_iter().map(|(user, (code, message))| {
        AlterUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    }));
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// SaslHandshake with no authentication to do.
pub async fn handshake(ctx: &RequestContext, _req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let mechanisms = if ctx.session.protocol.uses_sasl() {
        ctx.broker
            .config
            .sasl_mechanisms()
            .into_iter()
            .map(|m| str_bytes(m.name()))
            .collect()
    } else {
        Vec::new()
    };
    SaslHandshakeResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_mechanisms(mechanisms)
}

/// SaslAuthenticate with no authentication under way.
pub async fn authenticate(
    _ctx: &RequestContext,
    _req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication",
        )))
}
