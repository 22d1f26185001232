//! Kafka's config names over the wire: every topic config accepted, stored,
//! described with its source and documented; bad values of each refused with
//! Kafka's error codes; min.insync.replicas shown as Kafka 4.1+ shows it; the
//! broker described under Kafka's broker names; group configs (resource type
//! GROUP) described, altered, validated and kept across a restart.

mod common;

use std::collections::BTreeMap;

use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::handlers::SERVED;
use sluice::topic_config::{Effect, TOPIC_CONFIGS, group::GROUP_CONFIGS};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const GROUP: i8 = 32;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

// Config sources.
const DYNAMIC_TOPIC: i8 = 1;
const DYNAMIC_DEFAULT_BROKER: i8 = 3;
const STATIC_BROKER: i8 = 4;
const DEFAULT: i8 = 5;
const GROUP_CONFIG: i8 = 8;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SERVED.iter().find(|(k, _, _)| *k == key).unwrap();
    *min..=*max
}

/// A valid value other than the default for every topic config.
const GOOD_TOPIC_VALUES: &[(&str, &str, &str)] = &[
    // (name, value sent, value described)
    ("cleanup.policy", "compact, delete", "compact,delete"),
    ("compression.gzip.level", "5", "5"),
    ("compression.lz4.level", "10", "10"),
    ("compression.type", "lz4", "lz4"),
    ("compression.zstd.level", "-7", "-7"),
    ("delete.retention.ms", "1000", "1000"),
    ("file.delete.delay.ms", "1", "1"),
    ("flush.messages", "1000", "1000"),
    ("flush.ms", " 12345 ", "12345"),
    (
        "follower.replication.throttled.replicas",
        "0:1,1:1",
        "0:1,1:1",
    ),
    ("index.interval.bytes", "8192", "8192"),
    ("leader.replication.throttled.replicas", "*", "*"),
    ("local.retention.bytes", "1000", "1000"),
    ("local.retention.ms", "-1", "-1"),
    ("max.compaction.lag.ms", "100000", "100000"),
    ("max.message.bytes", "2000000", "2000000"),
    ("message.downconversion.enable", "FALSE", "false"),
    ("message.format.version", "2.8", "2.8"),
    ("message.timestamp.after.max.ms", "3600000", "3600000"),
    ("message.timestamp.before.max.ms", "3600000", "3600000"),
    ("message.timestamp.difference.max.ms", "3600000", "3600000"),
    ("message.timestamp.type", "LogAppendTime", "LogAppendTime"),
    ("min.cleanable.dirty.ratio", "1", "1.0"),
    ("min.compaction.lag.ms", "10", "10"),
    ("min.insync.replicas", "2", "2"),
    ("preallocate", "true", "true"),
    ("remote.log.copy.disable", "true", "true"),
    ("remote.log.delete.on.disable", "true", "true"),
    ("remote.storage.enable", "false", "false"),
    ("retention.bytes", "1000000", "1000000"),
    ("retention.ms", "100000", "100000"),
    ("segment.bytes", "1048576", "1048576"),
    ("segment.index.bytes", "4096", "4096"),
    ("segment.jitter.ms", "10", "10"),
    ("segment.ms", "100000", "100000"),
    ("unclean.leader.election.enable", "true", "true"),
];

/// A value Kafka refuses, for every topic config.
const BAD_TOPIC_VALUES: &[(&str, &str)] = &[
    ("cleanup.policy", "forever"),
    ("compression.gzip.level", "0"),
    ("compression.lz4.level", "18"),
    ("compression.type", "brotli"),
    ("compression.zstd.level", "23"),
    ("delete.retention.ms", "-1"),
    ("file.delete.delay.ms", "-1"),
    ("flush.messages", "0"),
    ("flush.ms", "soon"),
    ("follower.replication.throttled.replicas", "0-1"),
    ("index.interval.bytes", "-1"),
    ("leader.replication.throttled.replicas", "x:1"),
    ("local.retention.bytes", "-3"),
    ("local.retention.ms", "-3"),
    ("max.compaction.lag.ms", "0"),
    ("max.message.bytes", "2147483648"),
    ("message.downconversion.enable", "yes"),
    ("message.format.version", "4.0"),
    ("message.timestamp.after.max.ms", "-1"),
    ("message.timestamp.before.max.ms", "-1"),
    ("message.timestamp.difference.max.ms", "-1"),
    ("message.timestamp.type", "BrokerTime"),
    ("min.cleanable.dirty.ratio", "1.5"),
    ("min.compaction.lag.ms", "-1"),
    ("min.insync.replicas", "0"),
    ("preallocate", "sometimes"),
    ("remote.log.copy.disable", "1"),
    ("remote.log.delete.on.disable", "0"),
    ("remote.storage.enable", "true"),
    ("retention.bytes", "lots"),
    ("retention.ms", "-2"),
    ("segment.bytes", "13"),
    ("segment.index.bytes", "3"),
    ("segment.jitter.ms", "-1"),
    ("segment.ms", "0"),
    ("unclean.leader.election.enable", "no"),
];

