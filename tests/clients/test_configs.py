"""Kafka's config names with real clients (docs/CONFIG.md):

- the official Java Admin client (kafka-clients, tests/java/src/ConfigChecks.java):
  the broker described under Kafka's broker names; a GROUP config
  (ConfigResource.Type.GROUP) described, altered incrementally, refused with
  InvalidConfigurationException for bad values and unknown names, deleted;
  a new topic's min.insync.replicas shown as Kafka 4.1+ shows it; flush.ms
  altered and read back with its documentation, flush.messages at Sluice's
  default 1 (every write on disk before it is acknowledged);
- kafka-python: group configs altered and read back after a restart;
  flush.messages altered with the legacy AlterConfigs and read back;
- confluent-kafka (librdkafka): configs Sluice does not act on altered
  incrementally and read back, kept across a restart; bad values refused with
  INVALID_CONFIG; a topic with Kafka's flush policy (flush.messages above 1)
  written with acks=all across a restart, every record read back."""

import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)

from conftest import create_topic
from java_support import run_java

pytestmark = pytest.mark.timeout(240)

INVALID_CONFIG = 40

GROUP_CONFIG_NAMES = {
    "consumer.heartbeat.interval.ms",
    "consumer.session.timeout.ms",
    "share.auto.offset.reset",
    "share.delivery.count.limit",
    "share.heartbeat.interval.ms",
    "share.isolation.level",
    "share.partition.max.record.locks",
    "share.record.lock.duration.ms",
    "share.session.timeout.ms",
    "streams.heartbeat.interval.ms",
    "streams.initial.rebalance.delay.ms",
    "streams.num.standby.replicas",
    "streams.session.timeout.ms",
}


def error_of(run, step):
    line = run.step(step)
    assert not line["ok"], f"{step} should have failed: {line}"
    return line["error"].rsplit(".", 1)[-1], line["message"] or ""


def test_java_admin_describes_broker_and_alters_group_configs(broker):
    run = run_java("ConfigChecks", broker.bootstrap, "java-config-group", "java-config-topic", timeout=120)
    assert run.returncode == 0, run.report()

    b = run.step("describe_broker")
    assert b["ok"], run.report()
    entries = b["entries"]
    expected = {
        "listeners": f"PLAINTEXT://{broker.bootstrap}",
        "advertised.listeners": f"PLAINTEXT://{broker.bootstrap}",
        "log.dirs": str(broker.data_dir),
        "node.id": "1",
        "broker.id": "1",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
    }
    for name, value in expected.items():
        assert entries.get(name, {}).get("value") == value, (name, entries.get(name))
    assert entries["min.insync.replicas"]["source"] == "DYNAMIC_DEFAULT_BROKER_CONFIG"
    assert entries["node.id"]["type"] == "INT" and entries["log.dirs"]["type"] == "LIST"
    assert all(e["read_only"] for e in entries.values())
    for sluice_name in ("listen", "advertised.listener", "data.dir", "raft.tick.ms"):
        assert sluice_name not in entries, f"{sluice_name} is Sluice's name, not Kafka's"

    g = run.step("describe_group")
    assert g["ok"], run.report()
    assert set(g["entries"]) == GROUP_CONFIG_NAMES
    session = g["entries"]["consumer.session.timeout.ms"]
    assert (session["value"], session["source"], session["type"]) == ("45000", "DEFAULT_CONFIG", "INT"), session
    assert session["synonyms"] == [["group.consumer.session.timeout.ms", "45000", "DEFAULT_CONFIG"]], session
    assert "no effect" not in session["documentation"], session  # the coordinator applies it
    share = g["entries"]["share.session.timeout.ms"]
    assert "no effect" in share["documentation"], share

    assert run.step("alter_group")["ok"], run.report()
    altered = run.step("describe_group_altered")["entries"]
    assert (altered["consumer.session.timeout.ms"]["value"], altered["consumer.session.timeout.ms"]["source"]) == (
        "50000",
        "DYNAMIC_GROUP_CONFIG",
    ), altered["consumer.session.timeout.ms"]
    assert altered["consumer.session.timeout.ms"]["synonyms"][0] == [
        "consumer.session.timeout.ms",
        "50000",
        "DYNAMIC_GROUP_CONFIG",
    ]
    assert altered["share.isolation.level"]["value"] == "read_committed"

    error, message = error_of(run, "alter_group_too_short")
    assert error == "InvalidConfigurationException", run.report()
    assert "group.consumer.min.session.timeout.ms" in message, message
    assert error_of(run, "alter_group_not_a_number")[0] == "InvalidConfigurationException"
    error, message = error_of(run, "alter_group_unknown_name")
    assert (error, "Unknown group config name: consumer.nonsense.ms" in message) == ("InvalidConfigurationException", True)
    assert error_of(run, "alter_group_append")[0] == "InvalidConfigurationException"
    assert error_of(run, "describe_group_empty_name")[0] == "InvalidRequestException"
    after = run.step("describe_group_after_errors")["entries"]
    assert after["consumer.session.timeout.ms"]["value"] == "50000", "refused changes changed nothing"

    deleted = run.step("delete_group_config")
    assert deleted["ok"], run.report()
    assert (
        deleted["entries"]["consumer.session.timeout.ms"]["value"],
        deleted["entries"]["consumer.session.timeout.ms"]["source"],
    ) == ("45000", "DEFAULT_CONFIG")
    assert deleted["entries"]["share.isolation.level"]["source"] == "DYNAMIC_GROUP_CONFIG"

    t = run.step("describe_topic")["entries"]
    isr = t["min.insync.replicas"]
    assert (isr["value"], isr["source"]) == ("1", "DYNAMIC_DEFAULT_BROKER_CONFIG"), isr
    assert [s[2] for s in isr["synonyms"]] == ["DYNAMIC_DEFAULT_BROKER_CONFIG", "DEFAULT_CONFIG"], isr
    assert "no effect" not in t["flush.ms"]["documentation"], "flush.ms acts"
    assert "oldest unflushed write" in t["flush.ms"]["documentation"]
    fm = t["flush.messages"]
    assert (fm["value"], fm["source"]) == ("1", "DEFAULT_CONFIG"), fm
    flush = run.step("alter_topic_flush_ms")["entries"]["flush.ms"]
    assert (flush["value"], flush["source"]) == ("12345", "DYNAMIC_TOPIC_CONFIG"), flush
    assert error_of(run, "alter_topic_bad_flush_ms")[0] == "InvalidConfigurationException"

    # The group config survives a restart (read back with kafka-python).
    broker.stop()
    broker.start()
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        desc = kp.describe_configs([KpConfigResource(ConfigResourceType.GROUP, "java-config-group")])
        group = desc["group"]["java-config-group"]
        assert set(group) == {"share.isolation.level"}, group
        assert group["share.isolation.level"]["value"] == "read_committed"
        assert group["share.isolation.level"]["config_source"] == "DYNAMIC_GROUP_CONFIG"
    finally:
        kp.close()


