//! Group configs (ConfigResource type GROUP = 32, KIP-848/932/1071): Kafka
//! 4.x's names, types, defaults and checks. A group stores only its
//! overrides; the defaults are the broker's `group.*` keys.

use std::collections::BTreeMap;

use super::{
    BrokerKeyDef, ConfigDef, ConfigType, Described, Effect, check, describe_all, effective,
    int_at_least, source, string_in,
};
use crate::config::Config;

// Broker-level bounds of share and streams group configs. Sluice serves
// neither kind of group, so these are Kafka's defaults, not settings.
pub const SHARE_SESSION_TIMEOUT_MS: i32 = 45_000;
pub const SHARE_MIN_SESSION_TIMEOUT_MS: i32 = 45_000;
pub const SHARE_MAX_SESSION_TIMEOUT_MS: i32 = 60_000;
pub const SHARE_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
pub const SHARE_MIN_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
pub const SHARE_MAX_HEARTBEAT_INTERVAL_MS: i32 = 15_000;
pub const SHARE_RECORD_LOCK_DURATION_MS: i32 = 30_000;
pub const SHARE_MIN_RECORD_LOCK_DURATION_MS: i32 = 15_000;
pub const SHARE_MAX_RECORD_LOCK_DURATION_MS: i32 = 60_000;
pub const SHARE_DELIVERY_COUNT_LIMIT: i32 = 5;
pub const SHARE_MIN_DELIVERY_COUNT_LIMIT: i32 = 2;
pub const SHARE_MAX_DELIVERY_COUNT_LIMIT: i32 = 10;
pub const SHARE_PARTITION_MAX_RECORD_LOCKS: i32 = 2_000;
pub const STREAMS_SESSION_TIMEOUT_MS: i32 = 45_000;
pub const STREAMS_MIN_SESSION_TIMEOUT_MS: i32 = 45_000;
pub const STREAMS_MAX_SESSION_TIMEOUT_MS: i32 = 60_000;
pub const STREAMS_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
pub const STREAMS_MIN_HEARTBEAT_INTERVAL_MS: i32 = 5_000;
pub const STREAMS_MAX_HEARTBEAT_INTERVAL_MS: i32 = 15_000;
pub const STREAMS_NUM_STANDBY_REPLICAS: i32 = 0;
pub const STREAMS_MAX_STANDBY_REPLICAS: i32 = 2;
pub const STREAMS_INITIAL_REBALANCE_DELAY_MS: i32 = 3_000;

const NO_SHARE_GROUPS: &str = "Sluice has no share groups (KIP-932).";
const NO_STREAMS_GROUPS: &str = "Sluice has no streams groups (KIP-1071).";

/// share.auto.offset.reset: latest, earliest, or by_duration:<ISO-8601
/// duration, not negative>.
fn auto_offset_reset(v: &str) -> Result<(), String> {
    let lower = v.trim().to_ascii_lowercase();
    if lower == "latest" || lower == "earliest" {
        return Ok(());
    }
    let bad = || {
        Err(format!(
            "{v} is not a valid value: use earliest, latest or by_duration:<ISO-8601 \
             duration, PnDTnHnMn.nS, not negative>"
        ))
    };
    let Some(duration) = lower.strip_prefix("by_duration:") else {
        return bad();
    };
    if iso_duration_ok(duration.trim()) {
        Ok(())
    } else {
        bad()
    }
}

/// A non-negative java.time.Duration text: P[nD][T[nH][nM][n[.n]S]],
/// at least one part, case-insensitive (`lower` is lower case).
fn iso_duration_ok(lower: &str) -> bool {
    let Some(rest) = lower.strip_prefix('p') else {
        return false;
    };
    let (days, time) = match rest.split_once('t') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let mut parts = 0;
    if !days.is_empty() {
        match days.strip_suffix('d') {
            Some(n) if digits(n) => parts += 1,
            _ => return false,
        }
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return false;
        }
        for unit in ['h', 'm'] {
            if let Some(i) = t.find(unit) {
                if !digits(&t[..i]) {
                    return false;
                }
                parts += 1;
                t = &t[i + 1..];
            }
        }
        if !t.is_empty() {
            match t.strip_suffix('s') {
                Some(n) => {
                    let (whole, frac) = n.split_once('.').unwrap_or((n, "0"));
                    if !digits(whole) || !digits(frac) {
                        return false;
                    }
                    parts += 1;
                }
                None => return false,
            }
        }
    }
    parts > 0
}

