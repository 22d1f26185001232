"""A compacted topic on three brokers (Raft replication factor 3) under
failover, read by a real client from every replica in turn.

Each broker's log cleaner runs every 100 ms on small segments with a low
dirty ratio and a short delete.retention.ms, so replicas compact their logs
independently and often. An idempotent librdkafka producer (acks=all) writes
keyed updates and tombstones. The partition leader is killed with kill -9
under that load; while it is down some keys are deleted and the survivors'
cleaners run; it comes back, catches up and leads again. Then each broker is
made the leader in turn (the current leader killed while the third broker is
briefly cut off, so only the chosen one can win the election), and after
every leader change the whole partition is read from offset 0 by a fresh
librdkafka consumer: for every key the latest acknowledged record is the one
read (a deleted key is absent or still a tombstone), every time, on every
replica.

A broker that missed a key's tombstone used to receive its leader's cleaned
log without it and keep the key's older value; once it led, readers saw a
deleted key again (docs/ARCHITECTURE.md, "Compaction on replicated logs")."""

import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster_support import NODES, Cluster, consume_to, failover_producer_config

pytestmark = pytest.mark.timeout(240)

TOPIC = "user-state"
CLEANER = '"log.cleaner.backoff.ms" = 100\n'
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": "16384",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "300",
    "min.insync.replicas": "2",
}


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, config=CLEANER)
    try:
        try:
            c.start()
            c.create_topic(TOPIC, 1, 3, config=TOPIC_CONFIG)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        yield c
        crashed = c.crashed()
        assert not crashed, f"brokers exited on their own: {crashed}"
    finally:
        c.shutdown()


class KeyedWriter:
    """An idempotent acks=all producer of keyed records; remembers, per key,
    the acknowledged record with the highest offset, and every value sent
    (an unacknowledged write may still be in the log)."""

    def __init__(self, bootstrap):
        self.p = Producer(failover_producer_config(bootstrap))
        self.lock = threading.Lock()
        self.latest = {}  # key -> (offset, value or None)
        self.sent = set()
        self.acked = 0
        self.failed = 0
        self.n = 0

    def _report(self, err, msg):
        with self.lock:
            if err is not None:
                self.failed += 1
                return
            self.acked += 1
            k, o = msg.key(), msg.offset()
            if k not in self.latest or self.latest[k][0] < o:
                self.latest[k] = (o, msg.value())

    def put(self, key: bytes, delete=False):
        self.n += 1
        value = None if delete else b"%s=%d" % (key, self.n)
        with self.lock:
            self.sent.add((key, value))
        while True:
            try:
                self.p.produce(TOPIC, key=key, value=value, partition=0, on_delivery=self._report)
                return
            except BufferError:
                self.p.poll(0.01)

    def flush(self):
        left = self.p.flush(60)
        assert left == 0, f"{left} records neither acknowledged nor failed after 60 s"


def keys(prefix, n):
    return [b"%s-%04d" % (prefix, i) for i in range(n)]


LIVE = keys(b"user", 200)
DOOMED = keys(b"erased", 60)


def background_updates(w, stop):
    rng = random.Random(7)
    while not stop.is_set():
        for _ in range(20):
            w.put(rng.choice(LIVE))
        w.p.poll(0.005)


def read_latest(bootstrap):
    """The latest record of every key, read with a fresh librdkafka consumer
    from offset 0 to the end: {key: (offset, value)}, and how many records
    were read."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compaction-checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=5)[1]
                break
            except Exception:
                assert time.time() < deadline, "no watermarks within 30 s"
                time.sleep(0.2)
        c.assign([TopicPartition(TOPIC, 0, 0)])
        latest, n = {}, 0
        for m in consume_to(c, high, deadline):
            latest[m.key()] = (m.offset(), m.value())
            n += 1
        return latest, n
    finally:
        c.close()


def check(w, reader, got):
    """Every key's latest acknowledged record is what a reader saw while
    broker `reader` led (read with no write in flight)."""
    got, n = got
    problems = []
    for k, (o, v) in w.latest.items():
        g = got.get(k)
        if g is None:
            if v is not None:
                problems.append(f"{k!r}: acknowledged {v!r} at {o}, key absent")
        elif g[0] < o:
            problems.append(f"{k!r}: acknowledged {v!r} at {o}, read the older {g[1]!r} at {g[0]}")
        elif g[0] == o and g[1] != v:
            problems.append(f"{k!r}: acknowledged {v!r} at {o}, read {g[1]!r} there")
        elif g[0] > o and (k, g[1]) not in w.sent:
            problems.append(f"{k!r}: read {g[1]!r} at {g[0]}, never written")
    for k in got.keys() - w.latest.keys():
        if (k, got[k][1]) not in w.sent:
            problems.append(f"{k!r}: read {got[k][1]!r}, never written")
    deleted = sum(1 for k in DOOMED if k not in got or got[k][1] is None)
    print(f"  read from broker {reader}: {n} records, {len(got)} keys, "
          f"{deleted} of {len(DOOMED)} erased keys absent or tombstoned; {len(problems)} problems")
    assert not problems, f"reading from broker {reader}: {len(problems)} problems:\n" + "\n".join(problems[:15])


def write_and_flush(w, ks):
    for k in ks:
        w.put(k)
    w.flush()


def test_compacted_topic_keeps_every_latest_value_through_failovers(cluster):
    w = KeyedWriter(cluster.bootstrap)
    for _ in range(3):
        write_and_flush(w, LIVE + DOOMED)
    first, epoch = cluster.leader(TOPIC, 0)
    print(f"  {first} leads (epoch {epoch}); {w.acked} records acknowledged")

    # kill -9 of the leader while updates stream in.
    stop = threading.Event()
    t = threading.Thread(target=background_updates, args=(w, stop), daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        cluster.kill9(first)
        survivors = [n for n in NODES if n != first]
        new, _, waited = cluster.wait_new_leader(TOPIC, 0, first, survivors)
        print(f"  killed {first}; {new} leads after {waited:.2f}s")
        # While it is down: the erased keys get their tombstones, and the
        # survivors' cleaners have seconds, far past delete.retention.ms.
        for k in DOOMED:
            w.put(k, delete=True)
        time.sleep(5.0)
    finally:
        stop.set()
        t.join(10)
    w.flush()
    print(f"  {w.acked} acknowledged, {w.failed} failed so far")
    assert all(w.latest[k][1] is None for k in DOOMED), "every erasure acknowledged"

    # Back, caught up, and leading again (it is the preferred replica: a
    # preferred election gives the leadership back).
    cluster.start([first])
    cluster.elect_preferred(TOPIC, 0)

    def read():
        return read_latest(cluster.bootstrap)

    deadline = time.time() + 30
    while True:
        time.sleep(1.0)  # several cleaner passes on every broker
        got = cluster.while_leading(TOPIC, 0, first, read)
        if got is not None:
            break
        assert time.time() < deadline, f"{first} did not take its leadership back"
    check(w, first, got)

    # Each broker leads in turn; every one serves the same latest values.
    served = {first}
    order = [n for n in NODES if n != first]
    for target, got in cluster.read_under_each_leader(
        TOPIC, 0, order, lambda: write_and_flush(w, LIVE[:20]), read
    ):
        check(w, target, got)
        served.add(target)
    assert served == set(NODES)
    assert w.failed == 0, f"{w.failed} writes failed"