async fn create(c: &mut Client, topic: &str, configs: &[(&str, &str)]) -> CreateTopicsResponse {
    common::create_topic_with(c, topic, configs).await
}

async fn create_ok(c: &mut Client, topic: &str) {
    let r = create(c, topic, &[]).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

struct Described {
    error_code: i16,
    error_message: Option<String>,
    configs: BTreeMap<String, DescribeConfigsResourceResult>,
}

impl Described {
    fn get(&self, name: &str) -> &DescribeConfigsResourceResult {
        self.configs
            .get(name)
            .unwrap_or_else(|| panic!("{name} not described; got {:?}", self.configs.keys()))
    }

    fn value(&self, name: &str) -> (String, i8) {
        let e = self.get(name);
        (
            e.value.as_deref().unwrap_or("<null>").to_string(),
            e.config_source,
        )
    }

    fn synonyms(&self, name: &str) -> Vec<(String, String, i8)> {
        self.get(name)
            .synonyms
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.value.as_deref().unwrap_or("<null>").to_string(),
                    s.source,
                )
            })
            .collect()
    }
}

async fn describe_v(
    c: &mut Client,
    version: i16,
    resource_type: i8,
    name: &str,
    keys: Option<&[&str]>,
    extras: bool,
) -> Described {
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(extras)
        .with_include_documentation(extras && version >= 3)
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect())),
        ]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, version, &req).await;
    let res = &r.results[0];
    assert_eq!(res.resource_name.as_str(), name);
    assert_eq!(res.resource_type, resource_type);
    Described {
        error_code: res.error_code,
        error_message: res.error_message.as_ref().map(|m| m.to_string()),
        configs: res
            .configs
            .iter()
            .map(|e| (e.name.to_string(), e.clone()))
            .collect(),
    }
}

async fn describe(c: &mut Client, resource_type: i8, name: &str, extras: bool) -> Described {
    describe_v(c, 4, resource_type, name, None, extras).await
}