/// Every group config Sluice accepts (Kafka 4.x's GroupConfig).
pub static GROUP_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "consumer.heartbeat.interval.ms",
        broker_key: Some("group.consumer.heartbeat.interval.ms"),
        kind: ConfigType::Int,
        default: |c| c.group_consumer_heartbeat_interval_ms.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::Acts,
        doc: "The heartbeat interval given to the members of this consumer group \
              (KIP-848), within group.consumer.min/max.heartbeat.interval.ms.",
    },
    ConfigDef {
        name: "consumer.session.timeout.ms",
        broker_key: Some("group.consumer.session.timeout.ms"),
        kind: ConfigType::Int,
        default: |c| c.group_consumer_session_timeout_ms.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::Acts,
        doc: "How long a member of this consumer group (KIP-848) may go without a \
              heartbeat, within group.consumer.min/max.session.timeout.ms.",
    },
    ConfigDef {
        name: "share.auto.offset.reset",
        broker_key: None,
        kind: ConfigType::String,
        default: |_| "latest".into(),
        validate: auto_offset_reset,
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "Where a share partition starts: latest, earliest, or \
              by_duration:<ISO-8601 duration>.",
    },
    ConfigDef {
        name: "share.delivery.count.limit",
        broker_key: Some("group.share.delivery.count.limit"),
        kind: ConfigType::Int,
        default: |_| SHARE_DELIVERY_COUNT_LIMIT.to_string(),
        validate: |v| int_at_least(v, 2),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "How many times a record may be delivered to the share group.",
    },
    ConfigDef {
        name: "share.heartbeat.interval.ms",
        broker_key: Some("group.share.heartbeat.interval.ms"),
        kind: ConfigType::Int,
        default: |_| SHARE_HEARTBEAT_INTERVAL_MS.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "The heartbeat interval given to the members of this share group.",
    },
    ConfigDef {
        name: "share.isolation.level",
        broker_key: None,
        kind: ConfigType::String,
        default: |_| "read_uncommitted".into(),
        validate: |v| string_in(v, &["read_committed", "read_uncommitted"]),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "read_committed delivers only committed transactional records; \
              read_uncommitted delivers all.",
    },
    ConfigDef {
        name: "share.partition.max.record.locks",
        broker_key: Some("group.share.partition.max.record.locks"),
        kind: ConfigType::Int,
        default: |_| SHARE_PARTITION_MAX_RECORD_LOCKS.to_string(),
        validate: |v| super::int_between(v, 100, 10_000),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "How many records of one share partition may be locked at once.",
    },
    ConfigDef {
        name: "share.record.lock.duration.ms",
        broker_key: Some("group.share.record.lock.duration.ms"),
        kind: ConfigType::Int,
        default: |_| SHARE_RECORD_LOCK_DURATION_MS.to_string(),
        validate: |v| int_at_least(v, 1000),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "How long a share-group member holds the records it acquired.",
    },
    ConfigDef {
        name: "share.session.timeout.ms",
        broker_key: Some("group.share.session.timeout.ms"),
        kind: ConfigType::Int,
        default: |_| SHARE_SESSION_TIMEOUT_MS.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::None(NO_SHARE_GROUPS),
        doc: "How long a member of this share group may go without a heartbeat.",
    },
    ConfigDef {
        name: "streams.heartbeat.interval.ms",
        broker_key: Some("group.streams.heartbeat.interval.ms"),
        kind: ConfigType::Int,
        default: |_| STREAMS_HEARTBEAT_INTERVAL_MS.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::None(NO_STREAMS_GROUPS),
        doc: "The heartbeat interval given to the members of this streams group.",
    },
    ConfigDef {
        name: "streams.initial.rebalance.delay.ms",
        broker_key: Some("group.streams.initial.rebalance.delay.ms"),
        kind: ConfigType::Int,
        default: |_| STREAMS_INITIAL_REBALANCE_DELAY_MS.to_string(),
        validate: |v| int_at_least(v, 0),
        effect: Effect::None(NO_STREAMS_GROUPS),
        doc: "How long a new streams group waits for more members before its first \
              assignment.",
    },
    ConfigDef {
        name: "streams.num.standby.replicas",
        broker_key: Some("group.streams.num.standby.replicas"),
        kind: ConfigType::Int,
        default: |_| STREAMS_NUM_STANDBY_REPLICAS.to_string(),
        validate: |v| int_at_least(v, 0),
        effect: Effect::None(NO_STREAMS_GROUPS),
        doc: "How many standby replicas each task of this streams group gets.",
    },
    ConfigDef {
        name: "streams.session.timeout.ms",
        broker_key: Some("group.streams.session.timeout.ms"),
        kind: ConfigType::Int,
        default: |_| STREAMS_SESSION_TIMEOUT_MS.to_string(),
        validate: |v| int_at_least(v, 1),
        effect: Effect::None(NO_STREAMS_GROUPS),
        doc: "How long a member of this streams group may go without a heartbeat.",
    },
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// The broker's bounds of the consumer group configs, widened to include
/// the broker's own defaults (a broker configured below Kafka's minimums,
/// as the tests' brokers are, still accepts its own values).
fn consumer_bounds(c: &Config) -> [(i32, i32); 2] {
    [
        (
            c.group_consumer_min_session_timeout_ms
                .min(c.group_consumer_session_timeout_ms),
            c.group_consumer_max_session_timeout_ms
                .max(c.group_consumer_session_timeout_ms),
        ),
        (
            c.group_consumer_min_heartbeat_interval_ms
                .min(c.group_consumer_heartbeat_interval_ms),
            c.group_consumer_max_heartbeat_interval_ms
                .max(c.group_consumer_heartbeat_interval_ms),
        ),
    ]
}

