"""Many partitions on one broker, within the open-file limit it is given
(issue: each segment used to hold three files and three memory maps open
for as long as the broker ran).

The broker runs with a hard open-file limit far below its partition count,
so it can only serve them by closing idle segment files and reopening them
on use; every partition is written, read back, and read back again after a
restart. A CreateTopics that fails midway leaves no folder behind, and a
topic whose creation a crash cut short is gone after the restart."""

import json
import os
import resource
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

PARTITIONS = 1500
HARD_LIMIT = 256


def limit_open_files(soft, hard):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def read_one_from_each(bootstrap, topic, n):
    """The record at offset 0 of every partition."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, i, 0) for i in range(n)])
    got = {}
    deadline = time.time() + 90
    while len(got) < n and time.time() < deadline:
        for m in c.consume(500, 1):
            assert m.error() is None, m.error()
            if m.offset() == 0:
                assert m.partition() not in got, f"partition {m.partition()} read twice"
                got[m.partition()] = m.value()
    c.close()
    return got


def test_more_partitions_than_open_files(tmp_path):
    b = Broker(tmp_path)
    # Soft below hard: the broker raises it; the hard limit it cannot pass.
    b.preexec_fn = limit_open_files(64, HARD_LIMIT)
    b.start()
    try:
        assert soft_limit(b.proc.pid) == HARD_LIMIT
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("wide", PARTITIONS, 1)])["wide"].result(60)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
        for i in range(PARTITIONS):
            p.produce("wide", value=b"record-%d" % i, partition=i)
            p.poll(0)
        assert p.flush(60) == 0
        assert open_files(b.proc.pid) <= HARD_LIMIT

        got = read_one_from_each(b.bootstrap, "wide", PARTITIONS)
        assert got == {i: b"record-%d" % i for i in range(PARTITIONS)}
        assert open_files(b.proc.pid) <= HARD_LIMIT

        b.stop(timeout=120)
        b.start(timeout=120)
        # Appends after the restart land after what was there.
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
        for i in range(0, PARTITIONS, 7):
            p.produce("wide", value=b"again-%d" % i, partition=i)
        assert p.flush(60) == 0
        got = read_one_from_each(b.bootstrap, "wide", PARTITIONS)
        assert got == {i: b"record-%d" % i for i in range(PARTITIONS)}
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "tail"})
        c.assign([TopicPartition("wide", 700, 1)])
        m = c.poll(20)
        assert m is not None and m.error() is None and m.value() == b"again-700"
        c.close()
        assert open_files(b.proc.pid) <= HARD_LIMIT
    finally:
        b.kill9()


def folders(data_dir, topic):
    return sorted(p.name for p in data_dir.iterdir() if p.name.startswith(topic + "-"))


def test_failed_create_topics_leaves_no_folders(tmp_path):
    b = Broker(tmp_path)
    b.start()
    try:
        # A file where partition 5's folder must go makes creation fail there.
        (b.data_dir / "blocked-5").write_text("not a folder")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        fut = admin.create_topics([NewTopic("blocked", 10, 1)])["blocked"]
        try:
            fut.result(30)
            raise AssertionError("CreateTopics succeeded over a blocking file")
        except KafkaException as e:
            assert e.args[0].name() == "KAFKA_STORAGE_ERROR", e
        assert folders(b.data_dir, "blocked") == ["blocked-5"]
        md = admin.list_topics(timeout=10)
        assert "blocked" not in md.topics
        b.stop()
        b.start()
        md = admin.list_topics(timeout=10)
        assert "blocked" not in md.topics
        assert folders(b.data_dir, "blocked") == ["blocked-5"]
        # With the obstacle gone the same name is created whole.
        (b.data_dir / "blocked-5").unlink()
        admin.create_topics([NewTopic("blocked", 10, 1)])["blocked"].result(30)
        assert len(folders(b.data_dir, "blocked")) == 10
    finally:
        b.kill9()


def test_creation_cut_short_by_a_crash_is_undone_at_start(tmp_path):
    b = Broker(tmp_path)
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("kept", 2, 1)])["kept"].result(30)
        b.stop()
        # What a crash between the intent and the end leaves: the topic
        # marked `creating` in the metadata file, some of its folders made.
        meta_path = b.data_dir / "cluster-metadata.json"
        meta = json.loads(meta_path.read_text())
        half = dict(meta["topics"]["kept"], creating=True, partitions=4)
        meta["topics"]["half"] = half
        meta_path.write_text(json.dumps(meta))
        for i in range(2):
            (b.data_dir / f"half-{i}").mkdir()
        b.start()
        md = admin.list_topics(timeout=10)
        assert "half" not in md.topics
        assert "kept" in md.topics and len(md.topics["kept"].partitions) == 2
        assert folders(b.data_dir, "half") == []
        assert "half" not in json.loads(meta_path.read_text())["topics"]
    finally:
        b.kill9()
