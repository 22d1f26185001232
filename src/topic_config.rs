//! Topic configuration: Kafka's names, types, defaults and validation.
//!
//! A topic stores only its overrides; everything else comes from the broker's
//! defaults (which themselves come from the broker config under Kafka's broker
//! names). [`TopicConfig::resolve`] gives the effective values the partition uses.

use std::collections::BTreeMap;

use crate::config::Config;

/// The type Kafka reports for a config in DescribeConfigs (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic-level config that Sluice knows.
pub struct ConfigDef {
    pub name: &'static str,
    /// Broker-level key providing the default, if any (for "synonyms").
    pub broker_key: Option<&'static str>,
    pub kind: ConfigType,
    pub default: fn(&Config) -> String,
    pub validate: fn(&str) -> Result<(), String>,
    pub doc: &'static str,
}

fn long(v: &str) -> Result<(), String> {
    v.parse::<i64>()
        .map(|_| ())
        .map_err(|_| format!("'{v}' is not a number"))
}
fn long_min(v: &str, min: i64) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not a number")),
    }
}
fn ratio(v: &str) -> Result<(), String> {
    match v.parse::<f64>() {
        Ok(n) if (0.0..=1.0).contains(&n) => Ok(()),
        _ => Err(format!("'{v}' is not a ratio between 0 and 1")),
    }
}
fn one_of(v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(format!("'{v}' is not one of {allowed:?}"))
    }
}
fn cleanup_policy(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.iter().any(|p| !["delete", "compact"].contains(p)) {
        return Err(format!("'{v}' must be a list of delete and/or compact"));
    }
    Ok(())
}