/// Checks a group's overrides as Kafka does: known names ("Unknown group
/// config name"), each value's type and range, then the broker's bounds
/// and session > heartbeat on the overrides over the broker's defaults.
pub fn validate(broker: &Config, overrides: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in overrides {
        let def = find(k).ok_or_else(|| format!("Unknown group config name: {k}"))?;
        check(def, v)?;
    }
    let num = |name: &str| {
        effective(broker, GROUP_CONFIGS, overrides, name)
            .parse::<i64>()
            .unwrap_or(0)
    };
    let [session, heartbeat] = consumer_bounds(broker);
    let ranges: [(&str, &str, (i32, i32)); 7] = [
        (
            "consumer.heartbeat.interval.ms",
            "group.consumer",
            heartbeat,
        ),
        ("consumer.session.timeout.ms", "group.consumer", session),
        (
            "share.heartbeat.interval.ms",
            "group.share",
            (
                SHARE_MIN_HEARTBEAT_INTERVAL_MS,
                SHARE_MAX_HEARTBEAT_INTERVAL_MS,
            ),
        ),
        (
            "share.session.timeout.ms",
            "group.share",
            (SHARE_MIN_SESSION_TIMEOUT_MS, SHARE_MAX_SESSION_TIMEOUT_MS),
        ),
        (
            "share.record.lock.duration.ms",
            "group.share",
            (
                SHARE_MIN_RECORD_LOCK_DURATION_MS,
                SHARE_MAX_RECORD_LOCK_DURATION_MS,
            ),
        ),
        (
            "streams.heartbeat.interval.ms",
            "group.streams",
            (
                STREAMS_MIN_HEARTBEAT_INTERVAL_MS,
                STREAMS_MAX_HEARTBEAT_INTERVAL_MS,
            ),
        ),
        (
            "streams.session.timeout.ms",
            "group.streams",
            (
                STREAMS_MIN_SESSION_TIMEOUT_MS,
                STREAMS_MAX_SESSION_TIMEOUT_MS,
            ),
        ),
    ];
    for (name, prefix, (min, max)) in ranges {
        // consumer.session.timeout.ms -> group.consumer.min.session.timeout.ms
        let rest = name.split_once('.').map_or(name, |(_, r)| r);
        let n = num(name);
        if n < min as i64 {
            return Err(format!(
                "{name} must be greater than or equal to {prefix}.min.{rest}"
            ));
        }
        if n > max as i64 {
            return Err(format!(
                "{name} must be less than or equal to {prefix}.max.{rest}"
            ));
        }
    }
    let limit = num("share.delivery.count.limit");
    if limit < SHARE_MIN_DELIVERY_COUNT_LIMIT as i64 {
        return Err(
            "share.delivery.count.limit must be greater than or equal to \
                    group.share.min.delivery.count.limit"
                .into(),
        );
    }
    if limit > SHARE_MAX_DELIVERY_COUNT_LIMIT as i64 {
        return Err("share.delivery.count.limit must be less than or equal to \
                    group.share.max.delivery.count.limit"
            .into());
    }
    if num("streams.num.standby.replicas") > STREAMS_MAX_STANDBY_REPLICAS as i64 {
        return Err(
            "streams.num.standby.replicas must be less than or equal to \
                    group.streams.max.standby.replicas"
                .into(),
        );
    }
    for kind in ["consumer", "share", "streams"] {
        let (s, h) = (
            format!("{kind}.session.timeout.ms"),
            format!("{kind}.heartbeat.interval.ms"),
        );
        if num(&s) <= num(&h) {
            return Err(format!("{s} must be greater than {h}"));
        }
    }
    Ok(())
}

