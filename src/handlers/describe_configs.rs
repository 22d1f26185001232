//! DescribeConfigs: topics (every topic config Kafka knows, with its
//! effective value and source), groups (every group config) and this broker
//! (its configuration under Kafka's broker names: `listeners`, `log.dirs`,
//! `node.id`, …, never Sluice's own file keys).
//!
//! As in Kafka: synonyms only with include_synonyms, documentation only with
//! include_documentation, config types from v3. The documentation of a config
//! Sluice accepts but does not act on says so.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::acls::config_access;
use super::{RequestContext, str_bytes};
use crate::broker::validate_topic_name;
use crate::security::acl::AclOperation;
use crate::topic_config::{
    self, CLUSTER_DEFAULT_KEYS, ConfigType, Described, Synonym, TOPIC_CONFIGS, ValueFn,
    broker_synonyms, group, source,
};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const GROUP: i8 = 32;

pub async fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|res| {
            let mut out = DescribeConfigsResult::default()
                .with_error_message(None)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let name = res.resource_name.as_str();
            let access = config_access(ctx, res.resource_type, name, AclOperation::DescribeConfigs);
            let described = match res.resource_type {
                _ if access.is_err() => Err((
                    access.err().unwrap_or(ResponseError::UnknownServerError),
                    "Authorization failed.".to_owned(),
                )),
                TOPIC => topic_configs(ctx, name),
                BROKER => broker_configs(ctx, name),
                GROUP => group_configs(ctx, name),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type: {other}"),
                )),
            };
            match described {
                Ok(entries) => {
                    out.configs = entries
                        .into_iter()
                        .filter(|e| wanted(&e.name))
                        .map(|e| e.encode(ctx.version, req.include_synonyms, req.include_documentation))
                        .collect();
                }
                Err((e, message)) => {
                    info_limited!(resource = %res.resource_name, detail = %message, "describe configs failed");
                    out.error_code = e.code();
                    out.error_message = Some(str_bytes(message));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// One config as it goes out.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    synonyms: Vec<Synonym>,
    documentation: String,
}

impl Entry {
    fn from_described(d: Described, read_only: bool) -> Self {
        Self {
            name: d.def.name.to_string(),
            value: d.value,
            source: d.source,
            read_only,
            kind: d.def.kind,
            synonyms: d.synonyms,
            documentation: d.def.documentation(),
        }
    }

    fn encode(
        self,
        version: i16,
        synonyms: bool,
        documentation: bool,
    ) -> DescribeConfigsResourceResult {
        let mut e = DescribeConfigsResourceResult::default()
            .with_name(str_bytes(self.name))
            .with_value(Some(str_bytes(self.value)))
            .with_config_source(self.source)
            .with_read_only(self.read_only)
            .with_is_sensitive(false)
            .with_documentation(None);
        if synonyms {
            e.synonyms = self
                .synonyms
                .into_iter()
                .map(|s| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(s.name))
                        .with_value(Some(str_bytes(s.value)))
                        .with_source(s.source)
                })
                .collect();
        }
        if version >= 3 {
            e.config_type = self.kind as i8;
            if documentation {
                e.documentation = Some(str_bytes(self.documentation));
            }
        }
        e
    }
}

type Entries = Result<Vec<Entry>, (ResponseError, String)>;

fn topic_configs(ctx: &RequestContext, topic: &str) -> Entries {
    validate_topic_name(topic).map_err(|e| (ResponseError::InvalidTopicException, e.message))?;
    let Some(t) = ctx.broker.topic(topic) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        ));
    };
    Ok(topic_config::describe(&ctx.broker.config, &t.overrides)
        .into_iter()
        .map(|d| Entry::from_described(d, false))
        .collect())
}

fn group_configs(ctx: &RequestContext, group_id: &str) -> Entries {
    if group_id.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "Group name must not be empty".into(),
        ));
    }
    let overrides = ctx.broker.group_config_overrides(group_id);
    Ok(group::describe(&ctx.broker.config, &overrides)
        .into_iter()
        .map(|d| Entry::from_described(d, false))
        .collect())
}

/// A broker config under its Kafka name.
struct BrokerKey {
    name: &'static str,
    kind: ConfigType,
    value: ValueFn,
}

