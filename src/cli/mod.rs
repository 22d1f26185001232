//! The admin CLI: `sluice topic`, `group`, `produce`, `consume`, `cluster`,
//! `config`, `acl`, `user` and `completion`.
//!
//! It is a Kafka client and nothing else: every command is Kafka requests
//! to `--bootstrap` (and to the brokers its Metadata names), so it works
//! against any Kafka-compatible broker and never reaches into Sluice's
//! storage. One file per command group; `admin.rs` holds the connections
//! (bootstrap, partition leaders, group coordinators) and `output.rs` the
//! tables, JSON and error words.
//!
//! Exit codes, which scripts can rely on:
//! 0 done; 1 a Kafka error or a failed operation; 2 bad usage or
//! configuration; 3 the broker cannot be reached (within `--timeout`).

pub mod acl;
pub mod admin;
pub mod cluster;
pub mod config;
pub mod consume;
pub mod group;
pub mod member;
pub mod offsets;
pub mod output;
pub mod produce;
pub mod topic;

use std::time::Duration;

pub use admin::Admin;
pub use output::CliError;

/// What every admin command needs to reach the cluster; global, so it may
/// come before or after the subcommand (`sluice topic --json list`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Bootstrap address (host:port) of any Kafka-compatible broker.
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// Seconds to wait for a connection or an answer before giving up
    /// (exit code 3 when the broker cannot be reached).
    #[arg(long, global = true, env = "SLUICE_TIMEOUT", default_value_t = 10.0)]
    pub timeout: f64,
    /// Print JSON (one document, or one object a line for `consume`) instead
    /// of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Connect over TLS (an SSL or SASL_SSL listener), trusting the CA
    /// certificates in this PEM file.
    #[arg(long, global = true, env = "SLUICE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: a client certificate chain (PEM) to present; its key
    /// in --tls-key.
    #[arg(long, global = true, env = "SLUICE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[arg(long, global = true, env = "SLUICE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (a
    /// SASL_PLAINTEXT or SASL_SSL listener).
    #[arg(long, global = true, env = "SLUICE_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, global = true, env = "SLUICE_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    #[arg(
        long,
        global = true,
        env = "SLUICE_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
}

impl ClientArgs {
    /// The TLS configuration of --tls-ca/--tls-cert/--tls-key.
    pub fn tls(&self) -> Result<crate::client::Tls, CliError> {
        crate::client::tls_config(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
        .map_err(|e| CliError::Usage(e.to_string()))
    }

    /// The SASL login of --sasl-mechanism/--sasl-username/--sasl-password.
    pub fn sasl(&self) -> Result<Option<crate::client::sasl::SaslLogin>, CliError> {
        let Some(mechanism) = &self.sasl_mechanism else {
            return Ok(None);
        };
        let mechanism = mechanism.to_ascii_uppercase();
        if !matches!(
            mechanism.as_str(),
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
        ) {
            return Err(CliError::Usage(format!(
                "--sasl-mechanism {mechanism}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            )));
        }
        match (&self.sasl_username, &self.sasl_password) {
            (Some(u), Some(p)) => Ok(Some(crate::client::sasl::SaslLogin {
                mechanism,
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Err(CliError::Usage(
                "--sasl-mechanism needs --sasl-username and --sasl-password".into(),
            )),
        }
    }

    pub fn timeout(&self) -> Result<Duration, CliError> {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--timeout {}: not a positive number of seconds",
                    self.timeout
                ))
            })
    }
}

/// Exit codes of the admin commands, shown in `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 a Kafka error or a failed operation; \
2 bad usage or configuration; 3 the broker cannot be reached within --timeout.";

/// The admin commands, dispatched by `main` before any broker start.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create, list, describe, alter and delete topics, add partitions.
    #[command(after_help = EXIT_CODES)]
    Topic(topic::TopicArgs),
    /// List, describe (offsets and lag), reset offsets of, and delete consumer groups.
    #[command(after_help = EXIT_CODES)]
    Group(group::GroupArgs),
    /// Produce lines from stdin, one message each.
    #[command(after_help = EXIT_CODES)]
    Produce(produce::ProduceArgs),
    /// Consume messages and print them (a format template like kcat's -f).
    #[command(after_help = EXIT_CODES)]
    Consume(consume::ConsumeArgs),
    /// Describe the cluster: brokers, controller, controller quorum.
    #[command(after_help = EXIT_CODES)]
    Cluster(cluster::ClusterArgs),
    /// Get and set configs of topics, brokers and groups.
    #[command(after_help = EXIT_CODES)]
    Config(config::ConfigArgs),
    /// List, create and delete ACLs.
    #[command(after_help = EXIT_CODES)]
    Acl(acl::AclArgs),
    /// List, add and delete SCRAM users.
    #[command(after_help = EXIT_CODES)]
    User(acl::UserArgs),
}

/// Runs one admin command on a runtime of its own; the process exit code.
pub fn main(cmd: &AdminCommand) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cmd));
    // Do not wait for a stdin reader blocked in a read.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cmd: &AdminCommand) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Topic(a) => topic::run(a).await,
        AdminCommand::Group(a) => group::run(a).await,
        AdminCommand::Produce(a) => produce::run(a).await,
        AdminCommand::Consume(a) => consume::run(a).await,
        AdminCommand::Cluster(a) => cluster::run(a).await,
        AdminCommand::Config(a) => config::run(a).await,
        AdminCommand::Acl(a) => acl::run_acl(a).await,
        AdminCommand::User(a) => acl::run_user(a).await,
    }
}

/// `KEY=VALUE` pairs of `--config`-like flags.
pub fn key_values(pairs: &[String], flag: &str) -> Result<Vec<(String, String)>, CliError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::Usage(format!("{flag} {p}: expected NAME=VALUE")))
        })
        .collect()
}