/// IncrementalAlterConfigs on one resource: (error code, message).
async fn incremental_v(
    c: &mut Client,
    version: i16,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let req = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    ops.iter()
                        .map(|&(k, op, v)| {
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(s(k))
                                .with_config_operation(op)
                                .with_value(v.map(s))
                        })
                        .collect(),
                ),
        ]);
    let r: IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, version, &req).await;
    let res = &r.responses[0];
    (
        res.error_code,
        res.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn incremental(
    c: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    incremental_v(c, 1, resource_type, name, ops, false).await
}

/// AlterConfigs (the whole set) on one resource: (error code, message).
async fn alter_v(
    c: &mut Client,
    version: i16,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
) -> (i16, Option<String>) {
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|&(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(v.map(s))
                    })
                    .collect(),
            ),
    ]);
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, version, &req).await;
    let res = &r.responses[0];
    (
        res.error_code,
        res.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn the_test_tables_cover_every_topic_config() {
    let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
    let good: Vec<&str> = GOOD_TOPIC_VALUES.iter().map(|(n, _, _)| *n).collect();
    let bad: Vec<&str> = BAD_TOPIC_VALUES.iter().map(|(n, _)| *n).collect();
    assert_eq!(good, names);
    assert_eq!(bad, names);
}

#[tokio::test]
async fn every_topic_config_is_accepted_stored_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_ok(&mut c, "all").await;

    // Before: every config described, none overridden.
    let before = describe(&mut c, TOPIC, "all", false).await;
    assert_eq!(before.error_code, 0);
    assert_eq!(
        before
            .configs
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        TOPIC_CONFIGS.iter().map(|d| d.name).collect::<Vec<_>>()
    );
    assert!(
        before
            .configs
            .values()
            .all(|e| e.config_source != DYNAMIC_TOPIC)
    );

    let ops: Vec<(&str, i8, Option<&str>)> = GOOD_TOPIC_VALUES
        .iter()
        .map(|&(name, value, _)| (name, SET, Some(value)))
        .collect();
    assert_eq!(incremental(&mut c, TOPIC, "all", &ops).await, (0, None));

    let check = |d: &Described, extras: bool| {
        assert_eq!(d.error_code, 0);
        for &(name, _, shown) in GOOD_TOPIC_VALUES {
            let def = TOPIC_CONFIGS.iter().find(|d| d.name == name).unwrap();
            let e = d.get(name);
            assert_eq!(d.value(name), (shown.to_string(), DYNAMIC_TOPIC), "{name}");
            assert_eq!(e.config_type, def.kind as i8, "{name}");
            assert!(!e.read_only && !e.is_sensitive, "{name}");
            if !extras {
                assert!(e.synonyms.is_empty(), "{name}: synonyms only when asked");
                assert!(
                    e.documentation.is_none(),
                    "{name}: documentation only when asked"
                );
                continue;
            }
            assert_eq!(
                d.synonyms(name)[0],
                (name.to_string(), shown.to_string(), DYNAMIC_TOPIC),
                "{name}"
            );
            let doc = e.documentation.as_deref().unwrap_or("");
            match def.effect {
                Effect::Acts => assert!(!doc.contains("Sluice: "), "{name}: {doc}"),
                Effect::None(_) => assert!(doc.contains("Sluice: no effect."), "{name}: {doc}"),
                Effect::Deprecated(_) => {
                    assert!(
                        doc.contains("deprecated, accepted and ignored"),
                        "{name}: {doc}"
                    )
                }
            }
        }
    };
    check(&describe(&mut c, TOPIC, "all", false).await, false);
    check(&describe(&mut c, TOPIC, "all", true).await, true);
    // Every served version answers, with types from v3.
    for v in range(ApiKey::DescribeConfigs) {
        let d = describe_v(&mut c, v, TOPIC, "all", Some(&["flush.ms"]), true).await;
        assert_eq!(d.configs.len(), 1, "v{v}");
        assert_eq!(d.value("flush.ms"), ("12345".into(), DYNAMIC_TOPIC), "v{v}");
        let e = d.get("flush.ms");
        assert_eq!(e.config_type, if v >= 3 { 5 } else { 0 }, "v{v}");
        if v >= 3 {
            assert!(
                e.documentation
                    .as_deref()
                    .is_some_and(|d| d.contains("oldest unflushed write")),
                "v{v}: flush.ms acts"
            );
        }
    }

    // Stored durably: the same after a restart.
    drop(c);
    broker.stop().await;
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    check(&describe(&mut c, TOPIC, "all", false).await, false);

    // DELETE takes each back to its default.
    let ops: Vec<(&str, i8, Option<&str>)> = GOOD_TOPIC_VALUES
        .iter()
        .map(|&(name, _, _)| (name, DELETE, None))
        .collect();
    assert_eq!(incremental(&mut c, TOPIC, "all", &ops).await, (0, None));
    let after = describe(&mut c, TOPIC, "all", false).await;
    for (name, e) in &after.configs {
        assert_eq!(
            (e.value.clone(), e.config_source),
            (
                before.get(name).value.clone(),
                before.get(name).config_source
            ),
            "{name}"
        );
    }

    // AlterConfigs (every version) stores no-effect configs too, and
    // replaces the whole set.
    for v in range(ApiKey::AlterConfigs) {
        let value = format!("{}", 1000 + v as i32);
        let r = alter_v(
            &mut c,
            v,
            TOPIC,
            "all",
            &[
                ("flush.messages", Some(&value)),
                ("preallocate", Some("true")),
            ],
        )
        .await;
        assert_eq!(r, (0, None), "AlterConfigs v{v}");
        let d = describe(&mut c, TOPIC, "all", false).await;
        assert_eq!(d.value("flush.messages"), (value, DYNAMIC_TOPIC));
        assert_eq!(d.value("preallocate"), ("true".into(), DYNAMIC_TOPIC));
        assert_eq!(d.value("flush.ms").1, DEFAULT, "replaced, not merged");
    }
    // A topic created with no-effect configs keeps them too.
    let r = create(
        &mut c,
        "created",
        &[("flush.ms", "777"), ("message.format.version", "3.0")],
    )
    .await;
    assert_eq!(r.topics[0].error_code, 0);
    let configs = r.topics[0].configs.as_ref().unwrap();
    let flush = configs
        .iter()
        .find(|e| e.name.as_str() == "flush.ms")
        .unwrap();
    assert_eq!(
        (flush.value.as_deref(), flush.config_source),
        (Some("777"), DYNAMIC_TOPIC)
    );
    let d = describe(&mut c, TOPIC, "created", false).await;
    assert_eq!(
        d.value("message.format.version"),
        ("3.0".into(), DYNAMIC_TOPIC)
    );
    broker.stop().await;
}

