//! `sluice topic create|list|describe|alter|delete|add-partitions`.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::*;
use serde_json::json;

use super::admin::{Node, str_bytes, topic_name};
use super::output::{CliError, check, kafka_error, print, table};
use super::{Admin, ClientArgs, config, key_values};

/// How long the broker may take to create or delete (ms).
const OP_TIMEOUT_MS: i32 = 30_000;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: TopicCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p', default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long, short = 'r', default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, NAME=VALUE (repeatable).
        #[arg(long, short = 'c')]
        config: Vec<String>,
        /// Succeed when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
        /// Ask the broker to check the request without creating anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics.
    List {
        /// Include internal topics (__consumer_offsets, …).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions (leader, replicas, in-sync replicas) and configs set on topics.
    Describe {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set (--set NAME=VALUE) or remove (--delete NAME) topic configs.
    Alter {
        name: String,
        #[arg(long)]
        set: Vec<String>,
        #[arg(long)]
        delete: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Succeed when a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Raise a topic's partition count to --count.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        count: i32,
    },
}

pub async fn run(args: &TopicArgs) -> Result<(), CliError> {
    let json = args.client.json;
    // Bad input fails before any connection.
    match &args.cmd {
        TopicCommand::Create { config, .. } => {
            key_values(config, "--config")?;
        }
        TopicCommand::Alter { set, delete, .. } => {
            config::changes(set, delete, "--set")?;
        }
        _ => {}
    }
    let mut admin = Admin::connect(&args.client).await?;
    match &args.cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
            if_not_exists,
            dry_run,
        } => {
            let configs = key_values(config, "--config")?;
            let (r, _): (CreateTopicsResponse, _) = admin
                .call(Node::Any, ApiKey::CreateTopics, 2..=7, |_| {
                    CreateTopicsRequest::default()
                        .with_topics(vec![
                            CreatableTopic::default()
                                .with_name(topic_name(name))
                                .with_num_partitions(*partitions)
                                .with_replication_factor(*replication_factor)
                                .with_configs(
                                    configs
                                        .iter()
                                        .map(|(k, v)| {
                                            CreatableTopicConfig::default()
                                                .with_name(str_bytes(k))
                                                .with_value(Some(str_bytes(v)))
                                        })
                                        .collect(),
                                ),
                        ])
                        .with_timeout_ms(OP_TIMEOUT_MS)
                        .with_validate_only(*dry_run)
                })
                .await?;
            let t = r
                .topics
                .first()
                .ok_or_else(|| CliError::Failed("CreateTopics answered no topic".into()))?;
            if t.error_code == TOPIC_ALREADY_EXISTS && *if_not_exists {
                print(
                    json,
                    &json!({"topic": name, "created": false}),
                    &format!("topic {name} exists already\n"),
                );
                return Ok(());
            }
            check(
                || format!("cannot create topic {name}"),
                t.error_code,
                t.error_message.as_deref(),
            )?;
            let verb = if *dry_run {
                "would be created"
            } else {
                "created"
            };
            print(
                json,
                &json!({"topic": name, "created": !dry_run, "partitions": t.num_partitions, "replication_factor": t.replication_factor}),
                &format!(
                    "topic {name} {verb} ({} partitions, replication factor {})\n",
                    t.num_partitions, t.replication_factor
                ),
            );
        }
        TopicCommand::List { internal } => {
            let m = admin.metadata(None).await?;
            let mut topics: Vec<_> = m
                .topics
                .iter()
                .filter(|t| *internal || !t.is_internal)
                .filter_map(|t| {
                    let name = t.name.as_ref()?.to_string();
                    let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
                    Some((name, t.partitions.len(), rf, t.is_internal))
                })
                .collect();
            topics.sort();
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|(n, p, r, _)| vec![n.clone(), p.to_string(), r.to_string()])
                .collect();
            let value = json!(topics
                .iter()
                .map(|(n, p, r, i)| json!({"name": n, "partitions": p, "replication_factor": r, "internal": i}))
                .collect::<Vec<_>>());
            print(
                json,
                &value,
                &table(&["TOPIC", "PARTITIONS", "REPLICATION"], &rows),
            );
        }
        TopicCommand::Describe { names } => {
            let m = admin.metadata(Some(names)).await?;
            let mut human = String::new();
            let mut docs = Vec::new();
            for t in &m.topics {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                check(
                    || format!("cannot describe topic {name}"),
                    t.error_code,
                    None,
                )?;
                let mut parts: Vec<_> = t.partitions.iter().collect();
                parts.sort_by_key(|p| p.partition_index);
                let ids = |v: &[BrokerId]| {
                    v.iter()
                        .map(|b| b.0.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let rows: Vec<Vec<String>> = parts
                    .iter()
                    .map(|p| {
                        vec![
                            p.partition_index.to_string(),
                            p.leader_id.0.to_string(),
                            ids(&p.replica_nodes),
                            ids(&p.isr_nodes),
                        ]
                    })
                    .collect();
                let mut entries = config::describe(&mut admin, config::TOPIC, &name, &[]).await?;
                entries.retain(|e| e.source == 1);
                human.push_str(&format!(
                    "Topic {name}  id {}  partitions {}{}\n",
                    t.topic_id,
                    parts.len(),
                    if t.is_internal { "  (internal)" } else { "" }
                ));
                human.push_str(&table(&["PARTITION", "LEADER", "REPLICAS", "ISR"], &rows));
                if !entries.is_empty() {
                    human.push_str("Configs:\n");
                    for e in &entries {
                        human.push_str(&format!(
                            "  {}={}\n",
                            e.name,
                            e.value.as_deref().unwrap_or("")
                        ));
                    }
                }
                human.push('\n');
                docs.push(json!({
                    "name": name,
                    "topic_id": t.topic_id.to_string(),
                    "internal": t.is_internal,
                    "partitions": parts.iter().map(|p| json!({
                        "partition": p.partition_index,
                        "leader": p.leader_id.0,
                        "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                        "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "configs": entries.iter().map(|e| (e.name.clone(), json!(e.value))).collect::<serde_json::Map<_, _>>(),
                }));
            }
            print(json, &json!(docs), &human);
        }
        TopicCommand::Alter { name, set, delete } => {
            let changes = config::changes(set, delete, "--set")?;
            config::alter(&mut admin, config::TOPIC, name, &changes).await?;
            print(
                json,
                &json!({"topic": name, "changed": changes.len()}),
                &format!("topic {name}: {} config(s) changed\n", changes.len()),
            );
        }
        TopicCommand::Delete { names, if_exists } => {
            let (r, _): (DeleteTopicsResponse, _) = admin
                .call(Node::Any, ApiKey::DeleteTopics, 1..=6, |v| {
                    let req = DeleteTopicsRequest::default().with_timeout_ms(OP_TIMEOUT_MS);
                    if v >= 6 {
                        req.with_topics(
                            names
                                .iter()
                                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                                .collect(),
                        )
                    } else {
                        req.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
                    }
                })
                .await?;
            let mut deleted = Vec::new();
            let mut first_error = None;
            for t in &r.responses {
                let n = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                match t.error_code {
                    0 => deleted.push(n),
                    UNKNOWN_TOPIC_OR_PARTITION if *if_exists => {}
                    code => {
                        let e = kafka_error(
                            &format!("cannot delete topic {n}"),
                            code,
                            t.error_message.as_deref(),
                        );
                        eprintln!("error: {e}");
                        first_error.get_or_insert(e);
                    }
                }
            }
            let human: String = deleted
                .iter()
                .map(|n| format!("topic {n} deleted\n"))
                .collect();
            print(json, &json!({"deleted": deleted}), &human);
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        TopicCommand::AddPartitions { name, count } => {
            let (r, _): (CreatePartitionsResponse, _) = admin
                .call(Node::Any, ApiKey::CreatePartitions, 0..=3, |_| {
                    CreatePartitionsRequest::default()
                        .with_topics(vec![
                            CreatePartitionsTopic::default()
                                .with_name(topic_name(name))
                                .with_count(*count)
                                // The broker places the new partitions.
                                .with_assignments(None),
                        ])
                        .with_timeout_ms(OP_TIMEOUT_MS)
                })
                .await?;
            for t in &r.results {
                check(
                    || format!("cannot add partitions to topic {name}"),
                    t.error_code,
                    t.error_message.as_deref(),
                )?;
            }
            print(
                json,
                &json!({"topic": name, "partitions": count}),
                &format!("topic {name} now has {count} partitions\n"),
            );
        }
    }
    Ok(())
}
