//! Broker configuration: defaults, then the TOML file, then `SLUICE_*` variables and
//! flags (clap handles those two, flags winning).
//!
//! Keys in the file use Kafka's broker names (`auto.create.topics.enable`,
//! `log.segment.bytes`, …). TOML reads an unquoted dotted key as nested tables, so
//! the file is flattened back to dotted names before it is deserialized: both
//! `"num.partitions" = 3` and `num.partitions = 3` mean the same thing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Command line of the `sluice` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible event broker",
    long_about = "Sluice: a Kafka-compatible event broker. Without a command it runs the broker; \
the admin commands (topic, group, produce, consume, cluster, config, acl, user) are a \
Kafka client of any compatible broker at --bootstrap / SLUICE_BOOTSTRAP.",
    after_long_help = crate::cli::EXIT_CODES
)]
pub struct Cli {
    /// Address the Kafka listener binds to.
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address clients are told to connect to (host:port); defaults to --listen.
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Folder holding the partition logs and cluster metadata.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This broker's node id.
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// The controller quorum, `id@host:port,...`: every broker's internal
    /// (broker-to-broker) address. Without it the broker runs alone, a quorum
    /// of one.
    #[arg(long, env = "SLUICE_CONTROLLER_VOTERS")]
    pub controller_voters: Option<String>,
    /// Where this broker's internal listener binds; defaults to its own
    /// address in --controller-voters.
    #[arg(long, env = "SLUICE_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,
    /// Address of the admin HTTP listener (/metrics, /health, /ready);
    /// empty: none.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// TOML configuration file (see config/sluice.toml for every key and default).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines as text (the default) or one JSON object per line; the
    /// file's `log.format` otherwise. `RUST_LOG` filters them either way.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<crate::logging::LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Without a command, `sluice` runs the broker.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load a Kafka-compatible broker with producers and consumers and report
    /// throughput and latency percentiles.
    Bench(crate::bench::BenchArgs),
    /// Manage SCRAM credentials offline (before a start).
    #[command(subcommand)]
    Scram(crate::security::sasl::offline::ScramCommand),
    /// The admin commands: a Kafka client of any compatible broker.
    #[command(flatten)]
    Admin(crate::cli::AdminCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

/// Everything the broker reads from configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    #[serde(rename = "advertised.listener")]
    pub advertised_listener: Option<String>,
    /// Kafka's `listeners` (`NAME://host:port,...`); unset: one PLAINTEXT
    /// listener on `listen`. See [`crate::security::listener`].
    pub listeners: Option<String>,
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    #[serde(rename = "listener.security.protocol.map")]
    pub listener_security_protocol_map: String,
    #[serde(rename = "inter.broker.listener.name")]
    pub inter_broker_listener_name: Option<String>,
    /// Every `ssl.*` and `listener.name.*` key of the file, as text (lists
    /// joined with commas); read and checked by [`crate::security::tls`].
    #[serde(skip)]
    pub ssl: std::collections::BTreeMap<String, String>,
    #[serde(rename = "data.dir")]
    pub data_dir: PathBuf,
    /// `text` or `json` (see [`crate::logging`]).
    #[serde(rename = "log.format")]
    pub log_format: crate::logging::LogFormat,
    #[serde(rename = "node.id")]
    pub node_id: i32,
    #[serde(rename = "cluster.id")]
    pub cluster_id: Option<String>,
    #[serde(rename = "controller.quorum.voters")]
    pub controller_voters: Option<String>,
    #[serde(rename = "internal.listen")]
    pub internal_listen: Option<SocketAddr>,
    /// The admin HTTP listener (`host:port`; empty: none).
    #[serde(rename = "admin.listen")]
    pub admin_listen: String,
    /// Per-topic and per-partition series in `/metrics` (off for brokers
    /// with very many partitions: the totals stay).
    #[serde(rename = "metrics.topic.labels.enable")]
    pub metrics_topic_labels_enable: bool,
    /// The Raft tick: heartbeats every 2 ticks, elections after 10–20 ticks
    /// without a leader.
    #[serde(rename = "raft.tick.ms")]
    pub raft_tick_ms: u64,
    /// A broker the active controller has not heard from for this long is
    /// fenced: gone from Metadata, DescribeCluster and every ISR until it
    /// is heard again (Kafka's default, 9 s).
    #[serde(rename = "broker.session.timeout.ms")]
    pub broker_session_timeout_ms: u64,
    /// How often the active controller reviews which brokers it hears
    /// from (Kafka's default, 2 s). Brokers hear from each other on every
    /// Raft tick.
    #[serde(rename = "broker.heartbeat.interval.ms")]
    pub broker_heartbeat_interval_ms: u64,
    /// A replica that has not caught up with its partition's leader for
    /// this long leaves the partition's in-sync replicas (Kafka's default,
    /// 30 s); it comes back once it has.
    #[serde(rename = "replica.lag.time.max.ms")]
    pub replica_lag_time_max_ms: u64,
    /// The rack (or zone) this broker is in: new partitions spread their
    /// replicas over racks, and Metadata and DescribeCluster report it.
    #[serde(rename = "broker.rack")]
    pub broker_rack: Option<String>,
    /// Kafka's `process.roles` in a cluster: "broker,controller" for a
    /// node listed in `controller.quorum.voters` (it votes in the
    /// controller quorum and serves clients), "broker" for one that is not
    /// (it follows the metadata log without voting). Unset: taken from
    /// the voters list.
    #[serde(rename = "process.roles")]
    pub process_roles: Option<String>,
    /// The active controller moves leaderships back to preferred replicas
    /// (the first assigned) when a broker leads too few of its own.
    #[serde(rename = "auto.leader.rebalance.enable")]
    pub auto_leader_rebalance_enable: bool,
    /// The default of the topic config of that name: a partition that lost
    /// a majority of its replicas gets a leader from the replicas left,
    /// losing what only the lost ones held (Kafka's default, false).
    #[serde(rename = "unclean.leader.election.enable")]
    pub unclean_leader_election_enable: bool,
    /// The defaults of the topic configs flush.messages and flush.ms. 1 (and
    /// Sluice's default): every write is on disk before it is acknowledged
    /// with acks=all or read. Kafka's default (9223372036854775807) and
    /// anything above 1: acknowledged from memory, fsynced later.
    #[serde(rename = "log.flush.interval.messages")]
    pub log_flush_interval_messages: i64,
    #[serde(rename = "log.flush.interval.ms")]
    pub log_flush_interval_ms: i64,
    /// How a flusher round makes many partitions durable: "auto" (one
    /// syncfs per file system for a round of several files, fdatasync for
    /// one) or "fdatasync" (every file; for a data folder on a file system
    /// shared with other busy writers, whose pages syncfs would write too).
    #[serde(rename = "log.flush.method")]
    pub log_flush_method: String,
    /// How often it checks (Kafka's default, 300 s).
    #[serde(rename = "leader.imbalance.check.interval.seconds")]
    pub leader_imbalance_check_interval_seconds: u64,
    /// A broker is out of balance when more than this share of the
    /// partitions it prefers are led by another broker (Kafka's default,
    /// 10 %).
    #[serde(rename = "leader.imbalance.per.broker.percentage")]
    pub leader_imbalance_per_broker_percentage: u32,
    #[serde(rename = "offsets.topic.replication.factor")]
    pub offsets_topic_replication_factor: i16,
    #[serde(rename = "max.connections")]
    pub max_connections: usize,
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: usize,
    #[serde(rename = "auto.create.topics.enable")]
    pub auto_create_topics_enable: bool,
    #[serde(rename = "num.partitions")]
    pub num_partitions: i32,
    #[serde(rename = "default.replication.factor")]
    pub default_replication_factor: i16,
    #[serde(rename = "message.max.bytes")]
    pub message_max_bytes: i32,
    #[serde(rename = "log.segment.bytes")]
    pub log_segment_bytes: u64,
    #[serde(rename = "log.roll.ms")]
    pub log_roll_ms: i64,
    #[serde(rename = "log.index.interval.bytes")]
    pub log_index_interval_bytes: usize,
    #[serde(rename = "log.index.size.max.bytes")]
    pub log_index_size_max_bytes: usize,
    #[serde(rename = "log.message.timestamp.type")]
    pub log_message_timestamp_type: String,
    #[serde(rename = "compression.type")]
    pub compression_type: String,
    #[serde(rename = "log.cleanup.policy")]
    pub log_cleanup_policy: String,
    #[serde(rename = "log.retention.ms")]
    pub log_retention_ms: i64,
    #[serde(rename = "log.retention.bytes")]
    pub log_retention_bytes: i64,
    #[serde(rename = "min.insync.replicas")]
    pub min_insync_replicas: i32,
    #[serde(rename = "log.retention.check.interval.ms")]
    pub log_retention_check_interval_ms: u64,
    #[serde(rename = "log.cleaner.enable")]
    pub log_cleaner_enable: bool,
    #[serde(rename = "log.cleaner.backoff.ms")]
    pub log_cleaner_backoff_ms: u64,
    #[serde(rename = "log.cleaner.dedupe.buffer.size")]
    pub log_cleaner_dedupe_buffer_size: u64,
    #[serde(rename = "log.cleaner.min.cleanable.ratio")]
    pub log_cleaner_min_cleanable_ratio: f64,
    #[serde(rename = "log.cleaner.delete.retention.ms")]
    pub log_cleaner_delete_retention_ms: i64,
    #[serde(rename = "log.cleaner.min.compaction.lag.ms")]
    pub log_cleaner_min_compaction_lag_ms: i64,
    #[serde(rename = "log.cleaner.max.compaction.lag.ms")]
    pub log_cleaner_max_compaction_lag_ms: i64,
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: i64,
    #[serde(rename = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: i32,
    #[serde(rename = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: i32,
    #[serde(rename = "group.consumer.heartbeat.interval.ms")]
    pub group_consumer_heartbeat_interval_ms: i32,
    #[serde(rename = "group.consumer.session.timeout.ms")]
    pub group_consumer_session_timeout_ms: i32,
    /// Bounds of the group config consumer.session.timeout.ms (Kafka's
    /// names and defaults).
    #[serde(rename = "group.consumer.min.session.timeout.ms")]
    pub group_consumer_min_session_timeout_ms: i32,
    #[serde(rename = "group.consumer.max.session.timeout.ms")]
    pub group_consumer_max_session_timeout_ms: i32,
    /// Bounds of the group config consumer.heartbeat.interval.ms.
    #[serde(rename = "group.consumer.min.heartbeat.interval.ms")]
    pub group_consumer_min_heartbeat_interval_ms: i32,
    #[serde(rename = "group.consumer.max.heartbeat.interval.ms")]
    pub group_consumer_max_heartbeat_interval_ms: i32,
    /// KIP-848 online migration between classic and consumer groups.
    #[serde(rename = "group.consumer.migration.policy")]
    pub group_consumer_migration_policy: crate::group::consumer::MigrationPolicy,
    #[serde(rename = "offsets.retention.minutes")]
    pub offsets_retention_minutes: i64,
    #[serde(rename = "offsets.retention.check.interval.ms")]
    pub offsets_retention_check_interval_ms: u64,
    #[serde(rename = "offsets.topic.num.partitions")]
    pub offsets_topic_num_partitions: i32,
    #[serde(rename = "offsets.topic.segment.bytes")]
    pub offsets_topic_segment_bytes: u64,
    /// The longest transaction.timeout.ms a producer may ask for.
    #[serde(rename = "transaction.max.timeout.ms")]
    pub transaction_max_timeout_ms: i32,
    /// How long an idempotent producer that writes nothing is remembered
    /// by a partition (its sequence numbers; counted from the timestamp of
    /// its last batch). Producers with a transaction open stay.
    #[serde(rename = "producer.id.expiration.ms")]
    pub producer_id_expiration_ms: i64,
    /// How often expired producer ids are looked for.
    #[serde(rename = "producer.id.expiration.check.interval.ms")]
    pub producer_id_expiration_check_interval_ms: u64,
    /// How long a transactional id with no transaction is remembered.
    #[serde(rename = "transactional.id.expiration.ms")]
    pub transactional_id_expiration_ms: i64,
    /// How often transactions past their timeout are looked for (and aborted).
    #[serde(rename = "transaction.abort.timed.out.transaction.cleanup.interval.ms")]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// How often expired transactional ids are looked for.
    #[serde(rename = "transaction.remove.expired.transaction.cleanup.interval.ms")]
    pub transaction_remove_expired_transaction_cleanup_interval_ms: u64,
    #[serde(rename = "transaction.state.log.num.partitions")]
    pub transaction_state_log_num_partitions: i32,
    #[serde(rename = "transaction.state.log.replication.factor")]
    pub transaction_state_log_replication_factor: i16,
    #[serde(rename = "transaction.state.log.min.isr")]
    pub transaction_state_log_min_isr: i32,
    #[serde(rename = "transaction.state.log.segment.bytes")]
    pub transaction_state_log_segment_bytes: u64,
    /// Kafka's authorizer class (StandardAuthorizer or AclAuthorizer) turns
    /// ACL checks on; empty (the default) authorizes nothing and allows all.
    #[serde(rename = "authorizer.class.name")]
    pub authorizer_class_name: String,
    /// Principals (`User:admin;User:ops`) every check lets through.
    #[serde(rename = "super.users")]
    pub super_users: String,
    /// Whether a resource no ACL applies to is open to everyone.
    #[serde(rename = "allow.everyone.if.no.acl.found")]
    pub allow_everyone_if_no_acl_found: bool,
    /// Mechanisms SASL listeners offer, comma-separated (see
    /// [`crate::security::sasl`]).
    #[serde(rename = "sasl.enabled.mechanisms")]
    pub sasl_enabled_mechanisms: String,
    /// KIP-368: how long a SASL session lasts before the client must
    /// re-authenticate; 0 = for the connection's life.
    #[serde(rename = "connections.max.reauth.ms")]
    pub connections_max_reauth_ms: i64,
    /// How long a failed authentication waits before its answer and the close.
    #[serde(rename = "connection.failed.authentication.delay.ms")]
    pub connection_failed_authentication_delay_ms: u64,
    /// The largest frame a connection may send before it is authenticated.
    #[serde(rename = "sasl.server.max.receive.size")]
    pub sasl_server_max_receive_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".parse().expect("valid literal"),
            advertised_listener: None,
            listeners: None,
            advertised_listeners: None,
            listener_security_protocol_map: crate::security::listener::DEFAULT_PROTOCOL_MAP.into(),
            inter_broker_listener_name: None,
            ssl: Default::default(),
            data_dir: PathBuf::from("data"),
            log_format: Default::default(),
            node_id: 1,
            cluster_id: None,
            controller_voters: None,
            internal_listen: None,
            admin_listen: "127.0.0.1:9644".into(),
            metrics_topic_labels_enable: true,
            raft_tick_ms: 100,
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            replica_lag_time_max_ms: 30000,
            broker_rack: None,
            process_roles: None,
            auto_leader_rebalance_enable: true,
            unclean_leader_election_enable: false,
            log_flush_interval_messages: 1,
            log_flush_interval_ms: i64::MAX,
            log_flush_method: "auto".into(),
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            offsets_topic_replication_factor: 3,
            max_connections: 10_000,
            socket_request_max_bytes: sluice_protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            message_max_bytes: 1_048_588,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_index_interval_bytes: 4096,
            log_index_size_max_bytes: 10 * 1024 * 1024,
            log_message_timestamp_type: "CreateTime".into(),
            compression_type: "producer".into(),
            log_cleanup_policy: "delete".into(),
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            min_insync_replicas: 1,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_dedupe_buffer_size: 128 * 1024 * 1024,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_delete_retention_ms: 24 * 3600 * 1000,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_min_heartbeat_interval_ms: 5_000,
            group_consumer_max_heartbeat_interval_ms: 15_000,
            group_consumer_migration_policy: Default::default(),
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            producer_id_expiration_check_interval_ms: 600_000,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            transaction_remove_expired_transaction_cleanup_interval_ms: 3_600_000,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
            transaction_state_log_segment_bytes: 100 * 1024 * 1024,
            authorizer_class_name: String::new(),
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            sasl_enabled_mechanisms: crate::security::sasl::DEFAULT_ENABLED_MECHANISMS.into(),
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            sasl_server_max_receive_size: 524_288,
        }
    }
}

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Config {
    /// Defaults, overlaid by the file named on the command line, overlaid by flags.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(listen) = cli.listen {
            config.listen = listen;
            if let Some(l) = &config.listeners {
                config.listeners = Some(
                    crate::security::listener::with_plaintext_address(
                        l,
                        &config.listener_security_protocol_map,
                        listen,
                    )
                    .map_err(|reason| ConfigError::Invalid {
                        path: "--listen".into(),
                        reason,
                    })?,
                );
            }
        }
        if let Some(adv) = &cli.advertised_listener {
            config.advertised_listener = Some(adv.clone());
        }
        if let Some(admin) = &cli.admin_listen {
            config.admin_listen = admin.clone();
        }
        if let Some(dir) = &cli.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(f) = cli.log_format {
            config.log_format = f;
        }
        if let Some(id) = cli.node_id {
            config.node_id = id;
        }
        if let Some(v) = &cli.controller_voters {
            config.controller_voters = Some(v.clone());
        }
        if let Some(a) = cli.internal_listen {
            config.internal_listen = Some(a);
        }
        let checked = config
            .listener_specs()
            .and_then(|_| crate::security::tls::check(&config));
        if let Err(reason) = checked {
            return Err(ConfigError::Invalid {
                path: cli.config.clone().unwrap_or_else(|| "--listen".into()),
                reason,
            });
        }
        if let Err(reason) = config.authorizer() {
            return Err(ConfigError::Invalid {
                path: cli.config.clone().unwrap_or_else(|| "(defaults)".into()),
                reason,
            });
        }
        if let Err(reason) = config.voters().and(config.check_security()) {
            return Err(ConfigError::Invalid {
                path: cli
                    .config
                    .clone()
                    .unwrap_or_else(|| "--controller-voters".into()),
                reason,
            });
        }
        Ok(config)
    }

    /// The log format to start logging with, before the configuration is
    /// loaded and checked: `--log-format` / `SLUICE_LOG_FORMAT`, else
    /// `log.format` of the file when the file can be read, else text. (A
    /// file that cannot be read is reported by [`Config::load`] afterwards.)
    pub fn early_log_format(cli: &Cli) -> crate::logging::LogFormat {
        cli.log_format
            .or_else(|| {
                let path = cli.config.as_deref()?;
                Some(Self::from_file(path).ok()?.log_format)
            })
            .unwrap_or_default()
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|reason| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut flat = toml::Table::new();
        flatten("", value, &mut flat);
        let mut ssl = std::collections::BTreeMap::new();
        flat.retain(|k, v| {
            if !(k.starts_with("ssl.") || k.starts_with("listener.name.")) {
                return true;
            }
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            ssl.insert(k.to_string(), text);
            false
        });
        let mut config: Self = toml::Value::Table(flat)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        config.ssl = ssl;
        config.check_flush()?;
        if config.producer_id_expiration_ms < 1 {
            return Err(format!(
                "producer.id.expiration.ms {}: must be at least 1",
                config.producer_id_expiration_ms
            ));
        }
        Ok(config)
    }

    fn check_flush(&self) -> Result<(), String> {
        if self.log_flush_interval_messages < 1 {
            return Err(format!(
                "log.flush.interval.messages {}: must be at least 1",
                self.log_flush_interval_messages
            ));
        }
        if self.log_flush_interval_ms < 0 {
            return Err(format!(
                "log.flush.interval.ms {}: must be at least 0",
                self.log_flush_interval_ms
            ));
        }
        self.flush_method().map(|_| ())
    }

    /// `log.flush.method` as the flusher takes it.
    pub fn flush_method(&self) -> Result<sluice_storage::SyncMethod, String> {
        match self.log_flush_method.as_str() {
            "auto" => Ok(sluice_storage::SyncMethod::Auto),
            "fdatasync" => Ok(sluice_storage::SyncMethod::PerFile),
            other => Err(format!(
                "log.flush.method '{other}': the methods are \"auto\" and \"fdatasync\""
            )),
        }
    }

    /// The listeners to bind, from `listeners` or the `listen` shorthand.
    pub fn listener_specs(&self) -> Result<Vec<crate::security::listener::ListenerSpec>, String> {
        crate::security::listener::listeners(&crate::security::listener::ListenerKeys {
            listeners: self.listeners.as_deref(),
            advertised_listeners: self.advertised_listeners.as_deref(),
            protocol_map: &self.listener_security_protocol_map,
            inter_broker_listener_name: self.inter_broker_listener_name.as_deref(),
            listen: self.listen,
            advertised_listener: self.advertised_listener.as_deref(),
        })
    }

    /// Each voter's host as written in `controller.quorum.voters` (before
    /// it is resolved): the name a voter's certificate is checked against
    /// on the internal listener's mutual TLS.
    pub fn voter_hosts(&self) -> std::collections::HashMap<u64, String> {
        let text = self.controller_voters.as_deref().unwrap_or_default();
        text.split(',')
            .filter_map(|item| {
                let (id, addr) = item.trim().split_once('@')?;
                let (host, _) = addr.rsplit_once(':')?;
                Some((id.parse().ok()?, host.trim_matches(['[', ']']).to_string()))
            })
            .collect()
    }

    /// The controller quorum's voters (node id → internal address), sorted;
    /// empty for a single broker. Err when the list is malformed or does not
    /// include this broker.
    /// The admin listener's address; None when `admin.listen` is empty.
    pub fn admin_address(&self) -> Result<Option<SocketAddr>, String> {
        let a = self.admin_listen.trim();
        if a.is_empty() {
            return Ok(None);
        }
        a.parse()
            .map(Some)
            .map_err(|e| format!("admin.listen '{a}' is not host:port with an IP address: {e}"))
    }

    pub fn voters(&self) -> Result<Vec<(u64, SocketAddr)>, String> {
        let Some(text) = self
            .controller_voters
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (id, addr) = item
                .split_once('@')
                .ok_or_else(|| format!("controller voter '{item}' is not id@host:port"))?;
            let id: u64 = id.parse().ok().filter(|&i| i > 0).ok_or_else(|| {
                format!("controller voter '{item}': the id must be a positive number")
            })?;
            use std::net::ToSocketAddrs;
            let addr = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("controller voter '{item}': cannot resolve '{addr}'"))?;
            if out.iter().any(|(i, _)| *i == id) {
                return Err(format!("controller voter id {id} is listed twice"));
            }
            out.push((id, addr));
        }
        out.sort();
        let voter = out.iter().any(|(i, _)| *i == self.node_id as u64);
        let roles = self.process_roles()?;
        let given = !roles.is_empty();
        if given && voter && !roles.contains(&"controller") {
            return Err(format!(
                "process.roles is \"broker\", but node id {} is among the controller voters {text}",
                self.node_id
            ));
        }
        if given && !voter && roles.contains(&"controller") {
            return Err(format!(
                "process.roles includes \"controller\", but node id {} is not among the controller voters {text}",
                self.node_id
            ));
        }
        if !voter && self.internal_listen.is_none() {
            return Err(format!(
                "node id {} is not a controller voter: it needs --internal-listen (internal.listen), where the other brokers reach it",
                self.node_id
            ));
        }
        Ok(out)
    }

    /// `process.roles` as given (sorted, each once); empty when unset.
    fn process_roles(&self) -> Result<Vec<&str>, String> {
        let Some(text) = self.process_roles.as_deref() else {
            return Ok(Vec::new());
        };
        let mut roles: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        match roles[..] {
            ["broker"] | ["broker", "controller"] => Ok(roles),
            ["controller"] => Err("process.roles = \"controller\": a controller-only node is not supported; every node serves clients (\"broker\" or \"broker,controller\")".into()),
            _ => Err(format!("process.roles '{text}': the roles are \"broker\" and \"controller\"")),
        }
    }

    /// Whether this node votes in the controller quorum (a cluster node
    /// listed in `controller.quorum.voters`).
    pub fn is_controller_voter(&self) -> bool {
        self.voters()
            .is_ok_and(|v| v.iter().any(|(i, _)| *i == self.node_id as u64))
    }

    /// The SASL settings make sense: known mechanisms, no negative times.
    pub fn check_security(&self) -> Result<(), String> {
        crate::security::sasl::parse_enabled(&self.sasl_enabled_mechanisms)?;
        if self.connections_max_reauth_ms < 0 {
            return Err("connections.max.reauth.ms must not be negative".into());
        }
        Ok(())
    }

    /// `sasl.enabled.mechanisms`, parsed (checked at load).
    pub fn sasl_mechanisms(&self) -> Vec<crate::security::sasl::Mechanism> {
        crate::security::sasl::parse_enabled(&self.sasl_enabled_mechanisms).unwrap_or_default()
    }

    /// The host and port clients are told to use (of the first listener).
    pub fn advertised(&self) -> (String, i32) {
        if let Ok(specs) = self.listener_specs()
            && let Some(first) = specs.first()
        {
            return (first.advertised_host.clone(), first.advertised_port as i32);
        }
        if let Some(adv) = &self.advertised_listener
            && let Some((host, port)) = adv.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            return (host.trim_matches(['[', ']']).to_string(), port);
        }
        (self.listen.ip().to_string(), self.listen.port() as i32)
    }
}

