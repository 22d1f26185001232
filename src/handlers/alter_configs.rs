//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs
//! (SET, DELETE, APPEND, SUBTRACT one key at a time), for topics. Broker
//! configs come from the configuration file and are not changed at run time.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};

use super::{RequestContext, str_bytes};
use crate::broker::TopicError;
use crate::config::Config;
use crate::topic_config::{self, ConfigType};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn not_a_topic(resource_type: i8) -> TopicError {
    if resource_type == BROKER {
        TopicError::new(
            ResponseError::InvalidRequest,
            "broker configs are read from the configuration file at start",
        )
    } else {
        TopicError::new(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} has no alterable configs"),
        )
    }
}

fn invalid(message: String) -> TopicError {
    TopicError::new(ResponseError::InvalidConfig, message)
}

/// The topic's overrides after one IncrementalAlterConfigs operation.
/// APPEND and SUBTRACT start from the effective value: the override, or the
/// broker default when there is none (as in Kafka).
fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    broker: &Config,
    name: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), TopicError> {
    let def = topic_config::find(name)
        .ok_or_else(|| invalid(format!("unknown topic config '{name}'")))?;
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match op {
        SET => {
            let v = value.ok_or_else(|| invalid(format!("SET {name} needs a value")))?;
            overrides.insert(name.to_owned(), v.to_owned());
        }
        DELETE => {
            overrides.remove(name);
        }
        APPEND | SUBTRACT => {
            if def.kind != ConfigType::List {
                return Err(invalid(format!(
                    "{name} is not a list: APPEND and SUBTRACT do not apply"
                )));
            }
            let current = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| (def.default)(broker));
            let mut items = list(&current);
            for v in list(value.unwrap_or("")) {
                if op == APPEND && !items.contains(&v) {
                    items.push(v);
                } else if op == SUBTRACT {
                    items.retain(|i| *i != v);
                }
            }
            if items.is_empty() {
                overrides.remove(name);
            } else {
                overrides.insert(name.to_owned(), items.join(","));
            }
        }
        other => {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("unknown config operation {other}"),
            ));
        }
    }
    Ok(())
}

pub async fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = if res.resource_type != TOPIC {
            Err(not_a_topic(res.resource_type))
        } else {
            // AlterConfigs replaces the whole set of overrides.
            let overrides: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            ctx.broker
                .alter_topic_config(&name, overrides, req.validate_only)
                .await
        };
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_message(None)
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            info_limited!(resource = %name, message = %e.message, "AlterConfigs refused");
            r = r
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message)));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = if res.resource_type != TOPIC {
            Err(not_a_topic(res.resource_type))
        } else {
            match ctx.broker.topic(&name) {
                None => Err(TopicError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
                Some(topic) => {
                    let mut overrides = topic.overrides.clone();
                    let applied = res.configs.iter().try_for_each(|c| {
                        apply_op(
                            &mut overrides,
                            &ctx.broker.config,
                            c.name.as_str(),
                            c.config_operation,
                            c.value.as_deref(),
                        )
                    });
                    match applied {
                        Ok(()) => {
                            ctx.broker
                                .alter_topic_config(&name, overrides, req.validate_only)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_message(None)
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            info_limited!(resource = %name, message = %e.message, "IncrementalAlterConfigs refused");
            r = r
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(e.message)));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_operations() {
        let broker = Config::default();
        let mut o = BTreeMap::new();
        apply_op(&mut o, &broker, "retention.ms", SET, Some("1000")).unwrap();
        // The default (delete) is the base of the first APPEND.
        apply_op(&mut o, &broker, "cleanup.policy", APPEND, Some("compact")).unwrap();
        apply_op(&mut o, &broker, "cleanup.policy", APPEND, Some("delete")).unwrap();
        assert_eq!(o["cleanup.policy"], "delete,compact");
        apply_op(&mut o, &broker, "cleanup.policy", SUBTRACT, Some("delete")).unwrap();
        assert_eq!(o["cleanup.policy"], "compact");
        apply_op(&mut o, &broker, "retention.ms", DELETE, None).unwrap();
        assert!(!o.contains_key("retention.ms"));
        let e = apply_op(&mut o, &broker, "retention.ms", APPEND, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        let e = apply_op(&mut o, &broker, "no.such", SET, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        let e = apply_op(&mut o, &broker, "retention.ms", 9, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidRequest.code());
    }
}
