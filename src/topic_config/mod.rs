//! Topic and group configuration: Kafka's names, types, defaults and validation.
//!
//! Every topic config that Kafka 3.9 or 4.x accepts is in [`TOPIC_CONFIGS`]:
//! accepted, validated with Kafka's ranges, stored and described with its
//! source, including the ones Sluice does not act on ([`Effect`] says which
//! and why; DescribeConfigs documentation and `docs/CONFIG.md` repeat it).
//! Where 3.9 and 4.x differ, the union is accepted (message.format.version,
//! removed in 4.0, is accepted and ignored as Kafka 3.x does; segment.bytes
//! keeps 3.9's minimum of 14 rather than 4.x's 1 MiB).
//!
//! A topic stores only its overrides; everything else comes from the broker's
//! defaults (which themselves come from the broker config under Kafka's broker
//! names). [`TopicConfig::resolve`] gives the effective values the partition
//! uses. Group configs (ConfigResource type GROUP) live in [`group`].

use std::collections::BTreeMap;

use crate::config::Config;

/// The type Kafka reports for a config in DescribeConfigs (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    /// Kafka's name of the type (as in its documentation).
    pub fn name(self) -> &'static str {
        match self {
            Self::Boolean => "BOOLEAN",
            Self::String => "STRING",
            Self::Int => "INT",
            Self::Short => "SHORT",
            Self::Long => "LONG",
            Self::Double => "DOUBLE",
            Self::List => "LIST",
        }
    }
}

/// Config sources, as Kafka numbers them in DescribeConfigs.
pub mod source {
    pub const TOPIC: i8 = 1;
    pub const DYNAMIC_BROKER: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
    pub const STATIC_BROKER: i8 = 4;
    pub const DEFAULT: i8 = 5;
    pub const GROUP: i8 = 8;
}

/// Whether Sluice acts on a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The value changes what Sluice does.
    Acts,
    /// Accepted, validated, stored and described; no effect. The text says why.
    None(&'static str),
    /// Deprecated by Kafka and removed in 4.0: accepted and ignored, as Kafka
    /// 3.x does. The text says why.
    Deprecated(&'static str),
}

/// Reads a value (a default, a broker setting) from the broker's config.
pub type ValueFn = fn(&Config) -> String;

/// A broker key as DescribeConfigs of the broker lists it: name, type, value.
pub type BrokerKeyDef = (&'static str, ConfigType, ValueFn);

/// One config Sluice knows (a topic config, or a group config).
pub struct ConfigDef {
    pub name: &'static str,
    /// Broker-level key providing the default, if any (for "synonyms").
    pub broker_key: Option<&'static str>,
    pub kind: ConfigType,
    pub default: ValueFn,
    /// Checks one value (trimmed, as Kafka trims); the error is the part of
    /// Kafka's message after "Invalid value V for configuration K: ".
    pub validate: fn(&str) -> Result<(), String>,
    pub effect: Effect,
    pub doc: &'static str,
}

impl std::fmt::Debug for ConfigDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl ConfigDef {
    pub fn acts(&self) -> bool {
        self.effect == Effect::Acts
    }

    /// The documentation DescribeConfigs returns when asked: Kafka's meaning,
    /// then what Sluice does with it.
    pub fn documentation(&self) -> String {
        match self.effect {
            Effect::Acts => self.doc.to_string(),
            Effect::None(why) => format!("{} Sluice: no effect. {why}", self.doc),
            Effect::Deprecated(why) => format!(
                "{} Sluice: deprecated, accepted and ignored as Kafka 3.x does. {why}",
                self.doc
            ),
        }
    }

    /// The value as Kafka reports it: parsed and printed again (trimmed,
    /// numbers and booleans canonical, list items trimmed).
    pub fn render(&self, value: &str) -> String {
        let v = value.trim();
        match self.kind {
            ConfigType::Int | ConfigType::Short | ConfigType::Long => v
                .parse::<i64>()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| v.to_string()),
            ConfigType::Boolean => v.to_ascii_lowercase(),
            ConfigType::Double => v
                .parse::<f64>()
                .map(java_double)
                .unwrap_or_else(|_| v.to_string()),
            ConfigType::List => list_items(v).join(","),
            ConfigType::String => v.to_string(),
        }
    }
}

/// A double as Java's Double.toString prints it, for the values configs use.
fn java_double(d: f64) -> String {
    if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e7 {
        format!("{d:.1}")
    } else {
        d.to_string()
    }
}

/// A LIST value's items as Kafka splits them: on commas, trimmed; an empty
/// value is the empty list (an empty item inside a list stays, and fails
/// validation where items are checked).
pub fn list_items(v: &str) -> Vec<String> {
    let v = v.trim();
    if v.is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

// ---------------------------------------------------------------------------
// Value checks, with Kafka's wording.

fn parse_long(v: &str, kind: &str) -> Result<i64, String> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| format!("Not a number of type {kind}"))
}