impl Config {
    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::classic::GroupConfig {
        crate::group::classic::GroupConfig {
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
        }
    }

    /// Settings of KIP-848 consumer groups.
    pub fn consumer_group_config(&self) -> crate::group::consumer::ConsumerGroupConfig {
        crate::group::consumer::ConsumerGroupConfig {
            session_timeout_ms: self.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
        }
    }

    /// Every key with its current value, under the names the file uses.
    /// (DescribeConfigs of the broker reports Kafka's broker names instead:
    /// `listeners`, `log.dirs`, … — see `handlers/describe_configs.rs`.)
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("listen", self.listen.to_string()),
            (
                "advertised.listener",
                self.advertised_listener.clone().unwrap_or_default(),
            ),
            ("data.dir", self.data_dir.display().to_string()),
            ("log.format", self.log_format.to_string()),
            ("node.id", self.node_id.to_string()),
            (
                "controller.quorum.voters",
                self.controller_voters.clone().unwrap_or_default(),
            ),
            ("raft.tick.ms", self.raft_tick_ms.to_string()),
            (
                "broker.session.timeout.ms",
                self.broker_session_timeout_ms.to_string(),
            ),
            (
                "broker.heartbeat.interval.ms",
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            (
                "replica.lag.time.max.ms",
                self.replica_lag_time_max_ms.to_string(),
            ),
            ("broker.rack", self.broker_rack.clone().unwrap_or_default()),
            (
                "process.roles",
                self.process_roles.clone().unwrap_or_default(),
            ),
            (
                "auto.leader.rebalance.enable",
                self.auto_leader_rebalance_enable.to_string(),
            ),
            (
                "leader.imbalance.check.interval.seconds",
                self.leader_imbalance_check_interval_seconds.to_string(),
            ),
            (
                "unclean.leader.election.enable",
                self.unclean_leader_election_enable.to_string(),
            ),
            (
                "log.flush.interval.messages",
                self.log_flush_interval_messages.to_string(),
            ),
            (
                "log.flush.interval.ms",
                self.log_flush_interval_ms.to_string(),
            ),
            ("log.flush.method", self.log_flush_method.clone()),
            (
                "leader.imbalance.per.broker.percentage",
                self.leader_imbalance_per_broker_percentage.to_string(),
            ),
            (
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor.to_string(),
            ),
            ("max.connections", self.max_connections.to_string()),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
            ),
            ("num.partitions", self.num_partitions.to_string()),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("log.segment.bytes", self.log_segment_bytes.to_string()),
            ("log.roll.ms", self.log_roll_ms.to_string()),
            (
                "log.index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
            ),
            (
                "log.index.size.max.bytes",
                self.log_index_size_max_bytes.to_string(),
            ),
            (
                "log.message.timestamp.type",
                self.log_message_timestamp_type.clone(),
            ),
            ("compression.type", self.compression_type.clone()),
            ("log.cleanup.policy", self.log_cleanup_policy.clone()),
            ("log.retention.ms", self.log_retention_ms.to_string()),
            ("log.retention.bytes", self.log_retention_bytes.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            (
                "log.retention.check.interval.ms",
                self.log_retention_check_interval_ms.to_string(),
            ),
            ("log.cleaner.enable", self.log_cleaner_enable.to_string()),
            (
                "log.cleaner.backoff.ms",
                self.log_cleaner_backoff_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_size.to_string(),
            ),
            (
                "log.cleaner.min.cleanable.ratio",
                self.log_cleaner_min_cleanable_ratio.to_string(),
            ),
            (
                "log.cleaner.delete.retention.ms",
                self.log_cleaner_delete_retention_ms.to_string(),
            ),
            (
                "log.cleaner.min.compaction.lag.ms",
                self.log_cleaner_min_compaction_lag_ms.to_string(),
            ),
            (
                "log.cleaner.max.compaction.lag.ms",
                self.log_cleaner_max_compaction_lag_ms.to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.group_min_session_timeout_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.group_max_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.group_consumer_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.consumer.session.timeout.ms",
                self.group_consumer_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.min.session.timeout.ms",
                self.group_consumer_min_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.max.session.timeout.ms",
                self.group_consumer_max_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.min.heartbeat.interval.ms",
                self.group_consumer_min_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.consumer.max.heartbeat.interval.ms",
                self.group_consumer_max_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.consumer.migration.policy",
                self.group_consumer_migration_policy.to_string(),
            ),
            (
                "offsets.retention.minutes",
                self.offsets_retention_minutes.to_string(),
            ),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
            ),
            (
                "offsets.topic.segment.bytes",
                self.offsets_topic_segment_bytes.to_string(),
            ),
            (
                "transaction.max.timeout.ms",
                self.transaction_max_timeout_ms.to_string(),
            ),
            (
                "producer.id.expiration.ms",
                self.producer_id_expiration_ms.to_string(),
            ),
            (
                "producer.id.expiration.check.interval.ms",
                self.producer_id_expiration_check_interval_ms.to_string(),
            ),
            (
                "transactional.id.expiration.ms",
                self.transactional_id_expiration_ms.to_string(),
            ),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms
                    .to_string(),
            ),
            (
                "transaction.remove.expired.transaction.cleanup.interval.ms",
                self.transaction_remove_expired_transaction_cleanup_interval_ms
                    .to_string(),
            ),
            (
                "transaction.state.log.num.partitions",
                self.transaction_state_log_num_partitions.to_string(),
            ),
            (
                "transaction.state.log.replication.factor",
                self.transaction_state_log_replication_factor.to_string(),
            ),
            (
                "transaction.state.log.min.isr",
                self.transaction_state_log_min_isr.to_string(),
            ),
            (
                "transaction.state.log.segment.bytes",
                self.transaction_state_log_segment_bytes.to_string(),
            ),
            ("authorizer.class.name", self.authorizer_class_name.clone()),
            ("super.users", self.super_users.clone()),
            (
                "allow.everyone.if.no.acl.found",
                self.allow_everyone_if_no_acl_found.to_string(),
            ),
            (
                "sasl.enabled.mechanisms",
                self.sasl_enabled_mechanisms.clone(),
            ),
            (
                "connections.max.reauth.ms",
                self.connections_max_reauth_ms.to_string(),
            ),
            (
                "connection.failed.authentication.delay.ms",
                self.connection_failed_authentication_delay_ms.to_string(),
            ),
            (
                "sasl.server.max.receive.size",
                self.sasl_server_max_receive_size.to_string(),
            ),
        ]
    }

    /// The authorizer `authorizer.class.name`, `super.users` and
    /// `allow.everyone.if.no.acl.found` describe.
    pub fn authorizer(&self) -> Result<crate::security::acl::Authorizer, String> {
        crate::security::acl::Authorizer::new(
            &self.authorizer_class_name,
            &self.super_users,
            self.allow_everyone_if_no_acl_found,
        )
    }

    /// The current value of a broker key, if Sluice has it.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