/// Every topic config Sluice accepts, in Kafka's alphabetical order.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_key: Some("log.cleanup.policy"),
        kind: ConfigType::List,
        default: |c| c.log_cleanup_policy.clone(),
        validate: cleanup_policy,
        doc: "delete, compact, or both",
    },
    ConfigDef {
        name: "compression.type",
        broker_key: Some("compression.type"),
        kind: ConfigType::String,
        default: |c| c.compression_type.clone(),
        validate: |v| {
            one_of(
                v,
                &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
            )
        },
        doc: "codec of stored batches; producer keeps what was sent",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_key: Some("log.cleaner.delete.retention.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_delete_retention_ms.to_string(),
        validate: |v| long_min(v, 0),
        doc: "how long tombstones stay in a compacted topic",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_key: Some("log.segment.delete.delay.ms"),
        kind: ConfigType::Long,
        default: |_| "60000".into(),
        validate: |v| long_min(v, 0),
        doc: "delay before a deleted segment's files are removed",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_key: Some("log.index.interval.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_index_interval_bytes.to_string(),
        validate: |v| long_min(v, 0),
        doc: "bytes between offset index entries",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_key: Some("log.cleaner.max.compaction.lag.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_max_compaction_lag_ms.to_string(),
        validate: |v| long_min(v, 1),
        doc: "longest time a record stays uncompacted",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_key: Some("message.max.bytes"),
        kind: ConfigType::Int,
        default: |c| c.message_max_bytes.to_string(),
        validate: |v| long_min(v, 0),
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_key: Some("log.message.timestamp.type"),
        kind: ConfigType::String,
        default: |c| c.log_message_timestamp_type.clone(),
        validate: |v| one_of(v, &["CreateTime", "LogAppendTime"]),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps on append",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_key: Some("log.cleaner.min.cleanable.ratio"),
        kind: ConfigType::Double,
        default: |c| c.log_cleaner_min_cleanable_ratio.to_string(),
        validate: ratio,
        doc: "dirty share of the log that triggers cleaning",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_key: Some("log.cleaner.min.compaction.lag.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_min_compaction_lag_ms.to_string(),
        validate: |v| long_min(v, 0),
        doc: "shortest time a record stays uncompacted",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_key: Some("min.insync.replicas"),
        kind: ConfigType::Int,
        default: |c| c.min_insync_replicas.to_string(),
        validate: |v| long_min(v, 1),
        doc: "replicas that must have a write before acks=all is answered",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_key: Some("log.retention.bytes"),
        kind: ConfigType::Long,
        default: |c| c.log_retention_bytes.to_string(),
        validate: long,
        doc: "partition size above which old segments are deleted; -1 for no limit",
    },
    ConfigDef {
        name: "retention.ms",
        broker_key: Some("log.retention.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_retention_ms.to_string(),
        validate: |v| long_min(v, -1),
        doc: "age after which old segments are deleted; -1 for no limit",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_key: Some("log.segment.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_segment_bytes.to_string(),
        validate: |v| long_min(v, 14),
        doc: "size at which the active segment is rolled",
    },
    ConfigDef {
        name: "segment.index.bytes",
        broker_key: Some("log.index.size.max.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_index_size_max_bytes.to_string(),
        validate: |v| long_min(v, 4),
        doc: "maximum size of a segment's offset index",
    },
    ConfigDef {
        name: "segment.ms",
        broker_key: Some("log.roll.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_roll_ms.to_string(),
        validate: |v| long_min(v, 1),
        doc: "age at which the active segment is rolled",
    },
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a set of overrides; the error names the first bad one.
pub fn validate(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in overrides {
        let def = find(k).ok_or_else(|| format!("unknown topic config '{k}'"))?;
        (def.validate)(v).map_err(|e| format!("invalid value for {k}: {e}"))?;
    }
    Ok(())
}

/// The effective configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: usize,
    pub segment_index_bytes: usize,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub min_insync_replicas: i32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// cleanup.policy includes delete (retention applies).
    pub cleanup_delete: bool,
    /// cleanup.policy includes compact (the log cleaner applies).
    pub cleanup_compact: bool,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// compression.type as a codec; None keeps what the producer sent.
    pub compression: Option<kafka_protocol::records::Compression>,
}

impl TopicConfig {
    pub fn resolve(broker: &Config, overrides: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| -> String {
            overrides.get(name).cloned().unwrap_or_else(|| {
                let def = find(name).expect("config table lists every resolved key");
                (def.default)(broker)
            })
        };
        let num = |name: &str| get(name).parse::<i64>().unwrap_or(0);
        Self {
            segment_bytes: num("segment.bytes").max(14) as u64,
            segment_ms: num("segment.ms").max(1),
            index_interval_bytes: num("index.interval.bytes").max(0) as usize,
            segment_index_bytes: num("segment.index.bytes").max(8) as usize,
            max_message_bytes: num("max.message.bytes").max(0) as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            min_insync_replicas: num("min.insync.replicas") as i32,
            retention_ms: num("retention.ms"),
            retention_bytes: num("retention.bytes"),
            cleanup_delete: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "delete"),
            cleanup_compact: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "compact"),
            delete_retention_ms: num("delete.retention.ms"),
            min_compaction_lag_ms: num("min.compaction.lag.ms"),
            max_compaction_lag_ms: num("max.compaction.lag.ms").max(1),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            compression: crate::recompress::target(&get("compression.type")),
        }
    }

    pub fn log_config(&self) -> sluice_storage::LogConfig {
        // A compacted topic rolls by max.compaction.lag.ms too: only sealed
        // segments are cleaned, so that bounds how long a record stays dirty.
        let segment_ms = if self.cleanup_compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        };
        sluice_storage::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            max_index_bytes: self.segment_index_bytes,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_bad_key() {
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "abc".to_string());
        assert!(validate(&o).unwrap_err().contains("retention.ms"));
        o.clear();
        o.insert("no.such.config".to_string(), "1".to_string());
        assert!(validate(&o).unwrap_err().contains("unknown"));
        o.clear();
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        assert!(validate(&o).is_ok());
    }

    #[test]
    fn overrides_win_over_broker_defaults() {
        let broker = Config::default();
        let mut o = BTreeMap::new();
        assert_eq!(TopicConfig::resolve(&broker, &o).segment_bytes, 1 << 30);
        o.insert("segment.bytes".to_string(), "1048576".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let t = TopicConfig::resolve(&broker, &o);
        assert_eq!(t.segment_bytes, 1 << 20);
        assert!(t.log_append_time);
    }

    #[test]
    fn every_default_passes_its_own_validation() {
        let broker = Config::default();
        for def in TOPIC_CONFIGS {
            let v = (def.default)(&broker);
            assert!((def.validate)(&v).is_ok(), "{} default {v}", def.name);
        }
    }
}
