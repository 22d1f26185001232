"""Topic configs set and read back with the admin clients of confluent-kafka
and kafka-python; retention by size and by time and DeleteRecords, seen
through ListOffsets and consumption."""

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    OffsetSpec,
)

from conftest import create_topic, running_broker


@pytest.fixture
def fast_retention(tmp_path):
    with running_broker(tmp_path, '"log.retention.check.interval.ms" = 100\n') as b:
        yield b


def produce(bootstrap, topic, n, value_size=100, timestamp=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 10})
    for i in range(n):
        p.produce(topic, value=b"x" * value_size, key=str(i).encode(), timestamp=timestamp or 0)
    assert p.flush(30) == 0


def earliest_latest(admin, topic):
    tp = TopicPartition(topic, 0)
    e = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=10).offset
    l_ = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(timeout=10).offset
    return e, l_


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_from_beginning(bootstrap, topic, expected):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "retention-readers", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING: the log start offset
    out = []
    deadline = time.time() + 20
    while len(out) < expected and time.time() < deadline:
        out += [m.offset() for m in c.consume(500, 0.5) if not m.error()]
    c.close()
    return out


def test_confluent_admin_sets_and_reads_topic_configs(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, "cfg", 1)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[
            ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    admin.incremental_alter_configs([res])[res].result(timeout=20)
    plain = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    conf = admin.describe_configs([plain])[plain].result(timeout=20)
    assert conf["retention.ms"].value == "120000"
    assert conf["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert conf["cleanup.policy"].value == "delete,compact"
    assert conf["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[ConfigEntry("retention.ms", "later", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(Exception) as e:
        admin.incremental_alter_configs([bad])[bad].result(timeout=20)
    assert "INVALID_CONFIG" in str(e.value) or "retention.ms" in str(e.value)


def test_kafka_python_admin_alters_and_describes_configs(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    create_topic(broker.bootstrap, "kp-cfg", 1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-cfg", configs={"retention.ms": "3600000"})])
        desc = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-cfg")])
        text = str(desc)
        assert "retention.ms" in text and "3600000" in text, text
    finally:
        admin.close()
    conf = AdminClient({"bootstrap.servers": broker.bootstrap})
    plain = ConfigResource(ConfigResource.Type.TOPIC, "kp-cfg")
    assert conf.describe_configs([plain])[plain].result(timeout=20)["retention.ms"].value == "3600000"


def test_retention_by_size_and_by_time(fast_retention):
    b = fast_retention
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    create_topic(b.bootstrap, "sized", 1, config={"segment.bytes": "4000", "retention.bytes": "8000"})
    produce(b.bootstrap, "sized", 500)
    # Retention runs every 100 ms and may first act while the records are
    # still arriving: wait until it has acted and then left the log alone
    # for several passes.
    seen = []

    def settled():
        seen.append(earliest_latest(admin, "sized"))
        recent = seen[-4:]
        if len(recent) == 4 and recent[0][0] > 0 and recent[0][1] == 500 and len(set(recent)) == 1:
            return recent[0]
        return None

    earliest, latest = wait_until(settled, 20, "size retention")
    assert latest == 500
    # Roughly retention.bytes plus the active segment is left, in whole segments.
    assert latest - earliest < 150, (earliest, latest)
    offsets = read_from_beginning(b.bootstrap, "sized", latest - earliest)
    assert offsets == list(range(earliest, latest)), "consumers start at the new log start offset"

    create_topic(b.bootstrap, "aged", 1, config={"segment.bytes": "4000"})
    produce(b.bootstrap, "aged", 200, timestamp=int(time.time() * 1000) - 3_600_000)
    time.sleep(0.5)
    assert earliest_latest(admin, "aged") == (0, 200), "kept under the 7-day default"
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "aged",
        incremental_configs=[ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([res])[res].result(timeout=20)
    wait_until(lambda: earliest_latest(admin, "aged") == (200, 200), 20, "time retention")


def test_delete_records_with_the_confluent_admin(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, "trim", 1)
    produce(broker.bootstrap, "trim", 100)
    tp = TopicPartition("trim", 0, 40)
    done = admin.delete_records([tp])[tp].result(timeout=20)
    assert done.low_watermark == 40
    assert earliest_latest(admin, "trim") == (40, 100)
    assert read_from_beginning(broker.bootstrap, "trim", 60) == list(range(40, 100))


def test_compression_type_recompresses_for_every_reader(broker):
    """Sent with gzip, stored with lz4 (the topic's compression.type), read
    back intact by librdkafka and kafka-python."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    create_topic(broker.bootstrap, "recomp", 1, config={"compression.type": "lz4"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.codec": "gzip", "linger.ms": 5})
    for i in range(1000):
        p.produce("recomp", key=f"k{i}".encode(), value=f"value-{i}".encode() * 5, headers=[("i", str(i).encode())])
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    c.assign([TopicPartition("recomp", 0, 0)])
    got = []
    deadline = time.time() + 20
    while len(got) < 1000 and time.time() < deadline:
        got += [m for m in c.consume(500, 0.5) if not m.error()]
    c.close()
    assert [m.value() for m in got] == [f"value-{i}".encode() * 5 for i in range(1000)]
    assert [dict(m.headers())["i"] for m in got] == [str(i).encode() for i in range(1000)]
    k = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=5000)
    k.assign([KTopicPartition("recomp", 0)])
    k.seek(KTopicPartition("recomp", 0), 0)
    values = [m.value for m in k]
    k.close()
    assert values == [f"value-{i}".encode() * 5 for i in range(1000)]


def test_acks_all_needs_min_insync_replicas(broker):
    """On one broker a partition has one in-sync replica: with
    min.insync.replicas=2, acks=all is refused with NOT_ENOUGH_REPLICAS and
    nothing is written, while acks=1 goes through, as in Kafka."""
    from confluent_kafka import KafkaError

    create_topic(broker.bootstrap, "isr2", 1, {"min.insync.replicas": "2"})
    results = []
    p_all = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                      "message.timeout.ms": 5000, "retries": 0})
    p_all.produce("isr2", value=b"refused", on_delivery=lambda err, m: results.append(err))
    p_all.flush(30)
    assert results and results[0] is not None, results
    assert results[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, results[0]
    p_one = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 0})
    p_one.produce("isr2", value=b"written", on_delivery=lambda err, m: results.append(err))
    assert p_one.flush(30) == 0
    assert results[1] is None
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # acks=1 answers before the fsync, and the high watermark is the durable
    # offset: the record becomes visible once the flusher has synced it.
    deadline = time.time() + 10
    while earliest_latest(admin, "isr2") != (0, 1) and time.time() < deadline:
        time.sleep(0.05)
    assert earliest_latest(admin, "isr2") == (0, 1), "only the acks=1 record is stored"