def test_kafka_python_group_and_no_effect_topic_configs(broker):
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    create_topic(broker.bootstrap, "kp-flush", 1)
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # Incremental (the default) and legacy AlterConfigs.
        res = a.alter_configs([KpConfigResource(ConfigResourceType.GROUP, "kp-group", {"consumer.heartbeat.interval.ms": "6000"})])
        assert res == {"group": {"kp-group": "OK"}}, res
        res = a.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, "kp-flush", {"flush.messages": "100", "preallocate": "true"})],
            incremental=False,
        )
        assert res == {"topic": {"kp-flush": "OK"}}, res
        topic = a.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "kp-flush")])["topic"]["kp-flush"]
        assert {k: v["value"] for k, v in topic.items()} == {"flush.messages": "100", "preallocate": "true"}, topic
        group = a.describe_configs([KpConfigResource(ConfigResourceType.GROUP, "kp-group")], config_filter="all")
        hb = group["group"]["kp-group"]["consumer.heartbeat.interval.ms"]
        assert (hb["value"], hb["config_source"]) == ("6000", "DYNAMIC_GROUP_CONFIG"), hb
        # A bad group value: INVALID_CONFIG.
        res = a.alter_configs([KpConfigResource(ConfigResourceType.GROUP, "kp-group", {"consumer.session.timeout.ms": "100"})])
        assert res["group"]["kp-group"].startswith("[Error 40] InvalidConfigurationError"), res
    finally:
        a.close()


def test_confluent_alters_configs_sluice_does_not_act_on(broker):
    create_topic(broker.bootstrap, "no-effect", 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    values = {
        "unclean.leader.election.enable": "true",
        "message.format.version": "3.0-IV1",
        "message.downconversion.enable": "false",
        "follower.replication.throttled.replicas": "*",
        "local.retention.ms": "-1",
        "segment.jitter.ms": "100",
    }
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "no-effect",
        incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in values.items()],
    )
    admin.incremental_alter_configs([res])[res].result(timeout=20)

    def read_back():
        plain = ConfigResource(ConfigResource.Type.TOPIC, "no-effect")
        conf = admin.describe_configs([plain])[plain].result(timeout=20)
        return {k: (conf[k].value, conf[k].source) for k in values}

    want = {k: (v, ConfigSource.DYNAMIC_TOPIC_CONFIG.value) for k, v in values.items()}
    assert read_back() == want

    for name, bad in [
        ("flush.ms", "-1"),
        ("flush.messages", "0"),
        ("message.format.version", "9.9"),
        ("remote.storage.enable", "true"),
        ("no.such.config", "1"),
    ]:
        bad_res = ConfigResource(
            ConfigResource.Type.TOPIC,
            "no-effect",
            incremental_configs=[ConfigEntry(name, bad, incremental_operation=AlterConfigOpType.SET)],
        )
        with pytest.raises(KafkaException) as e:
            admin.incremental_alter_configs([bad_res])[bad_res].result(timeout=20)
        assert e.value.args[0].code() == INVALID_CONFIG, (name, bad, e.value)

    del admin
    broker.stop()
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert read_back() == want


def test_kafka_flush_policy_topic_serves_acks_all_and_keeps_records_across_a_restart(broker):
    from confluent_kafka import Consumer, Producer

    create_topic(broker.bootstrap, "kafka-flush", 2, config={"flush.messages": "9223372036854775807"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True})
    errors = []
    for i in range(200):
        p.produce("kafka-flush", value=b"v%d" % i, partition=i % 2, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    del p
    # A clean stop flushes what the policy left in memory; the records are all there after it.
    broker.stop()
    broker.start()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "kafka-flush", "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["kafka-flush"])
        seen = set()
        deadline = time.time() + 30
        while len(seen) < 200 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen.add(m.value())
        assert seen == {b"v%d" % i for i in range(200)}
    finally:
        c.close()
