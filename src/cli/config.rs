//! `sluice config get|set` for topics, brokers and groups, and the
//! DescribeConfigs / IncrementalAlterConfigs calls `topic` shares.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use serde_json::json;

use super::admin::{Node, str_bytes};
use super::output::{CliError, check, print, table};
use super::{Admin, ClientArgs, key_values};

/// Kafka's ConfigResource types.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const GROUP: i8 = 32;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub cmd: ConfigCommand,
}

/// Which resource: exactly one of --topic, --broker, --group.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    /// A topic's configs.
    #[arg(long)]
    pub topic: Option<String>,
    /// A broker's configs (its node id).
    #[arg(long)]
    pub broker: Option<i32>,
    /// A consumer group's configs (KIP-848 group configs).
    #[arg(long)]
    pub group: Option<String>,
}

impl Resource {
    fn typed(&self) -> (i8, String) {
        match (&self.topic, self.broker, &self.group) {
            (Some(t), _, _) => (TOPIC, t.clone()),
            (_, Some(b), _) => (BROKER, b.to_string()),
            (_, _, Some(g)) => (GROUP, g.clone()),
            _ => unreachable!("clap requires one"),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Show configs: those set on the resource (or NAMEs given), --all for every one.
    Get {
        #[command(flatten)]
        resource: Resource,
        /// Only these configs.
        names: Vec<String>,
        /// Every config, defaults included.
        #[arg(long)]
        all: bool,
    },
    /// Set configs (NAME=VALUE) and remove them (--delete NAME: back to the default).
    Set {
        #[command(flatten)]
        resource: Resource,
        /// NAME=VALUE pairs to set.
        pairs: Vec<String>,
        /// Config names to remove.
        #[arg(long)]
        delete: Vec<String>,
    },
}

/// One config as DescribeConfigs tells it.
pub struct Entry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
}

/// Kafka's name of a config source.
pub fn source_name(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn resource_words(kind: i8, name: &str) -> String {
    match kind {
        TOPIC => format!("topic {name}"),
        BROKER => format!("broker {name}"),
        GROUP => format!("group {name}"),
        _ => name.to_owned(),
    }
}

/// The configs of one resource (`names` empty: all of them).
pub async fn describe(
    admin: &mut Admin,
    kind: i8,
    name: &str,
    names: &[String],
) -> Result<Vec<Entry>, CliError> {
    // A broker's configs come from that broker.
    let node = match (kind, name.parse::<i32>()) {
        (BROKER, Ok(id)) => Node::Id(id),
        _ => Node::Any,
    };
    let (r, _): (DescribeConfigsResponse, _) = admin
        .call(node, ApiKey::DescribeConfigs, 1..=4, |_| {
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_configuration_keys(if names.is_empty() {
                        None
                    } else {
                        Some(names.iter().map(|n| str_bytes(n)).collect())
                    }),
            ])
        })
        .await?;
    let res = r
        .results
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Failed("DescribeConfigs answered no resource".into()))?;
    check(
        || {
            format!(
                "cannot describe the configs of {}",
                resource_words(kind, name)
            )
        },
        res.error_code,
        res.error_message.as_deref(),
    )?;
    let mut out: Vec<Entry> = res
        .configs
        .into_iter()
        .map(|c| Entry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: c.config_source,
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Sets (`Some`) and deletes (`None`) configs of one resource, with
/// IncrementalAlterConfigs.
pub async fn alter(
    admin: &mut Admin,
    kind: i8,
    name: &str,
    changes: &[(String, Option<String>)],
) -> Result<(), CliError> {
    let node = match (kind, name.parse::<i32>()) {
        (BROKER, Ok(id)) => Node::Id(id),
        _ => Node::Any,
    };
    let (r, _): (IncrementalAlterConfigsResponse, _) = admin
        .call(node, ApiKey::IncrementalAlterConfigs, 0..=1, |_| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_configs(
                        changes
                            .iter()
                            .map(|(k, v)| {
                                AlterableConfig::default()
                                    .with_name(str_bytes(k))
                                    // 0 SET, 1 DELETE
                                    .with_config_operation(if v.is_some() { 0 } else { 1 })
                                    .with_value(v.as_deref().map(str_bytes))
                            })
                            .collect(),
                    ),
            ])
        })
        .await?;
    for res in &r.responses {
        check(
            || format!("cannot alter the configs of {}", resource_words(kind, name)),
            res.error_code,
            res.error_message.as_deref(),
        )?;
    }
    Ok(())
}

/// Configs as a table and as JSON.
pub fn show(entries: &[Entry], json: bool) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                value_text(e),
                source_name(e.source).to_owned(),
            ]
        })
        .collect();
    let value = json!(
        entries
            .iter()
            .map(|e| json!({
                "name": e.name,
                "value": if e.sensitive { None } else { e.value.clone() },
                "source": source_name(e.source),
                "read_only": e.read_only,
                "sensitive": e.sensitive,
            }))
            .collect::<Vec<_>>()
    );
    print(json, &value, &table(&["NAME", "VALUE", "SOURCE"], &rows));
}

fn value_text(e: &Entry) -> String {
    if e.sensitive {
        "(sensitive)".into()
    } else {
        e.value.clone().unwrap_or_else(|| "(null)".into())
    }
}

/// Changes from NAME=VALUE pairs and names to delete.
pub fn changes(
    pairs: &[String],
    delete: &[String],
    flag: &str,
) -> Result<Vec<(String, Option<String>)>, CliError> {
    let mut out: Vec<(String, Option<String>)> = key_values(pairs, flag)?
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    out.extend(delete.iter().map(|d| (d.clone(), None)));
    if out.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give NAME=VALUE pairs or --delete NAME".into(),
        ));
    }
    Ok(out)
}

pub async fn run(args: &ConfigArgs) -> Result<(), CliError> {
    match &args.cmd {
        ConfigCommand::Get {
            resource,
            names,
            all,
        } => {
            let (kind, name) = resource.typed();
            let mut admin = Admin::connect(&args.client).await?;
            let mut entries = describe(&mut admin, kind, &name, names).await?;
            if names.is_empty() && !all {
                entries.retain(|e| e.source != 5 && e.source != 4);
            }
            show(&entries, args.client.json);
        }
        ConfigCommand::Set {
            resource,
            pairs,
            delete,
        } => {
            let (kind, name) = resource.typed();
            let changes = changes(pairs, delete, "set")?;
            let mut admin = Admin::connect(&args.client).await?;
            alter(&mut admin, kind, &name, &changes).await?;
            let value = json!({"resource": resource_words(kind, &name), "changed": changes.len()});
            print(
                args.client.json,
                &value,
                &format!(
                    "{} config(s) of {} changed\n",
                    changes.len(),
                    resource_words(kind, &name)
                ),
            );
        }
    }
    Ok(())
}