#[tokio::test]
async fn bad_topic_configs_get_kafkas_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_ok(&mut c, "t").await;

    for &(name, bad) in BAD_TOPIC_VALUES {
        for v in range(ApiKey::IncrementalAlterConfigs) {
            let (code, message) =
                incremental_v(&mut c, v, TOPIC, "t", &[(name, SET, Some(bad))], false).await;
            assert_eq!(
                code, INVALID_CONFIG,
                "IncrementalAlterConfigs v{v} {name}={bad}"
            );
            assert!(
                message.unwrap_or_default().contains(name),
                "the message names {name}"
            );
        }
        for v in range(ApiKey::AlterConfigs) {
            let (code, _) = alter_v(&mut c, v, TOPIC, "t", &[(name, Some(bad))]).await;
            assert_eq!(code, INVALID_CONFIG, "AlterConfigs v{v} {name}={bad}");
        }
        let r = create(&mut c, "never", &[(name, bad)]).await;
        assert_eq!(
            r.topics[0].error_code, INVALID_CONFIG,
            "CreateTopics {name}={bad}"
        );
    }
    // A null value in CreateTopics.
    let null = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s("never")))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(s("flush.ms"))
                        .with_value(None),
                ]),
        ])
        .with_timeout_ms(5000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &null).await;
    assert_eq!(
        r.topics[0].error_code, INVALID_CONFIG,
        "CreateTopics with a null value"
    );
    // Nothing was stored.
    let d = describe(&mut c, TOPIC, "t", false).await;
    assert!(d.configs.values().all(|e| e.config_source != DYNAMIC_TOPIC));

    type Ops<'a> = Vec<(&'a str, i8, Option<&'a str>)>;
    let cases: Vec<(&str, Ops, i16)> = vec![
        (
            "unknown name",
            vec![("retention.forever", SET, Some("1"))],
            INVALID_CONFIG,
        ),
        (
            "APPEND to a LONG",
            vec![("retention.ms", APPEND, Some("1"))],
            INVALID_CONFIG,
        ),
        (
            "SUBTRACT from a STRING",
            vec![("compression.type", SUBTRACT, Some("lz4"))],
            INVALID_CONFIG,
        ),
        (
            "SET without a value",
            vec![("retention.ms", SET, None)],
            INVALID_CONFIG,
        ),
        (
            "min lag above max lag",
            vec![
                ("min.compaction.lag.ms", SET, Some("10")),
                ("max.compaction.lag.ms", SET, Some("5")),
            ],
            INVALID_CONFIG,
        ),
        (
            "APPEND an unknown policy",
            vec![("cleanup.policy", APPEND, Some("archive"))],
            INVALID_CONFIG,
        ),
        (
            "unknown operation",
            vec![("retention.ms", 7, Some("1"))],
            INVALID_REQUEST,
        ),
        (
            "a key twice",
            vec![
                ("retention.ms", SET, Some("1")),
                ("retention.ms", SET, Some("2")),
            ],
            INVALID_REQUEST,
        ),
    ];
    for (what, ops, want) in cases {
        assert_eq!(
            incremental(&mut c, TOPIC, "t", &ops).await.0,
            want,
            "{what}"
        );
    }
    // validate_only checks but stores nothing.
    assert_eq!(
        incremental_v(&mut c, 1, TOPIC, "t", &[("flush.ms", SET, Some("5"))], true).await,
        (0, None)
    );
    assert_eq!(
        incremental_v(
            &mut c,
            1,
            TOPIC,
            "t",
            &[("flush.ms", SET, Some("-5"))],
            true
        )
        .await
        .0,
        INVALID_CONFIG
    );
    assert_eq!(
        describe(&mut c, TOPIC, "t", false)
            .await
            .value("flush.ms")
            .1,
        DEFAULT
    );
    // DELETE of what is not set (even an unknown name) changes nothing.
    assert_eq!(
        incremental(&mut c, TOPIC, "t", &[("no.such", DELETE, None)])
            .await
            .0,
        0
    );
    // Null values in AlterConfigs.
    assert_eq!(
        alter_v(&mut c, 2, TOPIC, "t", &[("retention.ms", None)])
            .await
            .0,
        INVALID_CONFIG
    );

    // Bad resource names.
    for (name, want) in [
        ("a topic", INVALID_TOPIC_EXCEPTION),
        ("..", INVALID_TOPIC_EXCEPTION),
        ("", INVALID_REQUEST),
        ("missing", UNKNOWN_TOPIC_OR_PARTITION),
    ] {
        let ops = [("retention.ms", SET, Some("1000"))];
        assert_eq!(
            incremental(&mut c, TOPIC, name, &ops).await.0,
            want,
            "incremental {name:?}"
        );
        assert_eq!(
            alter_v(&mut c, 1, TOPIC, name, &[("retention.ms", Some("1000"))])
                .await
                .0,
            want,
            "alter {name:?}"
        );
    }
    for (name, want) in [
        ("a topic", INVALID_TOPIC_EXCEPTION),
        ("", INVALID_TOPIC_EXCEPTION),
        ("missing", UNKNOWN_TOPIC_OR_PARTITION),
    ] {
        let d = describe(&mut c, TOPIC, name, false).await;
        assert_eq!(d.error_code, want, "describe {name:?}");
        assert!(d.configs.is_empty() && d.error_message.is_some());
    }
    // The same resource twice in one request: both refused.
    let twice = IncrementalAlterConfigsRequest::default().with_resources(
        (0..2)
            .map(|_| {
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(TOPIC)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(SET)
                            .with_value(Some(s("1000"))),
                    ])
            })
            .collect(),
    );
    let r: IncrementalAlterConfigsResponse =
        c.call(ApiKey::IncrementalAlterConfigs, 1, &twice).await;
    assert_eq!(
        r.responses.iter().map(|r| r.error_code).collect::<Vec<_>>(),
        [INVALID_REQUEST, INVALID_REQUEST]
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_new_topic_shows_min_insync_replicas_as_kafka_4_1_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    let r = create(&mut c, "fresh", &[]).await;
    let configs = r.topics[0]
        .configs
        .as_ref()
        .expect("CreateTopics v5+ lists configs");
    let isr = configs
        .iter()
        .find(|e| e.name.as_str() == "min.insync.replicas")
        .unwrap();
    assert_eq!(
        (isr.value.as_deref(), isr.config_source),
        (Some("1"), DYNAMIC_DEFAULT_BROKER)
    );
    let retention = configs
        .iter()
        .find(|e| e.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.config_source, DEFAULT);

    let d = describe(&mut c, TOPIC, "fresh", true).await;
    assert_eq!(
        d.value("min.insync.replicas"),
        ("1".into(), DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(
        d.synonyms("min.insync.replicas"),
        [
            (
                "min.insync.replicas".into(),
                "1".into(),
                DYNAMIC_DEFAULT_BROKER
            ),
            ("min.insync.replicas".into(), "1".into(), DEFAULT),
        ]
    );
    assert_eq!(d.value("retention.ms"), ("604800000".into(), DEFAULT));
    assert_eq!(
        d.synonyms("retention.ms"),
        [("log.retention.ms".into(), "604800000".into(), DEFAULT)]
    );
    // The cluster-level defaults: the broker resource with the empty name.
    let cluster = describe(&mut c, BROKER, "", true).await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(
        cluster.configs.keys().collect::<Vec<_>>(),
        ["min.insync.replicas"]
    );
    assert_eq!(
        cluster.synonyms("min.insync.replicas"),
        [(
            "min.insync.replicas".into(),
            "1".into(),
            DYNAMIC_DEFAULT_BROKER
        )]
    );
    drop(c);
    broker.stop().await;

    // A broker whose file sets min.insync.replicas and log.retention.ms.
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.min_insync_replicas = 2;
        c.log_retention_ms = 1000;
    })
    .await;
    let mut c = broker.client().await;
    let d = describe(&mut c, TOPIC, "fresh", true).await;
    assert_eq!(
        d.value("min.insync.replicas"),
        ("2".into(), DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(
        d.synonyms("min.insync.replicas"),
        [
            (
                "min.insync.replicas".into(),
                "2".into(),
                DYNAMIC_DEFAULT_BROKER
            ),
            ("min.insync.replicas".into(), "2".into(), STATIC_BROKER),
            ("min.insync.replicas".into(), "1".into(), DEFAULT),
        ]
    );
    assert_eq!(d.value("retention.ms"), ("1000".into(), STATIC_BROKER));
    // A topic override comes first.
    assert_eq!(
        incremental(
            &mut c,
            TOPIC,
            "fresh",
            &[("min.insync.replicas", SET, Some("1"))]
        )
        .await
        .0,
        0
    );
    let d = describe(&mut c, TOPIC, "fresh", true).await;
    assert_eq!(d.value("min.insync.replicas"), ("1".into(), DYNAMIC_TOPIC));
    assert_eq!(
        d.synonyms("min.insync.replicas")
            .iter()
            .map(|s| s.2)
            .collect::<Vec<_>>(),
        [
            DYNAMIC_TOPIC,
            DYNAMIC_DEFAULT_BROKER,
            STATIC_BROKER,
            DEFAULT
        ]
    );
    broker.stop().await;
}

#[tokio::test]
async fn broker_configs_are_described_under_kafkas_names() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.num_partitions = 3).await;
    let mut c = broker.client().await;
    let d = describe(&mut c, BROKER, "1", true).await;
    assert_eq!(d.error_code, 0);
    let port = broker.addr.port();
    let data_dir = dir.path().display().to_string();
    for (name, value, source, kind) in [
        (
            "listeners",
            format!("PLAINTEXT://127.0.0.1:{port}"),
            STATIC_BROKER,
            2,
        ),
        // Unset, it is the listener, as in Kafka.
        (
            "advertised.listeners",
            format!("PLAINTEXT://127.0.0.1:{port}"),
            STATIC_BROKER,
            2,
        ),
        ("log.dirs", data_dir.clone(), STATIC_BROKER, 7),
        ("log.dir", data_dir, STATIC_BROKER, 7),
        ("node.id", "1".into(), DEFAULT, 3),
        ("broker.id", "1".into(), DEFAULT, 3),
        ("num.partitions", "3".into(), STATIC_BROKER, 3),
        ("default.replication.factor", "1".into(), DEFAULT, 3),
        ("min.insync.replicas", "1".into(), DYNAMIC_DEFAULT_BROKER, 3),
        ("auto.create.topics.enable", "true".into(), DEFAULT, 1),
        ("process.roles", "broker,controller".into(), DEFAULT, 7),
        ("controller.quorum.voters", "".into(), DEFAULT, 7),
        ("log.retention.ms", "604800000".into(), DEFAULT, 5),
        // Sluice's default: acknowledged means on disk (Kafka's is Long.MAX).
        ("log.flush.interval.messages", "1".into(), DEFAULT, 5),
        ("message.max.bytes", "1048588".into(), DEFAULT, 3),
        ("offsets.topic.replication.factor", "3".into(), DEFAULT, 4),
        (
            "group.consumer.session.timeout.ms",
            "45000".into(),
            DEFAULT,
            3,
        ),
        (
            "group.consumer.max.session.timeout.ms",
            "60000".into(),
            DEFAULT,
            3,
        ),
        (
            "group.share.record.lock.duration.ms",
            "30000".into(),
            DEFAULT,
            3,
        ),
        ("producer.id.expiration.ms", "86400000".into(), DEFAULT, 3),
        (
            "producer.id.expiration.check.interval.ms",
            "600000".into(),
            DEFAULT,
            3,
        ),
        (
            "transactional.id.expiration.ms",
            "604800000".into(),
            DEFAULT,
            3,
        ),
        ("transaction.max.timeout.ms", "900000".into(), DEFAULT, 3),
        (
            "transaction.state.log.replication.factor",
            "3".into(),
            DEFAULT,
            4,
        ),
    ] {
        assert_eq!(d.value(name), (value, source), "{name}");
        let e = d.get(name);
        assert_eq!(e.config_type, kind, "{name}");
        assert!(e.read_only, "{name}: broker configs come from the file");
    }
    for sluice_only in [
        "listen",
        "advertised.listener",
        "data.dir",
        "raft.tick.ms",
        "internal.listen",
        "cluster.id",
    ] {
        assert!(
            !d.configs.contains_key(sluice_only),
            "{sluice_only} is not a Kafka name"
        );
    }
    // Filtered by key, at every version.
    for v in range(ApiKey::DescribeConfigs) {
        let d = describe_v(&mut c, v, BROKER, "1", Some(&["log.dirs", "listen"]), false).await;
        assert_eq!(d.configs.keys().collect::<Vec<_>>(), ["log.dirs"], "v{v}");
    }
    // Bad names and types get Kafka's errors.
    for name in ["2", "one", "-1"] {
        let d = describe(&mut c, BROKER, name, false).await;
        assert_eq!(d.error_code, INVALID_REQUEST, "broker {name:?}");
        assert!(d.error_message.unwrap().contains(name));
    }
    assert_eq!(
        describe(&mut c, BROKER_LOGGER, "1", false).await.error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        describe(&mut c, 99, "x", false).await.error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        incremental(&mut c, BROKER, "1", &[("num.partitions", SET, Some("2"))])
            .await
            .0,
        INVALID_REQUEST
    );
    assert_eq!(
        alter_v(&mut c, 0, BROKER, "1", &[("num.partitions", Some("2"))])
            .await
            .0,
        INVALID_REQUEST
    );
    broker.stop().await;
}

