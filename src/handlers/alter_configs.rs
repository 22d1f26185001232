//! AlterConfigs (replace a resource's overrides) and IncrementalAlterConfigs
//! (SET, DELETE, APPEND, SUBTRACT one key at a time), for topics and groups.
//! Broker configs come from the configuration file and are not changed at
//! run time.
//!
//! Errors as Kafka's: a bad value or an unknown name is INVALID_CONFIG naming
//! it; a bad topic name INVALID_TOPIC_EXCEPTION; an empty topic or group name
//! (a "default" resource) INVALID_REQUEST; a key twice in one resource, or a
//! resource twice in one request, INVALID_REQUEST.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};

use super::acls::config_access;
use super::describe_configs::{BROKER, GROUP, TOPIC};
use super::{RequestContext, str_bytes};
use crate::broker::{TopicError, validate_topic_name};
use crate::config::Config;
use crate::security::acl::AclOperation;
use crate::topic_config::{self, ConfigDef, ConfigType, group, list_items};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn invalid(message: String) -> TopicError {
    TopicError::new(ResponseError::InvalidConfig, message)
}

fn invalid_request(message: impl Into<String>) -> TopicError {
    TopicError::new(ResponseError::InvalidRequest, message)
}

/// Refusals that depend only on the resource: its type and its name.
fn check_resource(resource_type: i8, name: &str) -> Result<(), TopicError> {
    match resource_type {
        TOPIC if name.is_empty() => {
            Err(invalid_request("Default topic resources are not allowed."))
        }
        TOPIC => validate_topic_name(name),
        GROUP if name.is_empty() => {
            Err(invalid_request("Default group resources are not allowed."))
        }
        GROUP => Ok(()),
        BROKER => Err(invalid_request(
            "broker configs are read from the configuration file at start",
        )),
        other => Err(invalid_request(format!("Unknown resource type {other}"))),
    }
}

/// The resources named more than once in a request: each gets
/// INVALID_REQUEST, as in Kafka.
fn duplicated<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> Vec<(i8, String)> {
    let mut seen: HashMap<(i8, &str), usize> = HashMap::new();
    for r in resources {
        *seen.entry(r).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((t, n), _)| (t, n.to_owned()))
        .collect()
}

/// The overrides after one IncrementalAlterConfigs operation on the config
/// `name` (`def` when known). APPEND and SUBTRACT apply to LIST configs and
/// start from the effective value: the override, or the broker default when
/// there is none (as in Kafka). An unknown name is refused when the result
/// is validated; DELETE of a key that is not set changes nothing.
fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    broker: &Config,
    name: &str,
    def: Option<&ConfigDef>,
    op: i8,
    value: Option<&str>,
) -> Result<(), TopicError> {
    match op {
        SET => {
            let v =
                value.ok_or_else(|| invalid(format!("Null value not supported for: {name}")))?;
            overrides.insert(name.to_owned(), v.to_owned());
        }
        DELETE => {
            overrides.remove(name);
        }
        APPEND | SUBTRACT => {
            let Some(def) = def.filter(|d| d.kind == ConfigType::List) else {
                let op = if op == APPEND { "APPEND" } else { "SUBTRACT" };
                return Err(invalid(format!(
                    "Can't {op} to key {name} because its type is not LIST."
                )));
            };
            let current = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| (def.default)(broker));
            let mut items = list_items(&current);
            for v in list_items(value.unwrap_or("")) {
                if op == APPEND && !items.contains(&v) {
                    items.push(v);
                } else if op == SUBTRACT {
                    items.retain(|i| *i != v);
                }
            }
            overrides.insert(name.to_owned(), items.join(","));
        }
        other => {
            return Err(invalid_request(format!("unknown config operation {other}")));
        }
    }
    Ok(())
}

/// Stores a resource's new overrides (validated there).
async fn store(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), TopicError> {
    if resource_type == GROUP {
        ctx.broker
            .alter_group_config(name, overrides, validate_only)
            .await
    } else {
        ctx.broker
            .alter_topic_config(name, overrides, validate_only)
            .await
    }
}