fn parse_int(v: &str) -> Result<i64, String> {
    let n = parse_long(v, "INT")?;
    if i32::try_from(n).is_err() {
        return Err("Not a number of type INT".into());
    }
    Ok(n)
}

fn at_least(n: i64, min: i64) -> Result<(), String> {
    if n < min {
        Err(format!("Value must be at least {min}"))
    } else {
        Ok(())
    }
}

fn no_more_than(n: i64, max: i64) -> Result<(), String> {
    if n > max {
        Err(format!("Value must be no more than {max}"))
    } else {
        Ok(())
    }
}

fn int_at_least(v: &str, min: i64) -> Result<(), String> {
    at_least(parse_int(v)?, min)
}

fn int_between(v: &str, min: i64, max: i64) -> Result<(), String> {
    let n = parse_int(v)?;
    at_least(n, min)?;
    no_more_than(n, max)
}

fn long_any(v: &str) -> Result<(), String> {
    parse_long(v, "LONG").map(drop)
}

fn long_at_least(v: &str, min: i64) -> Result<(), String> {
    at_least(parse_long(v, "LONG")?, min)
}

fn boolean(v: &str) -> Result<(), String> {
    let t = v.trim();
    if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
        Ok(())
    } else {
        Err("Expected value to be either true or false".into())
    }
}

fn ratio(v: &str) -> Result<(), String> {
    let n = v
        .trim()
        .parse::<f64>()
        .map_err(|_| "Not a number of type DOUBLE".to_string())?;
    if n.is_nan() || n < 0.0 {
        return Err("Value must be at least 0".into());
    }
    if n > 1.0 {
        return Err("Value must be no more than 1".into());
    }
    Ok(())
}

fn string_in(v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v.trim()) {
        Ok(())
    } else {
        Err(format!("String must be one of: {}", allowed.join(", ")))
    }
}

fn list_in(v: &str, allowed: &[&str]) -> Result<(), String> {
    for item in list_items(v) {
        if !allowed.contains(&item.as_str()) {
            return Err(format!("String must be one of: {}", allowed.join(", ")));
        }
    }
    Ok(())
}

/// leader/follower.replication.throttled.replicas: `*`, or a list of
/// `partitionId:brokerId`.
fn throttled_replicas(v: &str) -> Result<(), String> {
    let items = list_items(v);
    let pair = |s: &str| {
        s.is_empty()
            || s.split_once(':').is_some_and(|(p, b)| {
                !p.is_empty()
                    && !b.is_empty()
                    && p.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
    };
    if items.first().is_some_and(|s| s == "*") || items.iter().all(|s| pair(s)) {
        Ok(())
    } else {
        Err(
            "must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .into(),
        )
    }
}

/// message.format.version: a Kafka version Kafka 3.x's MetadataVersion
/// knows (0.8.0 … 3.9, optionally with -IVn); longer versions are cut to
/// three parts below 1.0 and two from 1.0 on, as Kafka does.
fn message_format_version(v: &str) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "0.8.0", "0.8.1", "0.8.2", "0.9.0", "0.10.0", "0.10.1", "0.10.2", "0.11.0", "1.0", "1.1",
        "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "3.0", "3.1", "3.2", "3.3",
        "3.4", "3.5", "3.6", "3.7", "3.8", "3.9",
    ];
    let v = v.trim();
    let (base, iv) = match v.split_once('-') {
        Some((b, iv)) => (b, Some(iv)),
        None => (v, None),
    };
    let iv_ok = iv.is_none_or(|iv| {
        iv.strip_prefix("IV")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
    });
    let parts: Vec<&str> = base.split('.').collect();
    let keep = if base.starts_with("0.") { 3 } else { 2 };
    let short = parts[..parts.len().min(keep)].join(".");
    let extra_ok = parts[parts.len().min(keep)..]
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    if iv_ok && extra_ok && KNOWN.contains(&short.as_str()) {
        Ok(())
    } else {
        Err(format!("Version `{v}` is not a valid version"))
    }
}