/// Every group config of a group with these overrides.
pub fn describe(broker: &Config, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    describe_all(GROUP_CONFIGS, source::GROUP, true, broker, overrides)
}

/// The session timeout and heartbeat interval a KIP-848 group with these
/// overrides should use (for the group coordinator).
pub fn consumer_settings(broker: &Config, overrides: &BTreeMap<String, String>) -> (i32, i32) {
    let num = |name: &str, fallback: i32| {
        effective(broker, GROUP_CONFIGS, overrides, name)
            .parse::<i32>()
            .unwrap_or(fallback)
    };
    (
        num(
            "consumer.session.timeout.ms",
            broker.group_consumer_session_timeout_ms,
        ),
        num(
            "consumer.heartbeat.interval.ms",
            broker.group_consumer_heartbeat_interval_ms,
        ),
    )
}

/// The broker keys behind the group configs: their defaults and bounds,
/// for DescribeConfigs of the broker (name, type, value).
pub fn broker_keys() -> Vec<BrokerKeyDef> {
    let int = ConfigType::Int;
    let mut out: Vec<BrokerKeyDef> = vec![
        ("group.consumer.min.session.timeout.ms", int, |c| {
            c.group_consumer_min_session_timeout_ms.to_string()
        }),
        ("group.consumer.max.session.timeout.ms", int, |c| {
            c.group_consumer_max_session_timeout_ms.to_string()
        }),
        ("group.consumer.min.heartbeat.interval.ms", int, |c| {
            c.group_consumer_min_heartbeat_interval_ms.to_string()
        }),
        ("group.consumer.max.heartbeat.interval.ms", int, |c| {
            c.group_consumer_max_heartbeat_interval_ms.to_string()
        }),
        ("group.share.min.session.timeout.ms", int, |_| {
            SHARE_MIN_SESSION_TIMEOUT_MS.to_string()
        }),
        ("group.share.max.session.timeout.ms", int, |_| {
            SHARE_MAX_SESSION_TIMEOUT_MS.to_string()
        }),
        ("group.share.min.heartbeat.interval.ms", int, |_| {
            SHARE_MIN_HEARTBEAT_INTERVAL_MS.to_string()
        }),
        ("group.share.max.heartbeat.interval.ms", int, |_| {
            SHARE_MAX_HEARTBEAT_INTERVAL_MS.to_string()
        }),
        ("group.share.min.record.lock.duration.ms", int, |_| {
            SHARE_MIN_RECORD_LOCK_DURATION_MS.to_string()
        }),
        ("group.share.max.record.lock.duration.ms", int, |_| {
            SHARE_MAX_RECORD_LOCK_DURATION_MS.to_string()
        }),
        ("group.share.min.delivery.count.limit", int, |_| {
            SHARE_MIN_DELIVERY_COUNT_LIMIT.to_string()
        }),
        ("group.share.max.delivery.count.limit", int, |_| {
            SHARE_MAX_DELIVERY_COUNT_LIMIT.to_string()
        }),
        ("group.streams.min.session.timeout.ms", int, |_| {
            STREAMS_MIN_SESSION_TIMEOUT_MS.to_string()
        }),
        ("group.streams.max.session.timeout.ms", int, |_| {
            STREAMS_MAX_SESSION_TIMEOUT_MS.to_string()
        }),
        ("group.streams.min.heartbeat.interval.ms", int, |_| {
            STREAMS_MIN_HEARTBEAT_INTERVAL_MS.to_string()
        }),
        ("group.streams.max.heartbeat.interval.ms", int, |_| {
            STREAMS_MAX_HEARTBEAT_INTERVAL_MS.to_string()
        }),
        ("group.streams.max.standby.replicas", int, |_| {
            STREAMS_MAX_STANDBY_REPLICAS.to_string()
        }),
    ];
    for def in GROUP_CONFIGS {
        if let Some(key) = def.broker_key {
            out.push((key, def.kind, def.default));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn defaults_are_valid_and_bounds_apply() {
        let c = Config::default();
        assert!(validate(&c, &BTreeMap::new()).is_ok());
        for def in GROUP_CONFIGS {
            assert!((def.validate)(&(def.default)(&c)).is_ok(), "{}", def.name);
        }
        assert!(validate(&c, &one("consumer.session.timeout.ms", "50000")).is_ok());
        // Every bad value with Kafka's wording is checked over the wire in
        // tests/configs.rs (bad_group_configs_get_kafkas_error_codes).
        let e = validate(&c, &one("consumer.session.timeout.ms", "44999")).unwrap_err();
        assert!(e.contains("group.consumer.min.session.timeout.ms"), "{e}");
        for ok in [
            "latest",
            "EARLIEST",
            "by_duration:PT1H",
            "by_duration:P1DT2H3M4.5S",
            "by_duration:pt0s",
        ] {
            assert!(
                validate(&c, &one("share.auto.offset.reset", ok)).is_ok(),
                "{ok}"
            );
        }
        let mut both = one("consumer.session.timeout.ms", "45000");
        both.insert("consumer.heartbeat.interval.ms".into(), "15000".into());
        assert!(validate(&c, &both).is_ok());
        // session <= heartbeat, both within their own bounds.
        let c2 = Config {
            group_consumer_max_heartbeat_interval_ms: 50_000,
            ..Config::default()
        };
        let mut bad = one("consumer.session.timeout.ms", "45000");
        bad.insert("consumer.heartbeat.interval.ms".into(), "45000".into());
        assert!(
            validate(&c2, &bad)
                .unwrap_err()
                .contains("must be greater than consumer.heartbeat.interval.ms")
        );
    }

    #[test]
    fn a_broker_below_kafkas_minimums_accepts_its_own_values() {
        let c = Config {
            group_consumer_session_timeout_ms: 6000,
            group_consumer_heartbeat_interval_ms: 500,
            ..Config::default()
        };
        assert!(validate(&c, &BTreeMap::new()).is_ok());
        assert!(validate(&c, &one("consumer.session.timeout.ms", "7000")).is_ok());
        assert_eq!(
            consumer_settings(&c, &one("consumer.session.timeout.ms", "7000")),
            (7000, 500)
        );
    }
}