pub async fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let twice = duplicated(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let kind = if res.resource_type == GROUP {
            "group"
        } else {
            "topic"
        };
        let outcome = async {
            if twice.contains(&(res.resource_type, name.clone())) {
                return Err(invalid_request(
                    "Cannot alter the same resource twice in one request.",
                ));
            }
            config_access(ctx, res.resource_type, &name, AclOperation::AlterConfigs)
                .map_err(|e| TopicError::new(e, "Authorization failed."))?;
            check_resource(res.resource_type, &name)?;
            // AlterConfigs replaces the whole set of overrides.
            let nulls: Vec<&str> = res
                .configs
                .iter()
                .filter(|c| c.value.is_none())
                .map(|c| c.name.as_str())
                .collect();
            if !nulls.is_empty() {
                return Err(invalid(format!(
                    "Null value not supported for {kind} configs: {}",
                    nulls.join(",")
                )));
            }
            let overrides: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            store(ctx, res.resource_type, &name, overrides, req.validate_only).await
        }
        .await;
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_message(None)
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            info_limited!(resource = %name, detail = %e.message, "AlterConfigs refused");
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
    let twice = duplicated(
        req.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome = async {
            if twice.contains(&(res.resource_type, name.clone())) {
                return Err(invalid_request(
                    "Cannot alter the same resource twice in one request.",
                ));
            }
            config_access(ctx, res.resource_type, &name, AclOperation::AlterConfigs)
                .map_err(|e| TopicError::new(e, "Authorization failed."))?;
            check_resource(res.resource_type, &name)?;
            let mut keys: Vec<&str> = res.configs.iter().map(|c| c.name.as_str()).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(invalid_request("Error due to duplicate config keys"));
            }
            let (mut overrides, find): (_, fn(&str) -> Option<&'static ConfigDef>) =
                if res.resource_type == GROUP {
                    (ctx.broker.group_config_overrides(&name), group::find)
                } else {
                    match ctx.broker.topic(&name) {
                        Some(t) => (t.overrides.clone(), topic_config::find),
                        None => {
                            return Err(TopicError::new(
                                ResponseError::UnknownTopicOrPartition,
                                format!("topic '{name}' does not exist"),
                            ));
                        }
                    }
                };
            for c in &res.configs {
                let key = c.name.as_str();
                apply_op(
                    &mut overrides,
                    &ctx.broker.config,
                    key,
                    find(key),
                    c.config_operation,
                    c.value.as_deref(),
                )?;
            }
            store(ctx, res.resource_type, &name, overrides, req.validate_only).await
        }
        .await;
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_message(None)
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err(e) = outcome {
            info_limited!(resource = %name, detail = %e.message, "IncrementalAlterConfigs refused");
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

    fn op(
        o: &mut BTreeMap<String, String>,
        name: &str,
        op: i8,
        value: Option<&str>,
    ) -> Result<(), TopicError> {
        apply_op(
            o,
            &Config::default(),
            name,
            topic_config::find(name),
            op,
            value,
        )
    }

    #[test]
    fn incremental_operations() {
        let mut o = BTreeMap::new();
        op(&mut o, "retention.ms", SET, Some("1000")).unwrap();
        // The default (delete) is the base of the first APPEND.
        op(&mut o, "cleanup.policy", APPEND, Some("compact")).unwrap();
        op(&mut o, "cleanup.policy", APPEND, Some("delete")).unwrap();
        assert_eq!(o["cleanup.policy"], "delete,compact");
        op(&mut o, "cleanup.policy", SUBTRACT, Some("delete")).unwrap();
        assert_eq!(o["cleanup.policy"], "compact");
        // Subtracting the last item leaves the empty list, as in Kafka.
        op(&mut o, "cleanup.policy", SUBTRACT, Some("compact")).unwrap();
        assert_eq!(o["cleanup.policy"], "");
        op(&mut o, "retention.ms", DELETE, None).unwrap();
        assert!(!o.contains_key("retention.ms"));
        // Deleting what is not set (even an unknown name) changes nothing.
        op(&mut o, "no.such", DELETE, None).unwrap();
        let e = op(&mut o, "retention.ms", APPEND, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        assert!(e.message.contains("because its type is not LIST"));
        let e = op(&mut o, "no.such", APPEND, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        let e = op(&mut o, "retention.ms", SET, None).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        let e = op(&mut o, "retention.ms", 9, Some("1")).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidRequest.code());
    }

    #[test]
    fn resources_are_checked_by_type_and_name() {
        let code = |t, n: &str| check_resource(t, n).err().map(|e| e.code);
        assert_eq!(code(TOPIC, "ok"), None);
        assert_eq!(code(TOPIC, ""), Some(ResponseError::InvalidRequest.code()));
        assert_eq!(
            code(TOPIC, "a b"),
            Some(ResponseError::InvalidTopicException.code())
        );
        assert_eq!(code(GROUP, "g"), None);
        assert_eq!(code(GROUP, ""), Some(ResponseError::InvalidRequest.code()));
        assert_eq!(
            code(BROKER, "1"),
            Some(ResponseError::InvalidRequest.code())
        );
        assert_eq!(code(99, "x"), Some(ResponseError::InvalidRequest.code()));
        let twice = duplicated([(TOPIC, "a"), (GROUP, "a"), (TOPIC, "a")].into_iter());
        assert_eq!(twice, vec![(TOPIC, "a".to_string())]);
    }
}