fn compression_type(v: &str) -> Result<(), String> {
    string_in(
        v,
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
    )
}

const LONG_MAX: &str = "9223372036854775807";

const NO_TIERED_STORAGE: &str =
    "Sluice has no tiered storage: every segment stays on the broker's disk.";
const NO_QUOTAS: &str = "Sluice has no replication quotas: replicas catch up at full speed.";
const NO_TIMESTAMP_CHECK: &str = "Sluice does not compare record timestamps with the broker's clock; it reports the \
     \"no limit\" value. (Kafka 4.0 changed the default of message.timestamp.after.max.ms \
     to 3600000; Sluice keeps the value that says what it does.)";
const LEVEL_IGNORED: &str =
    "When Sluice recompresses for compression.type it uses the codec's default level.";

/// Every topic config Sluice accepts, in alphabetical order.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_key: Some("log.cleanup.policy"),
        kind: ConfigType::List,
        default: |c| c.log_cleanup_policy.clone(),
        validate: |v| list_in(v, &["compact", "delete"]),
        effect: Effect::Acts,
        doc: "delete, compact, or both: whether old segments are deleted by \
              retention.ms/retention.bytes, compacted by key, or both. An empty list \
              means neither.",
    },
    ConfigDef {
        name: "compression.gzip.level",
        broker_key: Some("compression.gzip.level"),
        kind: ConfigType::Int,
        default: |_| "9".into(),
        validate: |v| {
            let n = parse_int(v)?;
            if n == -1 || (1..=9).contains(&n) {
                Ok(())
            } else {
                Err("Value must be between 1 and 9, or -1".into())
            }
        },
        effect: Effect::None(LEVEL_IGNORED),
        doc: "The gzip level used when compression.type is gzip.",
    },
    ConfigDef {
        name: "compression.lz4.level",
        broker_key: Some("compression.lz4.level"),
        kind: ConfigType::Int,
        default: |_| "9".into(),
        validate: |v| int_between(v, 1, 17),
        effect: Effect::None(LEVEL_IGNORED),
        doc: "The lz4 level used when compression.type is lz4.",
    },
    ConfigDef {
        name: "compression.type",
        broker_key: Some("compression.type"),
        kind: ConfigType::String,
        default: |c| c.compression_type.clone(),
        validate: compression_type,
        effect: Effect::Acts,
        doc: "The codec stored batches use: uncompressed, gzip, snappy, lz4, zstd, or \
              producer to keep what the producer sent.",
    },
    ConfigDef {
        name: "compression.zstd.level",
        broker_key: Some("compression.zstd.level"),
        kind: ConfigType::Int,
        default: |_| "3".into(),
        validate: |v| int_between(v, -131_072, 22),
        effect: Effect::None(LEVEL_IGNORED),
        doc: "The zstd level used when compression.type is zstd.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_key: Some("log.cleaner.delete.retention.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_delete_retention_ms.to_string(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::Acts,
        doc: "How long tombstones stay in a compacted topic.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_key: Some("log.segment.delete.delay.ms"),
        kind: ConfigType::Long,
        default: |_| "60000".into(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::None(
            "Sluice removes a deleted segment's files at once; readers holding it keep their \
             memory map until they are done.",
        ),
        doc: "How long a deleted segment's files stay on disk.",
    },
    ConfigDef {
        name: "flush.messages",
        broker_key: Some("log.flush.interval.messages"),
        kind: ConfigType::Long,
        default: |c| c.log_flush_interval_messages.to_string(),
        validate: |v| long_at_least(v, 1),
        effect: Effect::Acts,
        doc: "1 (Sluice's default): every write is on disk before acks=all is answered and before \
              consumers see it; the fsyncs of all partitions run together (group commit). Above 1 \
              (Kafka's default is 9223372036854775807): writes are acknowledged and visible from \
              memory, and the log is fsynced once this many records wait (or as flush.ms says).",
    },
    ConfigDef {
        name: "flush.ms",
        broker_key: Some("log.flush.interval.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_flush_interval_ms.to_string(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::Acts,
        doc: "With flush.messages above 1: the log is fsynced this many milliseconds after its \
              oldest unflushed write at the latest.",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        broker_key: None,
        kind: ConfigType::List,
        default: |_| String::new(),
        validate: throttled_replicas,
        effect: Effect::None(NO_QUOTAS),
        doc: "Replicas ([partition]:[broker], or *) whose replication is throttled on the \
              follower side.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_key: Some("log.index.interval.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_index_interval_bytes.to_string(),
        validate: |v| int_at_least(v, 0),
        effect: Effect::Acts,
        doc: "Bytes of log between two offset index entries.",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        broker_key: None,
        kind: ConfigType::List,
        default: |_| String::new(),
        validate: throttled_replicas,
        effect: Effect::None(NO_QUOTAS),
        doc: "Replicas ([partition]:[broker], or *) whose replication is throttled on the \
              leader side.",
    },
    ConfigDef {
        name: "local.retention.bytes",
        broker_key: Some("log.local.retention.bytes"),
        kind: ConfigType::Long,
        default: |_| "-2".into(),
        validate: |v| long_at_least(v, -2),
        effect: Effect::None(NO_TIERED_STORAGE),
        doc: "With tiered storage, the local part's size limit; -2 means retention.bytes.",
    },
    ConfigDef {
        name: "local.retention.ms",
        broker_key: Some("log.local.retention.ms"),
        kind: ConfigType::Long,
        default: |_| "-2".into(),
        validate: |v| long_at_least(v, -2),
        effect: Effect::None(NO_TIERED_STORAGE),
        doc: "With tiered storage, the local part's age limit; -2 means retention.ms.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_key: Some("log.cleaner.max.compaction.lag.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_max_compaction_lag_ms.to_string(),
        validate: |v| long_at_least(v, 1),
        effect: Effect::Acts,
        doc: "The longest time a record stays uncompacted.",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_key: Some("message.max.bytes"),
        kind: ConfigType::Int,
        default: |c| c.message_max_bytes.to_string(),
        validate: |v| int_at_least(v, 0),
        effect: Effect::Acts,
        doc: "The largest record batch accepted (after the topic's compression).",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        broker_key: Some("log.message.downconversion.enable"),
        kind: ConfigType::Boolean,
        default: |_| "true".into(),
        validate: boolean,
        effect: Effect::Deprecated(
            "Removed in Kafka 4.0. Sluice serves only the v2 record format (Produce v3+, \
             Fetch v4+), so nothing is ever down-converted.",
        ),
        doc: "Whether records are down-converted for consumers that fetch an older format.",
    },
    ConfigDef {
        name: "message.format.version",
        broker_key: Some("log.message.format.version"),
        kind: ConfigType::String,
        default: |_| "3.0-IV1".into(),
        validate: message_format_version,
        effect: Effect::Deprecated(
            "Kafka 3.x ignores it once inter.broker.protocol.version is 3.0 or later, and \
             4.0 removed it. Sluice always writes the v2 record format.",
        ),
        doc: "The record format version appended to the log.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_key: Some("log.message.timestamp.after.max.ms"),
        kind: ConfigType::Long,
        default: |_| LONG_MAX.into(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::None(NO_TIMESTAMP_CHECK),
        doc: "With CreateTime, how far a record's timestamp may be ahead of the broker's clock.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_key: Some("log.message.timestamp.before.max.ms"),
        kind: ConfigType::Long,
        default: |_| LONG_MAX.into(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::None(NO_TIMESTAMP_CHECK),
        doc: "With CreateTime, how far a record's timestamp may be behind the broker's clock.",
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        broker_key: Some("log.message.timestamp.difference.max.ms"),
        kind: ConfigType::Long,
        default: |_| LONG_MAX.into(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::Deprecated(
            "Replaced by message.timestamp.before.max.ms and message.timestamp.after.max.ms \
             in Kafka 3.6, removed in 4.0.",
        ),
        doc: "With CreateTime, how far a record's timestamp may be from the broker's clock.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_key: Some("log.message.timestamp.type"),
        kind: ConfigType::String,
        default: |c| c.log_message_timestamp_type.clone(),
        validate: |v| string_in(v, &["CreateTime", "LogAppendTime"]),
        effect: Effect::Acts,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch \
              with the broker's clock on append.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_key: Some("log.cleaner.min.cleanable.ratio"),
        kind: ConfigType::Double,
        default: |c| java_double(c.log_cleaner_min_cleanable_ratio),
        validate: ratio,
        effect: Effect::Acts,
        doc: "The dirty share of the log that makes it eligible for cleaning.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_key: Some("log.cleaner.min.compaction.lag.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_cleaner_min_compaction_lag_ms.to_string(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::Acts,
        doc: "The shortest time a record stays uncompacted.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_key: Some("min.insync.replicas"),
        kind: ConfigType::Int,
        default: |c| c.min_insync_replicas.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::Acts,
        doc: "How many replicas must be able to take a write for acks=all to be accepted; \
              otherwise the producer gets NOT_ENOUGH_REPLICAS.",
    },
    ConfigDef {
        name: "preallocate",
        broker_key: Some("log.preallocate"),
        kind: ConfigType::Boolean,
        default: |_| "false".into(),
        validate: boolean,
        effect: Effect::None("Sluice's segment files grow as they are written."),
        doc: "Whether a new segment's file is allocated at its full size.",
    },
    ConfigDef {
        name: "remote.log.copy.disable",
        broker_key: None,
        kind: ConfigType::Boolean,
        default: |_| "false".into(),
        validate: boolean,
        effect: Effect::None(NO_TIERED_STORAGE),
        doc: "With tiered storage, stop copying segments to remote storage.",
    },
    ConfigDef {
        name: "remote.log.delete.on.disable",
        broker_key: None,
        kind: ConfigType::Boolean,
        default: |_| "false".into(),
        validate: boolean,
        effect: Effect::None(NO_TIERED_STORAGE),
        doc: "With tiered storage, delete the remote data when remote storage is disabled.",
    },
    ConfigDef {
        name: "remote.storage.enable",
        broker_key: None,
        kind: ConfigType::Boolean,
        default: |_| "false".into(),
        validate: |v| {
            boolean(v)?;
            if v.trim().eq_ignore_ascii_case("true") {
                return Err("Tiered Storage functionality is disabled in the broker. \
                            Topic cannot be configured with remote log storage."
                    .into());
            }
            Ok(())
        },
        effect: Effect::None(
            "Sluice has no tiered storage: true is refused with INVALID_CONFIG, as Kafka \
             refuses it on a broker whose remote.log.storage.system.enable is false.",
        ),
        doc: "Whether the topic's old segments move to remote (tiered) storage.",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_key: Some("log.retention.bytes"),
        kind: ConfigType::Long,
        default: |c| c.log_retention_bytes.to_string(),
        validate: long_any,
        effect: Effect::Acts,
        doc: "The partition size above which the oldest segments are deleted; -1 for no limit.",
    },
    ConfigDef {
        name: "retention.ms",
        broker_key: Some("log.retention.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_retention_ms.to_string(),
        validate: |v| long_at_least(v, -1),
        effect: Effect::Acts,
        doc: "The age after which old segments are deleted; -1 for no limit.",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_key: Some("log.segment.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_segment_bytes.to_string(),
        validate: |v| int_at_least(v, 14),
        effect: Effect::Acts,
        doc: "The size at which the active segment is rolled. (Kafka 4.x requires at least \
              1 MiB; Sluice keeps Kafka 3.9's minimum of 14.)",
    },
    ConfigDef {
        name: "segment.index.bytes",
        broker_key: Some("log.index.size.max.bytes"),
        kind: ConfigType::Int,
        default: |c| c.log_index_size_max_bytes.to_string(),
        validate: |v| int_at_least(v, 4),
        effect: Effect::Acts,
        doc: "The largest offset index of a segment; a full index rolls the segment.",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        broker_key: Some("log.roll.jitter.ms"),
        kind: ConfigType::Long,
        default: |_| "0".into(),
        validate: |v| long_at_least(v, 0),
        effect: Effect::None("Sluice rolls a segment exactly when segment.ms has passed."),
        doc: "The largest random time taken off segment.ms, so that segments do not all \
              roll at once.",
    },
    ConfigDef {
        name: "segment.ms",
        broker_key: Some("log.roll.ms"),
        kind: ConfigType::Long,
        default: |c| c.log_roll_ms.to_string(),
        validate: |v| long_at_least(v, 1),
        effect: Effect::Acts,
        doc: "The age at which the active segment is rolled.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        broker_key: Some("unclean.leader.election.enable"),
        kind: ConfigType::Boolean,
        default: |c| c.unclean_leader_election_enable.to_string(),
        validate: boolean,
        effect: Effect::Acts,
        doc: "Whether a replica left of a partition that lost a majority of its replicas \
              may become its leader as a last resort, losing what only the lost ones held.",
    },
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one value against its definition; the error is Kafka's message.
fn check(def: &ConfigDef, value: &str) -> Result<(), String> {
    (def.validate)(value.trim())
        .map_err(|e| format!("Invalid value {value} for configuration {}: {e}", def.name))
}

/// The effective value of `name` (an override, else the broker default).
fn effective(
    broker: &Config,
    defs: &[ConfigDef],
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> String {
    match overrides.get(name) {
        Some(v) => v.trim().to_string(),
        None => defs
            .iter()
            .find(|d| d.name == name)
            .map(|d| (d.default)(broker))
            .unwrap_or_default(),
    }
}

/// Checks a topic's overrides as Kafka does: known names, each value, then
/// the rules between values (on the overrides over the broker's defaults).
/// The error names the first bad one.
pub fn validate(broker: &Config, overrides: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in overrides {
        let def = find(k).ok_or_else(|| format!("Unknown topic config name: {k}"))?;
        check(def, v)?;
    }
    let num = |name: &str| {
        effective(broker, TOPIC_CONFIGS, overrides, name)
            .parse::<i64>()
            .unwrap_or(0)
    };
    let (min_lag, max_lag) = (num("min.compaction.lag.ms"), num("max.compaction.lag.ms"));
    if min_lag > max_lag {
        return Err(format!(
            "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
             max.compaction.lag.ms ({max_lag})"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// DescribeConfigs: values, sources and synonyms.

/// Broker keys that Kafka 4.1+ holds at the cluster level
/// (DYNAMIC_DEFAULT_BROKER_CONFIG): with eligible leader replicas (KIP-966,
/// on by default for new clusters since 4.1) the controller writes a
/// cluster-level min.insync.replicas with its static value, so every new
/// topic shows min.insync.replicas with that source.
pub const CLUSTER_DEFAULT_KEYS: &[&str] = &["min.insync.replicas"];

/// One synonym of a described config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: i8,
}

/// One config as DescribeConfigs (and CreateTopics) report it.
#[derive(Debug, Clone)]
pub struct Described {
    pub def: &'static ConfigDef,
    pub value: String,
    pub source: i8,
    /// In Kafka's order: the resource's own override, then the broker's
    /// cluster-level default, static value and built-in default.
    pub synonyms: Vec<Synonym>,
}

/// The broker-level synonyms of `key`, whose value `value` reads from a
/// broker config: the cluster-level default (for [`CLUSTER_DEFAULT_KEYS`]),
/// the value set in the broker's file (when it differs from the built-in
/// default), and the built-in default.
pub fn broker_synonyms(key: &str, value: ValueFn, broker: &Config) -> Vec<Synonym> {
    let set = value(broker);
    let builtin = value(&Config::default());
    let mut out = Vec::new();
    if CLUSTER_DEFAULT_KEYS.contains(&key) {
        out.push(Synonym {
            name: key.into(),
            value: set.clone(),
            source: source::DYNAMIC_DEFAULT_BROKER,
        });
    }
    if set != builtin {
        out.push(Synonym {
            name: key.into(),
            value: set,
            source: source::STATIC_BROKER,
        });
    }
    out.push(Synonym {
        name: key.into(),
        value: builtin,
        source: source::DEFAULT,
    });
    out
}

/// Every config of `defs` with its effective value, source and synonyms.
/// `own_source` is the source of the resource's overrides (topic or group);
/// configs without a broker key fall back to a DEFAULT_CONFIG synonym under
/// their own name when `default_synonym` (as Kafka does for group configs).
fn describe_all(
    defs: &'static [ConfigDef],
    own_source: i8,
    default_synonym: bool,
    broker: &Config,
    overrides: &BTreeMap<String, String>,
) -> Vec<Described> {
    defs.iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(Synonym {
                    name: def.name.into(),
                    value: def.render(v),
                    source: own_source,
                });
            }
            match def.broker_key {
                Some(key) => synonyms.extend(broker_synonyms(key, def.default, broker)),
                None if default_synonym => synonyms.push(Synonym {
                    name: def.name.into(),
                    value: def.render(&(def.default)(broker)),
                    source: source::DEFAULT,
                }),
                None => {}
            }
            let value = match overrides.get(def.name) {
                Some(v) => def.render(v),
                None => def.render(&(def.default)(broker)),
            };
            let source = synonyms.first().map_or(source::DEFAULT, |s| s.source);
            Described {
                def,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

/// Every topic config of a topic with these overrides.
pub fn describe(broker: &Config, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    describe_all(TOPIC_CONFIGS, source::TOPIC, false, broker, overrides)
}

// ---------------------------------------------------------------------------
// The effective configuration the partitions use.

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
    pub unclean_leader_election_enable: bool,
    /// flush.messages and flush.ms.
    pub flush_messages: i64,
    pub flush_ms: i64,
}

impl TopicConfig {
    pub fn resolve(broker: &Config, overrides: &BTreeMap<String, String>) -> Self {
        // Values are stored as clients sent them; Kafka trims them when it
        // parses, and so does this.
        let get = |name: &str| -> String {
            debug_assert!(find(name).is_some(), "config table lists {name}");
            effective(broker, TOPIC_CONFIGS, overrides, name)
        };
        let num = |name: &str| get(name).parse::<i64>().unwrap_or(0);
        let policy = list_items(&get("cleanup.policy"));
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
            cleanup_delete: policy.iter().any(|p| p == "delete"),
            cleanup_compact: policy.iter().any(|p| p == "compact"),
            delete_retention_ms: num("delete.retention.ms"),
            min_compaction_lag_ms: num("min.compaction.lag.ms"),
            max_compaction_lag_ms: num("max.compaction.lag.ms").max(1),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            compression: crate::recompress::target(&get("compression.type")),
            unclean_leader_election_enable: get("unclean.leader.election.enable")
                .eq_ignore_ascii_case("true"),
            flush_messages: num("flush.messages").max(1),
            flush_ms: num("flush.ms").max(0),
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
            // Kafka's default (i64::MAX) too, so that a log can tell it
            // from none given (every write durable).
            flush_interval_messages: Some(self.flush_messages as u64),
            flush_interval_ms: (self.flush_ms < i64::MAX).then_some(self.flush_ms),
        }
    }

    /// Whether every write waits for the disk (flush.messages 1, Sluice's
    /// default) rather than Kafka's acknowledgement from memory.
    pub fn flush_every_write(&self) -> bool {
        self.flush_messages <= 1
    }
}

// ---------------------------------------------------------------------------

pub mod group;

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn validation_names_the_bad_key() {
        let c = Config::default();
        let e = validate(&c, &one("retention.ms", "abc")).unwrap_err();
        assert_eq!(
            e,
            "Invalid value abc for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            validate(&c, &one("no.such.config", "1")).unwrap_err(),
            "Unknown topic config name: no.such.config"
        );
        let mut o = one("cleanup.policy", "compact,delete");
        o.insert("message.timestamp.type".into(), "LogAppendTime".into());
        assert!(validate(&c, &o).is_ok());
    }

    #[test]
    fn every_config_has_a_bad_value() {
        let c = Config::default();
        for def in TOPIC_CONFIGS {
            let bad = match def.kind {
                ConfigType::Boolean => "maybe",
                ConfigType::Int => "2147483648",
                ConfigType::Long => "9223372036854775808",
                ConfigType::Double => "1.5",
                _ => "no-such-value",
            };
            let bad = match def.name {
                "message.format.version" => "9.9",
                "leader.replication.throttled.replicas"
                | "follower.replication.throttled.replicas" => "0:1,x",
                _ => bad,
            };
            assert!(
                validate(&c, &one(def.name, bad)).is_err(),
                "{} = {bad}",
                def.name
            );
        }
    }

    #[test]
    fn values_follow_kafkas_rules() {
        let c = Config::default();
        for (k, v) in [
            ("cleanup.policy", ""),
            ("cleanup.policy", " compact , delete "),
            ("retention.ms", " 1000 "),
            ("preallocate", "TRUE"),
            ("message.format.version", "2.8.1"),
            ("message.format.version", "0.10.2-IV0"),
            ("message.format.version", "3.0-IV1"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1, 1:2"),
            ("compression.gzip.level", "-1"),
            ("compression.zstd.level", "-5"),
            ("remote.storage.enable", "false"),
            ("local.retention.ms", "-2"),
        ] {
            assert!(validate(&c, &one(k, v)).is_ok(), "{k} = {v:?}");
        }
        for (k, v) in [
            ("cleanup.policy", "delete,"),
            ("cleanup.policy", "forever"),
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("retention.ms", "-2"),
            ("segment.bytes", "13"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("message.format.version", "4.0"),
            ("message.format.version", "3.0-IVx"),
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", "-3"),
            ("flush.messages", "0"),
        ] {
            assert!(validate(&c, &one(k, v)).is_err(), "{k} = {v:?}");
        }
        let mut lags = one("min.compaction.lag.ms", "10");
        lags.insert("max.compaction.lag.ms".into(), "5".into());
        assert!(
            validate(&c, &lags)
                .unwrap_err()
                .contains("conflict topic config")
        );
    }

    #[test]
    fn overrides_win_over_broker_defaults() {
        let broker = Config::default();
        let mut o = BTreeMap::new();
        assert_eq!(TopicConfig::resolve(&broker, &o).segment_bytes, 1 << 30);
        o.insert("segment.bytes".to_string(), " 1048576".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        o.insert("cleanup.policy".to_string(), "".to_string());
        let t = TopicConfig::resolve(&broker, &o);
        assert_eq!(t.segment_bytes, 1 << 20);
        assert!(t.log_append_time);
        assert!(!t.cleanup_delete && !t.cleanup_compact);
    }

    #[test]
    fn every_default_passes_its_own_validation() {
        let broker = Config::default();
        for def in TOPIC_CONFIGS {
            let v = (def.default)(&broker);
            assert!((def.validate)(&v).is_ok(), "{} default {v}", def.name);
        }
        assert!(validate(&broker, &BTreeMap::new()).is_ok());
    }

    #[test]
    fn described_with_sources_and_synonyms() {
        let broker = Config {
            log_retention_ms: 1000,
            ..Config::default()
        };
        let d = describe(&broker, &one("flush.ms", " 5 "));
        let get = |n: &str| d.iter().find(|e| e.def.name == n).unwrap();
        let flush = get("flush.ms");
        assert_eq!((flush.value.as_str(), flush.source), ("5", source::TOPIC));
        assert_eq!(flush.synonyms[1].name, "log.flush.interval.ms");
        let retention = get("retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("1000", source::STATIC_BROKER)
        );
        assert_eq!(retention.synonyms.last().unwrap().value, "604800000");
        let isr = get("min.insync.replicas");
        assert_eq!(isr.source, source::DYNAMIC_DEFAULT_BROKER);
        assert_eq!(
            isr.synonyms.iter().map(|s| s.source).collect::<Vec<_>>(),
            [source::DYNAMIC_DEFAULT_BROKER, source::DEFAULT]
        );
        let remote = get("remote.storage.enable");
        assert_eq!((remote.source, remote.synonyms.len()), (source::DEFAULT, 0));
        assert_eq!(get("min.cleanable.dirty.ratio").value, "0.5");
    }

    #[test]
    fn the_config_docs_list_every_config() {
        let doc = include_str!("../../docs/CONFIG.md");
        for def in TOPIC_CONFIGS.iter().chain(group::GROUP_CONFIGS) {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", def.name)))
                .unwrap_or_else(|| panic!("docs/CONFIG.md has no row for {}", def.name));
            let says_acts = row.contains("| yes |");
            assert_eq!(says_acts, def.acts(), "docs/CONFIG.md: {row}");
        }
    }
}
