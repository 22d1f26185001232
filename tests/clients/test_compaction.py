"""Compaction seen by real clients: 100,000 updates over 1,000 keys plus
tombstones, written by librdkafka, cleaned by the broker's log cleaner, then
read back from the start by librdkafka, kafka-python, aiokafka, KafkaJS and kcat: exactly the
latest value of every live key, once each, in offset order."""

import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import create_topic, have_kcat, running_broker

KEYS = 1000
UPDATES = 100_000
TOMBSTONES = 100


@pytest.fixture
def cleaner_broker(tmp_path):
    with running_broker(tmp_path, '"log.cleaner.backoff.ms" = 200\n') as b:
        yield b


def read_confluent(bootstrap, topic):
    """(offset, key, value) of everything from the log start to the end."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "compaction-readers",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
    })
    c.assign([TopicPartition(topic, 0, -2)])
    out = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                break
            raise AssertionError(m.error())
        out.append((m.offset(), m.key().decode(), m.value().decode() if m.value() is not None else None))
    c.close()
    return out


def read_kafka_python(bootstrap, topic, end):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = KTP(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    deadline = time.time() + 30
    while c.position(tp) < end and time.time() < deadline:
        for msgs in c.poll(timeout_ms=500).values():
            out += [(m.offset, m.key.decode(), m.value.decode() if m.value is not None else None) for m in msgs]
    c.close()
    return out


def read_aiokafka(bootstrap, topic, end):
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        out = []
        try:
            tp = ATP(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            deadline = time.time() + 30
            while await c.position(tp) < end and time.time() < deadline:
                for records in (await c.getmany(timeout_ms=500)).values():
                    out += [(r.offset, r.key.decode(), r.value.decode() if r.value is not None else None)
                            for r in records]
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def produce_updates(p, topic, rng, n, keys, tag, latest):
    """n updates of random keys among `keys`, values tagged; `latest` follows."""
    for i in range(n):
        k = f"key-{rng.randrange(keys)}"
        v = f"value-{tag}{i}"
        p.produce(topic, key=k, value=v)
        latest[k] = v
        if i % 5000 == 0:
            p.poll(0)


def check(records, expected, what):
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), f"{what}: offsets in order, once each"
    keys = [k for _, k, _ in records]
    assert len(keys) == len(set(keys)), f"{what}: one record per key after cleaning"
    assert {k: v for _, k, v in records} == expected, what


def test_compacted_topic_reads_back_the_latest_value_of_each_live_key(cleaner_broker):
    b = cleaner_broker
    topic = "compacted"
    create_topic(b.bootstrap, topic, 1, {
        "cleanup.policy": "compact",
        "segment.bytes": str(256 * 1024),
        "segment.ms": "2000",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    })
    # lz4 batches: the cleaner rewrites compressed batches too.
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    rng = random.Random(20261123)
    latest = {}
    produce_updates(p, topic, rng, UPDATES, KEYS, "", latest)
    for k in rng.sample(sorted(latest), TOMBSTONES):
        p.produce(topic, key=k, value=None)
        latest[k] = None
    assert p.flush(60) == 0
    # Only sealed segments are cleaned: once segment.ms has passed, the next
    # write rolls the segment, so every update above becomes cleanable.
    time.sleep(2.2)
    p.produce(topic, key="end", value="end")
    assert p.flush(30) == 0
    end = UPDATES + TOMBSTONES + 1
    expected = {k: v for k, v in latest.items() if v is not None}
    expected["end"] = "end"
    assert len(expected) == len(latest) - TOMBSTONES + 1

    deadline = time.time() + 90
    while True:
        got = read_confluent(b.bootstrap, topic)
        if len(got) == len(expected) or time.time() > deadline:
            break
        time.sleep(0.5)
    check(got, expected, "librdkafka")
    assert got[-1][0] == end - 1, "the log end offset does not move"
    assert got[0][0] >= 0

    check(read_kafka_python(b.bootstrap, topic, end), expected, "kafka-python")
    check(read_aiokafka(b.bootstrap, topic, end), expected, "aiokafka")

    # KafkaJS, in a consumer group: it reads every live key once and commits
    # the end of the log, past the gaps and the emptied batches.
    js = Path(__file__).resolve().parents[1] / "js" / "consume_group.js"
    out = subprocess.run([shutil.which("node"), str(js), b.bootstrap, topic, "compaction-js",
                          str(len(expected)), "60000"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    js_result = json.loads(out.stdout.strip().splitlines()[-1])
    assert js_result["read"] == js_result["unique"] == len(expected), js_result
    assert js_result["committed"] == {"0": str(end)}, js_result

    if have_kcat():
        out = subprocess.run(
            ["kcat", "-C", "-b", b.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
             "-f", "%o %k %s\n"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        rows = [line.split(" ", 2) for line in out.stdout.splitlines()]
        check([(int(o), k, v) for o, k, v in rows], expected, "kcat")

    # A restart keeps the cleaned log as it is.
    b.stop()
    b.start()
    check(read_confluent(b.bootstrap, topic), expected, "librdkafka after a restart")


def test_kill9_while_the_cleaner_runs_loses_no_latest_value(tmp_path):
    """The broker is killed at random moments while its cleaner rewrites and
    swaps segments (a pass every 10 ms); after each restart every key's
    latest value is there exactly once."""
    with running_broker(tmp_path, '"log.cleaner.backoff.ms" = 10\n') as b:
        topic = "compacted-kill"
        create_topic(b.bootstrap, topic, 1, {
            "cleanup.policy": "compact",
            "segment.bytes": str(32 * 1024),
            "min.cleanable.dirty.ratio": "0.01",
        })
        rng = random.Random(99)
        latest = {}
        for rnd in range(5):
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 2, "acks": "all"})
            produce_updates(p, topic, rng, 20_000, 300, f"{rnd}-", latest)
            assert p.flush(60) == 0
            time.sleep(rng.uniform(0.0, 0.4))
            b.kill9()
            b.start()
            got = read_confluent(b.bootstrap, topic)
            offsets = [o for o, _, _ in got]
            assert offsets == sorted(set(offsets)), f"round {rnd}: offsets once each, in order"
            last = {}
            for _, k, v in got:
                last[k] = v
            assert last == latest, f"round {rnd}: every key's latest value is the last one read"
            values = [v for _, _, v in got]
            for v in latest.values():
                assert values.count(v) == 1, f"round {rnd}: {v} read {values.count(v)} times"
        assert "cleaner" in b.log_path.read_text()


def test_a_compacted_topic_refuses_records_without_a_key(broker):
    from confluent_kafka import KafkaError

    create_topic(broker.bootstrap, "compacted-keys", 1, {"cleanup.policy": "compact"})
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "enable.idempotence": False})
    p.produce("compacted-keys", value=b"no key", on_delivery=lambda err, m: errors.append(err))
    p.flush(30)  # its own batch: the whole batch is refused
    p.produce("compacted-keys", key=b"k", value=b"keyed", on_delivery=lambda err, m: errors.append(err))
    assert p.flush(30) == 0
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    assert errors[1] is None
    got = read_confluent(broker.bootstrap, "compacted-keys")
    assert [(k, v) for _, k, v in got] == [("k", "keyed")]