/// A broker whose heartbeat bound lets a heartbeat reach the session timeout.
async fn group_broker(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, |c| c.group_consumer_max_heartbeat_interval_ms = 60_000).await
}

#[tokio::test]
async fn group_configs_are_described_altered_validated_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = group_broker(dir.path()).await;
    let mut c = broker.client().await;

    // A group need not exist to be described.
    let d = describe(&mut c, GROUP, "g1", true).await;
    assert_eq!(d.error_code, 0);
    assert_eq!(
        d.configs.keys().map(String::as_str).collect::<Vec<_>>(),
        GROUP_CONFIGS.iter().map(|d| d.name).collect::<Vec<_>>()
    );
    assert_eq!(
        d.value("consumer.session.timeout.ms"),
        ("45000".into(), DEFAULT)
    );
    assert_eq!(
        d.synonyms("consumer.session.timeout.ms"),
        [(
            "group.consumer.session.timeout.ms".into(),
            "45000".into(),
            DEFAULT
        )]
    );
    assert_eq!(
        d.synonyms("share.auto.offset.reset"),
        [("share.auto.offset.reset".into(), "latest".into(), DEFAULT)]
    );
    let e = d.get("consumer.session.timeout.ms");
    assert_eq!(e.config_type, 3);
    assert!(!e.read_only);
    let doc = |e: &DescribeConfigsResourceResult| e.documentation.as_deref().unwrap().to_string();
    assert!(!doc(e).contains("no effect"), "the coordinator applies it");
    assert!(doc(d.get("share.session.timeout.ms")).contains("Sluice: no effect."));

    for v in range(ApiKey::IncrementalAlterConfigs) {
        let session = format!("{}", 50_000 + v as i32);
        let ops = [
            ("consumer.session.timeout.ms", SET, Some(session.as_str())),
            ("share.isolation.level", SET, Some("read_committed")),
            ("share.auto.offset.reset", SET, Some("by_duration:PT1H")),
            ("streams.num.standby.replicas", SET, Some("2")),
        ];
        assert_eq!(
            incremental_v(&mut c, v, GROUP, "g1", &ops, false).await,
            (0, None),
            "v{v}"
        );
        let d = describe(&mut c, GROUP, "g1", true).await;
        assert_eq!(
            d.value("consumer.session.timeout.ms"),
            (session.clone(), GROUP_CONFIG)
        );
        assert_eq!(
            d.synonyms("consumer.session.timeout.ms"),
            [
                ("consumer.session.timeout.ms".into(), session, GROUP_CONFIG),
                (
                    "group.consumer.session.timeout.ms".into(),
                    "45000".into(),
                    DEFAULT
                ),
            ]
        );
        assert_eq!(
            d.value("share.isolation.level"),
            ("read_committed".into(), GROUP_CONFIG)
        );
        assert_eq!(
            d.value("streams.num.standby.replicas"),
            ("2".into(), GROUP_CONFIG)
        );
        assert_eq!(
            d.value("consumer.heartbeat.interval.ms"),
            ("5000".into(), DEFAULT)
        );
    }
    // Other groups are not affected.
    assert_eq!(
        describe(&mut c, GROUP, "g2", false)
            .await
            .value("consumer.session.timeout.ms")
            .1,
        DEFAULT
    );

    // Stored durably.
    drop(c);
    broker.stop().await;
    let broker = group_broker(dir.path()).await;
    let mut c = broker.client().await;
    let d = describe(&mut c, GROUP, "g1", false).await;
    assert_eq!(
        d.value("consumer.session.timeout.ms"),
        ("50001".into(), GROUP_CONFIG)
    );
    assert_eq!(
        d.value("share.auto.offset.reset"),
        ("by_duration:PT1H".into(), GROUP_CONFIG)
    );

    // AlterConfigs replaces the whole set, at every version.
    for v in range(ApiKey::AlterConfigs) {
        let hb = format!("{}", 6000 + v as i32);
        assert_eq!(
            alter_v(
                &mut c,
                v,
                GROUP,
                "g1",
                &[("consumer.heartbeat.interval.ms", Some(&hb))]
            )
            .await,
            (0, None),
            "AlterConfigs v{v}"
        );
        let d = describe(&mut c, GROUP, "g1", false).await;
        assert_eq!(
            d.value("consumer.heartbeat.interval.ms"),
            (hb, GROUP_CONFIG)
        );
        assert_eq!(
            d.value("consumer.session.timeout.ms"),
            ("45000".into(), DEFAULT)
        );
        assert_eq!(d.value("share.isolation.level").1, DEFAULT);
    }
    // DELETE takes it back to the default; nothing is left stored.
    assert_eq!(
        incremental(
            &mut c,
            GROUP,
            "g1",
            &[("consumer.heartbeat.interval.ms", DELETE, None)]
        )
        .await,
        (0, None)
    );
    let d = describe(&mut c, GROUP, "g1", false).await;
    assert!(d.configs.values().all(|e| e.config_source == DEFAULT));
    broker.stop().await;
}

