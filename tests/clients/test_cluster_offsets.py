"""Dense offsets: Kafka offsets count records, on one broker and in a
cluster, whatever Raft does underneath.

In a cluster each partition's log is its Raft log, and Raft writes entries
of its own (a new leader's empty entry, configuration changes, DeleteRecords
commands). They hold a place in the log but take no Kafka offset, so a
fresh partition's first record is at offset 0 and leader changes leave no
holes. The tests do the offset arithmetic applications do: the first
record is at 0, offset n is the (n+1)-th record, lag = end - committed,
ListOffsets by time finds the first record at or after it."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from cluster_support import (
    NODES,
    running_cluster,
    Workload,
    assert_no_problems,
    check_acked,
    read_partitions,
)
from conftest import create_topic, running_broker

pytestmark = pytest.mark.timeout(240)


def produce_numbered(bootstrap, topic, n, first=0, partition=0):
    """`n` records, one request each (so each is its own batch), acks=all:
    returns the offsets the delivery reports gave, in order."""
    got = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "message.timeout.ms": 30000})

    def report(err, msg):
        assert err is None, err
        got.append(msg.offset())

    for i in range(first, first + n):
        p.produce(topic, value=f"record-{i}".encode(), partition=partition, timestamp=1_700_000_000_000 + i * 1000,
                  on_delivery=report)
        p.flush(30)
    return got


def arithmetic(bootstrap, topic):
    """What applications rely on, on a partition holding records 0..9 then
    10..19 (produced by the caller around whatever happened in between)."""
    # Offset n is the (n+1)-th record.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "arith-seek", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 1)])
        deadline = time.time() + 30
        first = None
        while first is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m
        assert first is not None, "nothing read from offset 1"
        assert (first.offset(), first.value()) == (1, b"record-1"), "offset 1 is the second record"
        # ListOffsets by time: the first record at or after it.
        for i in (0, 7, 15):
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, 1_700_000_000_000 + i * 1000 - 1)], timeout=10)
            assert tp.offset == i, f"by time: record {i} is at offset {i}, got {tp.offset}"
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (0, 20), "20 records take offsets 0..19"
    finally:
        c.close()
    # A group that reads everything and commits has lag 0.
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "arith-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        c.subscribe([topic])
        seen = []
        deadline = time.time() + 60
        while len(seen) < 20 and time.time() < deadline:
            for m in c.consume(num_messages=100, timeout=0.5):
                if not m.error():
                    seen.append((m.offset(), m.value()))
        assert seen == [(i, f"record-{i}".encode()) for i in range(20)], seen
        c.commit(asynchronous=False)
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert high - tp.offset == 0, f"lag {high - tp.offset} (end {high}, committed {tp.offset})"
    finally:
        c.close()


def test_offset_arithmetic_on_one_broker(tmp_path):
    with running_broker(tmp_path) as b:
        create_topic(b.bootstrap, "arith", 1)
        assert produce_numbered(b.bootstrap, "arith", 10) == list(range(10))
        assert produce_numbered(b.bootstrap, "arith", 10, first=10) == list(range(10, 20))
        arithmetic(b.bootstrap, "arith")


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path) as c:
        yield c


def test_offset_arithmetic_in_a_cluster_across_leader_changes(cluster):
    """A fresh RF 3 partition starts at 0; leader changes between the two
    halves of the records leave no hole."""
    cluster.create_topic("arith", 1, 3)
    assert produce_numbered(cluster.bootstrap, "arith", 10) == list(range(10))
    for _ in range(2):
        old, _ = cluster.leader("arith", 0)
        cluster.kill9(old)
        cluster.wait_new_leader("arith", 0, old, [n for n in NODES if n != old])
        cluster.start([old])
        cluster.leader("arith", 0)
    assert produce_numbered(cluster.bootstrap, "arith", 10, first=10) == list(range(10, 20))
    arithmetic(cluster.bootstrap, "arith")


def test_offsets_stay_dense_through_ten_leader_kills_under_load(cluster):
    """An idempotent acks=all producer writes to two RF 3 partitions while
    the leader of one is killed (kill -9) and restarted ten times. Every
    acknowledged record is there once at the offset it was acknowledged
    at, and each partition's offsets run 0, 1, 2, ... with no gap."""
    cluster.create_topic("dense", 2, 3)
    targets = [("dense", 0), ("dense", 1)]
    w = Workload(cluster.bootstrap, targets)
    w.start()
    changes = 0
    try:
        w.wait_acks(100, timeout=20)
        for round_ in range(10):
            partition = round_ % 2
            old, old_epoch = cluster.leader("dense", partition)
            cluster.kill9(old)
            new, epoch, leaderless = cluster.wait_new_leader("dense", partition, old, [n for n in NODES if n != old])
            assert epoch > old_epoch
            changes += 1
            w.wait_acks(20, timeout=20, since=time.monotonic(), target=("dense", partition))
            cluster.start([old])
            cluster.leader("dense", partition)
            print(f"  round {round_}: killed {old} (epoch {old_epoch}), {new} led after {leaderless:.2f}s (epoch {epoch})")
        w.wait_acks(50, timeout=20, since=time.monotonic())
    finally:
        w.stop()
    print("  " + w.summary())
    assert not w.fatal, w.fatal
    assert w.idempotent, "the idempotent producer fell back: duplicates would hide holes"
    assert_no_problems(check_acked(w, "dense", 2))
    logs = read_partitions(cluster.bootstrap, "dense", 2)
    for p, log in logs.items():
        offsets = [o for o, _, _ in log]
        epochs = sorted({e for _, _, e in log})
        assert offsets == list(range(len(offsets))), (
            f"dense-{p}: offsets are not 0..{len(offsets) - 1}: first gaps at "
            f"{[(a, b) for a, b in zip(offsets, offsets[1:]) if b != a + 1][:5]}"
        )
        assert len(epochs) > 2, f"dense-{p}: records of only epochs {epochs}"
        print(f"  dense-{p}: {len(offsets)} records at offsets 0..{len(offsets) - 1}, epochs {epochs}")
    # The end offset is the record count: a group that read it all has lag 0.
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "dense-readers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.subscribe(["dense"])
        eof = set()
        deadline = time.time() + 60
        while len(eof) < 2 and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() and m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
        assert eof == {0, 1}, "read both partitions to their end"
        c.commit(asynchronous=False)
        for tp in c.committed([TopicPartition("dense", 0), TopicPartition("dense", 1)], timeout=10):
            _, high = c.get_watermark_offsets(tp, timeout=10)
            assert high == len(logs[tp.partition]), f"end offset {high} = record count {len(logs[tp.partition])}"
            assert high - tp.offset == 0, f"dense-{tp.partition}: lag {high - tp.offset}"
    finally:
        c.close()
