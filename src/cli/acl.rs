//! `sluice acl list|create|delete` (CreateAcls, DescribeAcls, DeleteAcls)
//! and `sluice user list|add|delete` (SCRAM credentials through
//! DescribeUserScramCredentials / AlterUserScramCredentials; the salted
//! password is computed here, the password never goes on the wire).

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use serde_json::json;

use super::admin::{Node, str_bytes};
use super::output::{CliError, check, print, table};
use super::{Admin, ClientArgs};
use crate::security::sasl::scram::ScramMechanism;

#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: AclCommand,
}

/// The resource of an ACL (for list and delete, a filter: none given
/// means any).
#[derive(Debug, Clone, clap::Args)]
#[group(multiple = false)]
pub struct AclResource {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AclFilter {
    #[command(flatten)]
    pub resource: AclResource,
    /// The name is a prefix (PREFIXED pattern) rather than LITERAL.
    #[arg(long)]
    pub prefixed: bool,
    /// Principal, e.g. User:alice.
    #[arg(long)]
    pub principal: Option<String>,
    /// Host the principal connects from.
    #[arg(long)]
    pub host: Option<String>,
    /// Operation(s): ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
    /// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    #[arg(long, value_delimiter = ',')]
    pub operation: Vec<String>,
    /// A DENY rule rather than ALLOW.
    #[arg(long)]
    pub deny: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// List ACLs (all, or those matching the filter).
    List(AclFilter),
    /// Create ACLs: --principal, a resource and --operation are required.
    Create(AclFilter),
    /// Delete the ACLs matching the filter.
    Delete(AclFilter),
}

const RESOURCE_TYPES: &[(i8, &str)] = &[
    (1, "ANY"),
    (2, "TOPIC"),
    (3, "GROUP"),
    (4, "CLUSTER"),
    (5, "TRANSACTIONAL_ID"),
    (6, "DELEGATION_TOKEN"),
    (7, "USER"),
];
const PATTERNS: &[(i8, &str)] = &[(1, "ANY"), (2, "MATCH"), (3, "LITERAL"), (4, "PREFIXED")];
const OPERATIONS: &[(i8, &str)] = &[
    (1, "ANY"),
    (2, "ALL"),
    (3, "READ"),
    (4, "WRITE"),
    (5, "CREATE"),
    (6, "DELETE"),
    (7, "ALTER"),
    (8, "DESCRIBE"),
    (9, "CLUSTER_ACTION"),
    (10, "DESCRIBE_CONFIGS"),
    (11, "ALTER_CONFIGS"),
    (12, "IDEMPOTENT_WRITE"),
    (13, "CREATE_TOKENS"),
    (14, "DESCRIBE_TOKENS"),
];
const PERMISSIONS: &[(i8, &str)] = &[(1, "ANY"), (2, "DENY"), (3, "ALLOW")];

fn name_of(table: &[(i8, &'static str)], code: i8) -> &'static str {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("UNKNOWN", |(_, n)| n)
}

fn code_of(table: &[(i8, &str)], name: &str, what: &str) -> Result<i8, CliError> {
    let want = name.trim().to_ascii_uppercase().replace('-', "_");
    table
        .iter()
        .find(|(_, n)| *n == want)
        .map(|(c, _)| *c)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{what} {name}: expected one of {}",
                table.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// A filter as the wire wants it: resource type, name, pattern type,
/// principal, host, operations, permission.
struct Wire {
    resource_type: i8,
    name: Option<String>,
    pattern: i8,
    principal: Option<String>,
    host: Option<String>,
    operations: Vec<i8>,
    permission: i8,
}

fn wire(f: &AclFilter, exact: bool) -> Result<Wire, CliError> {
    let r = &f.resource;
    let (resource_type, name) = match (&r.topic, &r.group, &r.transactional_id, r.cluster) {
        (Some(t), ..) => (2, Some(t.clone())),
        (_, Some(g), ..) => (3, Some(g.clone())),
        (_, _, Some(x), _) => (5, Some(x.clone())),
        (.., true) => (4, Some("kafka-cluster".to_owned())),
        _ if exact => {
            return Err(CliError::Usage(
                "give the resource: --topic, --group, --transactional-id or --cluster".into(),
            ));
        }
        _ => (1, None),
    };
    let pattern = match (f.prefixed, name.is_some()) {
        (true, _) => 4,
        (false, true) => 3,
        (false, false) => 1,
    };
    let mut operations = f
        .operation
        .iter()
        .map(|o| code_of(OPERATIONS, o, "--operation"))
        .collect::<Result<Vec<_>, _>>()?;
    if operations.is_empty() {
        if exact {
            return Err(CliError::Usage("give at least one --operation".into()));
        }
        operations.push(1);
    }
    if exact && f.principal.is_none() {
        return Err(CliError::Usage(
            "give the --principal (e.g. User:alice)".into(),
        ));
    }
    let permission = match (f.deny, exact) {
        (true, _) => 2,
        (false, true) => 3,
        (false, false) => 1,
    };
    let host = match (&f.host, exact) {
        (None, true) => Some("*".to_owned()),
        (h, _) => h.clone(),
    };
    Ok(Wire {
        resource_type,
        name,
        pattern,
        principal: f.principal.clone(),
        host,
        operations,
        permission,
    })
}

/// One ACL for a person and for JSON.
fn acl_row(
    rt: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> (Vec<String>, serde_json::Value) {
    let row = vec![
        principal.to_owned(),
        name_of(PERMISSIONS, perm).to_owned(),
        name_of(OPERATIONS, op).to_owned(),
        name_of(RESOURCE_TYPES, rt).to_owned(),
        name.to_owned(),
        name_of(PATTERNS, pattern).to_owned(),
        host.to_owned(),
    ];
    let value = json!({
        "principal": principal, "permission": row[1], "operation": row[2],
        "resource_type": row[3], "resource_name": name, "pattern_type": row[5], "host": host,
    });
    (row, value)
}

const ACL_HEADERS: &[&str] = &[
    "PRINCIPAL",
    "PERMISSION",
    "OPERATION",
    "RESOURCE",
    "NAME",
    "PATTERN",
    "HOST",
];

pub async fn run_acl(args: &AclArgs) -> Result<(), CliError> {
    let json = args.client.json;
    let (rows, values): (Vec<_>, Vec<_>) = match &args.cmd {
        AclCommand::List(f) => {
            let w = wire(f, false)?;
            let mut admin = Admin::connect(&args.client).await?;
            let mut out = Vec::new();
            for op in &w.operations {
                let (r, _): (DescribeAclsResponse, _) = admin
                    .call(Node::Any, ApiKey::DescribeAcls, 1..=3, |_| {
                        DescribeAclsRequest::default()
                            .with_resource_type_filter(w.resource_type)
                            .with_resource_name_filter(w.name.as_deref().map(str_bytes))
                            .with_pattern_type_filter(w.pattern)
                            .with_principal_filter(w.principal.as_deref().map(str_bytes))
                            .with_host_filter(w.host.as_deref().map(str_bytes))
                            .with_operation(*op)
                            .with_permission_type(w.permission)
                    })
                    .await?;
                check(
                    || "cannot list ACLs".into(),
                    r.error_code,
                    r.error_message.as_deref(),
                )?;
                for res in &r.resources {
                    for a in &res.acls {
                        out.push(acl_row(
                            res.resource_type,
                            &res.resource_name,
                            res.pattern_type,
                            &a.principal,
                            &a.host,
                            a.operation,
                            a.permission_type,
                        ));
                    }
                }
            }
            out.into_iter().unzip()
        }
        AclCommand::Create(f) => {
            let w = wire(f, true)?;
            let mut admin = Admin::connect(&args.client).await?;
            let creations: Vec<AclCreation> = w
                .operations
                .iter()
                .map(|op| {
                    AclCreation::default()
                        .with_resource_type(w.resource_type)
                        .with_resource_name(str_bytes(w.name.as_deref().unwrap_or_default()))
                        .with_resource_pattern_type(w.pattern)
                        .with_principal(str_bytes(w.principal.as_deref().unwrap_or_default()))
                        .with_host(str_bytes(w.host.as_deref().unwrap_or("*")))
                        .with_operation(*op)
                        .with_permission_type(w.permission)
                })
                .collect();
            let (r, _): (CreateAclsResponse, _) = admin
                .call(Node::Any, ApiKey::CreateAcls, 1..=3, |_| {
                    CreateAclsRequest::default().with_creations(creations.clone())
                })
                .await?;
            for res in &r.results {
                check(
                    || "cannot create the ACL".into(),
                    res.error_code,
                    res.error_message.as_deref(),
                )?;
            }
            let name = w.name.as_deref().unwrap_or_default();
            let principal = w.principal.as_deref().unwrap_or_default();
            let host = w.host.as_deref().unwrap_or("*");
            w.operations
                .iter()
                .map(|op| {
                    acl_row(
                        w.resource_type,
                        name,
                        w.pattern,
                        principal,
                        host,
                        *op,
                        w.permission,
                    )
                })
                .unzip()
        }
        AclCommand::Delete(f) => {
            let w = wire(f, false)?;
            let mut admin = Admin::connect(&args.client).await?;
            let filters: Vec<DeleteAclsFilter> = w
                .operations
                .iter()
                .map(|op| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(w.resource_type)
                        .with_resource_name_filter(w.name.as_deref().map(str_bytes))
                        .with_pattern_type_filter(w.pattern)
                        .with_principal_filter(w.principal.as_deref().map(str_bytes))
                        .with_host_filter(w.host.as_deref().map(str_bytes))
                        .with_operation(*op)
                        .with_permission_type(w.permission)
                })
                .collect();
            let (r, _): (DeleteAclsResponse, _) = admin
                .call(Node::Any, ApiKey::DeleteAcls, 1..=3, |_| {
                    DeleteAclsRequest::default().with_filters(filters.clone())
                })
                .await?;
            let mut out = Vec::new();
            for fr in &r.filter_results {
                check(
                    || "cannot delete ACLs".into(),
                    fr.error_code,
                    fr.error_message.as_deref(),
                )?;
                for a in &fr.matching_acls {
                    check(
                        || "cannot delete an ACL".into(),
                        a.error_code,
                        a.error_message.as_deref(),
                    )?;
                    out.push(acl_row(
                        a.resource_type,
                        &a.resource_name,
                        a.pattern_type,
                        &a.principal,
                        &a.host,
                        a.operation,
                        a.permission_type,
                    ));
                }
            }
            out.into_iter().unzip()
        }
    };
    let mut human = table(ACL_HEADERS, &rows);
    match &args.cmd {
        AclCommand::Create(_) => human.push_str(&format!("{} ACL(s) created\n", rows.len())),
        AclCommand::Delete(_) => human.push_str(&format!("{} ACL(s) deleted\n", rows.len())),
        AclCommand::List(_) => {}
    }
    print(json, &json!(values), &human);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Users with SCRAM credentials, their mechanisms and iterations.
    List {
        /// Only these users.
        users: Vec<String>,
    },
    /// Add or replace a user's SCRAM credential.
    Add {
        user: String,
        /// The password (or from SLUICE_USER_PASSWORD).
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Delete a user's SCRAM credential.
    Delete {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
    },
}

fn mechanism(name: &str) -> Result<ScramMechanism, CliError> {
    ScramMechanism::parse(name).ok_or_else(|| {
        CliError::Usage(format!(
            "--mechanism {name}: expected SCRAM-SHA-256 or SCRAM-SHA-512"
        ))
    })
}

pub async fn run_user(args: &UserArgs) -> Result<(), CliError> {
    let json = args.client.json;
    match &args.cmd {
        UserCommand::List { users } => {
            let mut admin = Admin::connect(&args.client).await?;
            let (r, _): (DescribeUserScramCredentialsResponse, _) = admin
                .call(
                    Node::Any,
                    ApiKey::DescribeUserScramCredentials,
                    0..=0,
                    |_| {
                        DescribeUserScramCredentialsRequest::default().with_users(
                            if users.is_empty() {
                                None
                            } else {
                                Some(
                                    users
                                        .iter()
                                        .map(|u| UserName::default().with_name(str_bytes(u)))
                                        .collect(),
                                )
                            },
                        )
                    },
                )
                .await?;
            check(
                || "cannot list users".into(),
                r.error_code,
                r.error_message.as_deref(),
            )?;
            let mut rows = Vec::new();
            let mut values = Vec::new();
            for u in &r.results {
                check(
                    || format!("cannot describe user {}", u.user.as_str()),
                    u.error_code,
                    u.error_message.as_deref(),
                )?;
                for c in &u.credential_infos {
                    let mech =
                        ScramMechanism::from_type_code(c.mechanism).map_or("UNKNOWN", |m| m.name());
                    rows.push(vec![
                        u.user.to_string(),
                        mech.to_owned(),
                        c.iterations.to_string(),
                    ]);
                    values.push(json!({"user": u.user.as_str(), "mechanism": mech, "iterations": c.iterations}));
                }
            }
            print(
                json,
                &json!(values),
                &table(&["USER", "MECHANISM", "ITERATIONS"], &rows),
            );
        }
        UserCommand::Add {
            user,
            password,
            mechanism: m,
            iterations,
        } => {
            let mech = mechanism(m)?;
            if *iterations < 4096 {
                return Err(CliError::Usage(
                    "--iterations: at least 4096 (Kafka's minimum)".into(),
                ));
            }
            let salt: [u8; 32] = rand::random();
            let salted = mech.salted_password(password.as_bytes(), &salt, *iterations as u32);
            let mut admin = Admin::connect(&args.client).await?;
            let (r, _): (AlterUserScramCredentialsResponse, _) = admin
                .call(Node::Any, ApiKey::AlterUserScramCredentials, 0..=0, |_| {
                    AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                        ScramCredentialUpsertion::default()
                            .with_name(str_bytes(user))
                            .with_mechanism(mech.type_code())
                            .with_iterations(*iterations)
                            .with_salt(salt.to_vec().into())
                            .with_salted_password(salted.into()),
                    ])
                })
                .await?;
            for res in &r.results {
                check(
                    || format!("cannot add user {user}"),
                    res.error_code,
                    res.error_message.as_deref(),
                )?;
            }
            print(
                json,
                &json!({"user": user, "mechanism": mech.name()}),
                &format!("{} credential of user {user} set\n", mech.name()),
            );
        }
        UserCommand::Delete { user, mechanism: m } => {
            let mech = mechanism(m)?;
            let mut admin = Admin::connect(&args.client).await?;
            let (r, _): (AlterUserScramCredentialsResponse, _) = admin
                .call(Node::Any, ApiKey::AlterUserScramCredentials, 0..=0, |_| {
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        ScramCredentialDeletion::default()
                            .with_name(str_bytes(user))
                            .with_mechanism(mech.type_code()),
                    ])
                })
                .await?;
            for res in &r.results {
                check(
                    || format!("cannot delete user {user}"),
                    res.error_code,
                    res.error_message.as_deref(),
                )?;
            }
            print(
                json,
                &json!({"user": user, "deleted": mech.name()}),
                &format!("{} credential of user {user} deleted\n", mech.name()),
            );
        }
    }
    Ok(())
}