const fn key(name: &'static str, kind: ConfigType, value: ValueFn) -> BrokerKey {
    BrokerKey { name, kind, value }
}

fn listener(name: &str, host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("{name}://[{host}]:{port}")
    } else {
        format!("{name}://{host}:{port}")
    }
}

/// The broker's own settings under Kafka's names. The broker defaults of
/// topic and group configs (log.retention.ms, group.consumer.*, …) are added
/// from their tables. Sluice-only settings without a Kafka counterpart
/// (raft.tick.ms, internal.listen) are not described.
static BROKER_KEYS: &[BrokerKey] = &[
    key("advertised.listeners", ConfigType::String, |c| {
        c.listener_specs()
            .unwrap_or_default()
            .iter()
            .map(|l| listener(&l.name, &l.advertised_host, l.advertised_port))
            .collect::<Vec<_>>()
            .join(",")
    }),
    key("auto.create.topics.enable", ConfigType::Boolean, |c| {
        c.auto_create_topics_enable.to_string()
    }),
    key("broker.id", ConfigType::Int, |c| c.node_id.to_string()),
    key("controller.quorum.voters", ConfigType::List, |c| {
        c.controller_voters.clone().unwrap_or_default()
    }),
    key("default.replication.factor", ConfigType::Int, |c| {
        c.default_replication_factor.to_string()
    }),
    key("delete.topic.enable", ConfigType::Boolean, |_| {
        "true".into()
    }),
    key("group.consumer.migration.policy", ConfigType::String, |c| {
        c.group_consumer_migration_policy.to_string()
    }),
    key("group.initial.rebalance.delay.ms", ConfigType::Int, |c| {
        c.group_initial_rebalance_delay_ms.to_string()
    }),
    key("group.max.session.timeout.ms", ConfigType::Int, |c| {
        c.group_max_session_timeout_ms.to_string()
    }),
    key("group.min.session.timeout.ms", ConfigType::Int, |c| {
        c.group_min_session_timeout_ms.to_string()
    }),
    key("listeners", ConfigType::String, |c| {
        c.listener_specs()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                let (host, port) = l.bind.rsplit_once(':').unwrap_or((&l.bind, ""));
                listener(&l.name, host.trim_matches(['[', ']']), port)
            })
            .collect::<Vec<_>>()
            .join(",")
    }),
    key("listener.security.protocol.map", ConfigType::String, |c| {
        c.listener_security_protocol_map.clone()
    }),
    key("inter.broker.listener.name", ConfigType::String, |c| {
        c.inter_broker_listener_name.clone().unwrap_or_else(|| {
            c.listener_specs()
                .ok()
                .and_then(|l| l.into_iter().next())
                .map_or_else(|| "PLAINTEXT".into(), |l| l.name)
        })
    }),
    key("log.cleaner.backoff.ms", ConfigType::Long, |c| {
        c.log_cleaner_backoff_ms.to_string()
    }),
    key("log.cleaner.dedupe.buffer.size", ConfigType::Long, |c| {
        c.log_cleaner_dedupe_buffer_size.to_string()
    }),
    key("log.cleaner.enable", ConfigType::Boolean, |c| {
        c.log_cleaner_enable.to_string()
    }),
    key("log.dir", ConfigType::List, |c| {
        c.data_dir.display().to_string()
    }),
    key("log.dirs", ConfigType::List, |c| {
        c.data_dir.display().to_string()
    }),
    key("log.retention.check.interval.ms", ConfigType::Long, |c| {
        c.log_retention_check_interval_ms.to_string()
    }),
    key("max.connections", ConfigType::Int, |c| {
        c.max_connections.to_string()
    }),
    key("node.id", ConfigType::Int, |c| c.node_id.to_string()),
    key("num.partitions", ConfigType::Int, |c| {
        c.num_partitions.to_string()
    }),
    key(
        "offsets.retention.check.interval.ms",
        ConfigType::Long,
        |c| c.offsets_retention_check_interval_ms.to_string(),
    ),
    key("offsets.retention.minutes", ConfigType::Int, |c| {
        c.offsets_retention_minutes.to_string()
    }),
    key("offsets.topic.num.partitions", ConfigType::Int, |c| {
        c.offsets_topic_num_partitions.to_string()
    }),
    key("offsets.topic.replication.factor", ConfigType::Short, |c| {
        c.offsets_topic_replication_factor.to_string()
    }),
    key("offsets.topic.segment.bytes", ConfigType::Int, |c| {
        c.offsets_topic_segment_bytes.to_string()
    }),
    key("process.roles", ConfigType::List, |_| {
        "broker,controller".into()
    }),
    key("socket.request.max.bytes", ConfigType::Int, |c| {
        c.socket_request_max_bytes.to_string()
    }),
    key("producer.id.expiration.ms", ConfigType::Int, |c| {
        c.producer_id_expiration_ms.to_string()
    }),
    key(
        "producer.id.expiration.check.interval.ms",
        ConfigType::Int,
        |c| c.producer_id_expiration_check_interval_ms.to_string(),
    ),
    key("transactional.id.expiration.ms", ConfigType::Int, |c| {
        c.transactional_id_expiration_ms.to_string()
    }),
    key("transaction.max.timeout.ms", ConfigType::Int, |c| {
        c.transaction_max_timeout_ms.to_string()
    }),
    key(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        ConfigType::Int,
        |c| {
            c.transaction_abort_timed_out_transaction_cleanup_interval_ms
                .to_string()
        },
    ),
    key(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        ConfigType::Int,
        |c| {
            c.transaction_remove_expired_transaction_cleanup_interval_ms
                .to_string()
        },
    ),
    key(
        "transaction.state.log.num.partitions",
        ConfigType::Int,
        |c| c.transaction_state_log_num_partitions.to_string(),
    ),
    key(
        "transaction.state.log.replication.factor",
        ConfigType::Short,
        |c| c.transaction_state_log_replication_factor.to_string(),
    ),
    key("transaction.state.log.min.isr", ConfigType::Int, |c| {
        c.transaction_state_log_min_isr.to_string()
    }),
    key(
        "transaction.state.log.segment.bytes",
        ConfigType::Int,
        |c| c.transaction_state_log_segment_bytes.to_string(),
    ),
];

