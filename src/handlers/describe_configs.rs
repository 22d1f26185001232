//! DescribeConfigs for topics (every known topic config with its effective value
//! and source) and for this broker (its static configuration).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{RequestContext, str_bytes};
use crate::config::Config;
use crate::topic_config::TOPIC_CONFIGS;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Config sources, as Kafka numbers them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

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
            let configs = match res.resource_type {
                TOPIC => topic_configs(ctx, res.resource_name.as_str(), req.include_synonyms, req.include_documentation, &wanted),
                BROKER => broker_configs(ctx, res.resource_name.as_str(), &wanted),
                other => Err((ResponseError::InvalidRequest, format!("resource type {other} is not served"))),
            };
            match configs {
                Ok(c) => out.configs = c,
                Err((e, message)) => {
                    info_limited!(resource = %res.resource_name, %message, "describe configs failed");
                    out.error_code = e.code();
                    out.error_message = Some(str_bytes(message));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Configs = Result<Vec<DescribeConfigsResourceResult>, (ResponseError, String)>;

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_config_source(source)
        .with_read_only(read_only)
        .with_documentation(None)
}

fn topic_configs(
    ctx: &RequestContext,
    topic: &str,
    include_synonyms: bool,
    include_documentation: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Configs {
    let Some(t) = ctx.broker.topic(topic) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        ));
    };
    let broker = &ctx.broker.config;
    let defaults = Config::default();
    let mut out = Vec::new();
    for def in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
        let broker_value = (def.default)(broker);
        // A broker-level value that differs from the built-in default was set in
        // the broker's configuration.
        let broker_source = if broker_value == (def.default)(&defaults) {
            SOURCE_DEFAULT
        } else {
            SOURCE_STATIC_BROKER
        };
        let (value, source) = match t.overrides.get(def.name) {
            Some(v) => (v.clone(), SOURCE_TOPIC),
            None => (broker_value.clone(), broker_source),
        };
        let mut e = entry(def.name, value, source, false);
        if ctx.version >= 3 {
            e.config_type = def.kind as i8;
            if include_documentation {
                e.documentation = Some(str_bytes(def.doc));
            }
        }
        if include_synonyms {
            if let Some(v) = t.overrides.get(def.name) {
                e.synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(def.name))
                        .with_value(Some(str_bytes(v.clone())))
                        .with_source(SOURCE_TOPIC),
                );
            }
            if let Some(key) = def.broker_key {
                e.synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(key))
                        .with_value(Some(str_bytes(broker_value)))
                        .with_source(broker_source),
                );
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn broker_configs(ctx: &RequestContext, name: &str, wanted: &dyn Fn(&str) -> bool) -> Configs {
    let node = ctx.broker.node_id();
    if !name.is_empty() && name != node.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {node}, not '{name}'"),
        ));
    }
    let defaults = Config::default();
    Ok(ctx
        .broker
        .config
        .entries()
        .into_iter()
        .filter(|(k, _)| wanted(k))
        .map(|(k, v)| {
            let source = if defaults.get(k).as_deref() == Some(v.as_str()) {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            let mut e = entry(k, v, source, true);
            if ctx.version >= 3 {
                e.config_type = 2; // STRING: Sluice keeps no per-key type for broker keys
            }
            e
        })
        .collect())
}