#[tokio::test]
async fn bad_group_configs_get_kafkas_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = group_broker(dir.path()).await;
    let mut c = broker.client().await;
    let bad: &[(&str, &str, &str)] = &[
        // (name, value, part of the message)
        (
            "consumer.session.timeout.ms",
            "44999",
            "greater than or equal to group.consumer.min.session.timeout.ms",
        ),
        (
            "consumer.session.timeout.ms",
            "60001",
            "less than or equal to group.consumer.max.session.timeout.ms",
        ),
        (
            "consumer.session.timeout.ms",
            "0",
            "Value must be at least 1",
        ),
        (
            "consumer.session.timeout.ms",
            "soon",
            "Not a number of type INT",
        ),
        (
            "consumer.heartbeat.interval.ms",
            "4999",
            "group.consumer.min.heartbeat.interval.ms",
        ),
        (
            "consumer.heartbeat.interval.ms",
            "45000",
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms",
        ),
        (
            "share.session.timeout.ms",
            "1000",
            "group.share.min.session.timeout.ms",
        ),
        (
            "share.heartbeat.interval.ms",
            "20000",
            "group.share.max.heartbeat.interval.ms",
        ),
        (
            "share.record.lock.duration.ms",
            "999",
            "Value must be at least 1000",
        ),
        (
            "share.record.lock.duration.ms",
            "70000",
            "group.share.max.record.lock.duration.ms",
        ),
        (
            "share.delivery.count.limit",
            "1",
            "Value must be at least 2",
        ),
        (
            "share.delivery.count.limit",
            "11",
            "group.share.max.delivery.count.limit",
        ),
        (
            "share.partition.max.record.locks",
            "99",
            "Value must be at least 100",
        ),
        ("share.auto.offset.reset", "sometimes", "not a valid value"),
        (
            "share.auto.offset.reset",
            "by_duration:-PT1H",
            "not a valid value",
        ),
        (
            "share.isolation.level",
            "READ_COMMITTED",
            "String must be one of",
        ),
        (
            "streams.session.timeout.ms",
            "30000",
            "group.streams.min.session.timeout.ms",
        ),
        (
            "streams.heartbeat.interval.ms",
            "1",
            "group.streams.min.heartbeat.interval.ms",
        ),
        (
            "streams.num.standby.replicas",
            "3",
            "group.streams.max.standby.replicas",
        ),
        (
            "streams.num.standby.replicas",
            "-1",
            "Value must be at least 0",
        ),
        (
            "streams.initial.rebalance.delay.ms",
            "-1",
            "Value must be at least 0",
        ),
        (
            "consumer.nonsense.ms",
            "1",
            "Unknown group config name: consumer.nonsense.ms",
        ),
        (
            "retention.ms",
            "1000",
            "Unknown group config name: retention.ms",
        ),
    ];
    for &(name, value, want) in bad {
        for v in range(ApiKey::IncrementalAlterConfigs) {
            let (code, message) =
                incremental_v(&mut c, v, GROUP, "g", &[(name, SET, Some(value))], false).await;
            assert_eq!(
                code, INVALID_CONFIG,
                "IncrementalAlterConfigs v{v} {name}={value}"
            );
            let message = message.unwrap_or_default();
            assert!(message.contains(want), "{name}={value}: {message}");
        }
        for v in range(ApiKey::AlterConfigs) {
            let (code, _) = alter_v(&mut c, v, GROUP, "g", &[(name, Some(value))]).await;
            assert_eq!(code, INVALID_CONFIG, "AlterConfigs v{v} {name}={value}");
        }
        // validate_only finds the same.
        assert_eq!(
            incremental_v(&mut c, 1, GROUP, "g", &[(name, SET, Some(value))], true)
                .await
                .0,
            INVALID_CONFIG
        );
    }
    for (what, ops, want) in [
        (
            "APPEND to an INT",
            vec![("consumer.session.timeout.ms", APPEND, Some("1"))],
            INVALID_CONFIG,
        ),
        (
            "SET without a value",
            vec![("consumer.session.timeout.ms", SET, None)],
            INVALID_CONFIG,
        ),
        (
            "unknown operation",
            vec![("consumer.session.timeout.ms", 9, Some("1"))],
            INVALID_REQUEST,
        ),
        (
            "a key twice",
            vec![
                ("consumer.session.timeout.ms", SET, Some("50000")),
                ("consumer.session.timeout.ms", SET, Some("55000")),
            ],
            INVALID_REQUEST,
        ),
    ] {
        assert_eq!(
            incremental(&mut c, GROUP, "g", &ops).await.0,
            want,
            "{what}"
        );
    }
    assert_eq!(
        alter_v(
            &mut c,
            2,
            GROUP,
            "g",
            &[("consumer.session.timeout.ms", None)]
        )
        .await
        .0,
        INVALID_CONFIG
    );
    // validate_only of a good value stores nothing.
    assert_eq!(
        incremental_v(
            &mut c,
            1,
            GROUP,
            "g",
            &[("consumer.session.timeout.ms", SET, Some("50000"))],
            true
        )
        .await,
        (0, None)
    );
    let d = describe(&mut c, GROUP, "g", false).await;
    assert!(
        d.configs.values().all(|e| e.config_source == DEFAULT),
        "nothing stored"
    );

    // The empty group name: Kafka's INVALID_REQUEST.
    let d = describe(&mut c, GROUP, "", false).await;
    assert_eq!(d.error_code, INVALID_REQUEST);
    assert_eq!(
        d.error_message.as_deref(),
        Some("Group name must not be empty")
    );
    assert_eq!(
        incremental(
            &mut c,
            GROUP,
            "",
            &[("consumer.session.timeout.ms", SET, Some("50000"))]
        )
        .await
        .0,
        INVALID_REQUEST
    );
    assert_eq!(
        alter_v(
            &mut c,
            1,
            GROUP,
            "",
            &[("consumer.session.timeout.ms", Some("50000"))]
        )
        .await
        .0,
        INVALID_REQUEST
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_broker_set_below_kafkas_group_minimums_accepts_its_own_values() {
    // The client tests' brokers use a 6 s session and 0.5 s heartbeats.
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.group_consumer_session_timeout_ms = 6000;
        c.group_consumer_heartbeat_interval_ms = 500;
    })
    .await;
    let mut c = broker.client().await;
    let d = describe(&mut c, GROUP, "g", true).await;
    assert_eq!(
        d.value("consumer.session.timeout.ms"),
        ("6000".into(), STATIC_BROKER)
    );
    assert_eq!(
        d.synonyms("consumer.session.timeout.ms"),
        [
            (
                "group.consumer.session.timeout.ms".into(),
                "6000".into(),
                STATIC_BROKER
            ),
            (
                "group.consumer.session.timeout.ms".into(),
                "45000".into(),
                DEFAULT
            ),
        ]
    );
    let ops = [("consumer.session.timeout.ms", SET, Some("8000"))];
    assert_eq!(incremental(&mut c, GROUP, "g", &ops).await, (0, None));
    let ops = [("consumer.session.timeout.ms", SET, Some("5999"))];
    assert_eq!(
        incremental(&mut c, GROUP, "g", &ops).await.0,
        INVALID_CONFIG
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_groups_heartbeat_interval_reaches_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let mut c = broker.client().await;
    create_ok(&mut c, "hb-topic").await;
    let beat = |epoch: i32| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("hb-group")))
            .with_member_id(s("m-1"))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if epoch == 0 { 5000 } else { -1 })
            .with_subscribed_topic_names((epoch == 0).then(|| vec![TopicName(s("hb-topic"))]))
            .with_topic_partitions((epoch == 0).then(Vec::new))
    };
    let r: ConsumerGroupHeartbeatResponse =
        c.call(ApiKey::ConsumerGroupHeartbeat, 1, &beat(0)).await;
    assert_eq!(r.error_code, 0);
    let default_interval = r.heartbeat_interval_ms;
    let epoch = r.member_epoch;
    let wanted = default_interval + 1000;
    let value = wanted.to_string();
    let (code, message) = incremental(
        &mut c,
        GROUP,
        "hb-group",
        &[("consumer.heartbeat.interval.ms", SET, Some(value.as_str()))],
    )
    .await;
    assert_eq!(code, 0, "{message:?}");
    let r: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 1, &beat(epoch))
        .await;
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, wanted));
    broker.stop().await;
}