/// Every broker key described, by name: the table above, then the broker
/// synonyms of the topic configs, then the group.* keys.
fn broker_keys() -> BTreeMap<&'static str, (ConfigType, ValueFn)> {
    let mut out = BTreeMap::new();
    for k in BROKER_KEYS {
        out.entry(k.name).or_insert((k.kind, k.value));
    }
    for def in TOPIC_CONFIGS {
        if let Some(name) = def.broker_key {
            out.entry(name).or_insert((def.kind, def.default));
        }
    }
    for (name, kind, value) in group::broker_keys() {
        out.entry(name).or_insert((kind, value));
    }
    out
}

/// This broker's configuration (name = its node id), or, for the empty
/// name, the cluster-level defaults (as Kafka 4.1+: min.insync.replicas).
fn broker_configs(ctx: &RequestContext, name: &str) -> Entries {
    let node = ctx.broker.node_id();
    let cluster_level = name.is_empty();
    if !cluster_level {
        let id: i32 = name.parse().map_err(|_| {
            (
                ResponseError::InvalidRequest,
                format!("Broker id must be an integer, but it is: {name}"),
            )
        })?;
        if id != node {
            return Err((
                ResponseError::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {node} or empty string, but received {name}"
                ),
            ));
        }
    }
    let config = &ctx.broker.config;
    Ok(broker_keys()
        .into_iter()
        .filter(|(key, _)| !cluster_level || CLUSTER_DEFAULT_KEYS.contains(key))
        .map(|(key, (kind, value))| {
            let mut synonyms = broker_synonyms(key, value, config);
            if cluster_level {
                synonyms.retain(|s| s.source == source::DYNAMIC_DEFAULT_BROKER);
            }
            Entry {
                name: key.to_string(),
                value: value(config),
                source: synonyms.first().map_or(source::DEFAULT, |s| s.source),
                // Broker configs come from the file; none can be altered.
                read_only: true,
                kind,
                synonyms,
                documentation: format!(
                    "Kafka's broker config {key}: read from Sluice's configuration file at \
                     start (see docs/CONFIG.md)."
                ),
            }
        })
        .collect())
}