fn flatten(prefix: &str, table: toml::Table, out: &mut toml::Table) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => {
                out.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_quoted_or_not_mean_the_same() {
        let a = Config::from_toml("\"num.partitions\" = 3\nlisten = \"127.0.0.1:1\"").unwrap();
        let b = Config::from_toml("num.partitions = 3\nlisten = \"127.0.0.1:1\"").unwrap();
        assert_eq!(a.num_partitions, 3);
        assert_eq!(b.num_partitions, 3);
        assert_eq!(a.listen.port(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Config::from_toml("num.partition = 3").is_err());
    }

    #[test]
    fn the_shipped_example_file_parses_to_the_defaults() {
        let shipped = include_str!("../config/sluice.toml");
        let c = Config::from_toml(shipped).unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.num_partitions, d.num_partitions);
        assert_eq!(c.log_segment_bytes, d.log_segment_bytes);
        assert_eq!(c.message_max_bytes, d.message_max_bytes);
        assert_eq!(c.auto_create_topics_enable, d.auto_create_topics_enable);
        assert_eq!(c.log_format, d.log_format);
        assert_eq!(
            c.listener_security_protocol_map,
            d.listener_security_protocol_map
        );
        assert!(c.listeners.is_none() && c.ssl.is_empty());
        assert_eq!(c.listener_specs().unwrap(), d.listener_specs().unwrap());
        assert_eq!(c.admin_listen, d.admin_listen);
        assert_eq!(c.metrics_topic_labels_enable, d.metrics_topic_labels_enable);
    }

    #[test]
    fn controller_voters_are_parsed_and_checked() {
        let mut c = Config {
            node_id: 2,
            ..Config::default()
        };
        assert!(c.voters().unwrap().is_empty(), "no voters: a single broker");
        c.controller_voters = Some("3@127.0.0.1:9103, 1@127.0.0.1:9101,2@127.0.0.1:9102".into());
        let v = c.voters().unwrap();
        assert_eq!(v.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(v[1].1, "127.0.0.1:9102".parse().unwrap());
        // Not a voter: a broker-only node, which needs an internal listener.
        c.controller_voters = Some("1@127.0.0.1:9101,3@127.0.0.1:9103".into());
        assert!(c.voters().unwrap_err().contains("internal-listen"));
        c.internal_listen = Some("127.0.0.1:9102".parse().unwrap());
        assert_eq!(c.voters().unwrap().len(), 2);
        assert!(!c.is_controller_voter());
        c.process_roles = Some("broker".into());
        assert_eq!(c.voters().unwrap().len(), 2);
        for roles in ["broker,controller", "controller", "worker"] {
            c.process_roles = Some(roles.into());
            assert!(c.voters().is_err(), "{roles}");
        }
        // A voter with process.roles = broker contradicts itself.
        c.controller_voters = Some("1@127.0.0.1:9101,2@127.0.0.1:9102".into());
        c.process_roles = Some("broker".into());
        assert!(c.voters().is_err());
        c.process_roles = Some("controller, broker".into());
        assert!(c.is_controller_voter());
        c.process_roles = None;
        for bad in [
            "2@127.0.0.1:9102,2@127.0.0.1:9103",
            "two@127.0.0.1:9102",
            "0@127.0.0.1:9102",
            "2-127.0.0.1:9102",
            "2@nowhere",
        ] {
            c.controller_voters = Some(bad.into());
            assert!(c.voters().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_log_format_comes_from_the_flag_else_the_file() {
        use crate::logging::LogFormat;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "\"log.format\" = \"json\"\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::parse_from(["sluice", "--config", path]);
        assert_eq!(Config::early_log_format(&cli), LogFormat::Json);
        assert_eq!(Config::load(&cli).unwrap().log_format, LogFormat::Json);
        let cli = Cli::parse_from(["sluice", "--config", path, "--log-format", "text"]);
        assert_eq!(Config::early_log_format(&cli), LogFormat::Text);
        assert_eq!(Config::load(&cli).unwrap().log_format, LogFormat::Text);
        let cli = Cli::parse_from(["sluice"]);
        assert_eq!(Config::early_log_format(&cli), LogFormat::Text);
        std::fs::write(&file, "log.format = \"xml\"\n").unwrap();
        let cli = Cli::parse_from(["sluice", "--config", path]);
        assert_eq!(Config::early_log_format(&cli), LogFormat::Text);
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(e.contains("xml") && e.contains("json"), "{e}");
        let e = Cli::try_parse_from(["sluice", "--log-format", "xml"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("[possible values: text, json]"),
            "{e}"
        );
    }

    #[test]
    fn advertised_defaults_to_listen() {
        let mut c = Config::default();
        assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
        c.advertised_listener = Some("broker.example:19092".into());
        assert_eq!(c.advertised(), ("broker.example".to_string(), 19092));
    }
}
