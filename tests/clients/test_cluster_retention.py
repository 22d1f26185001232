"""What a replica deletes from its own log, under failover, on three brokers
(Raft replication factor 3), seen by real clients.

- DeleteRecords (librdkafka's AdminClient) moves the log start on every
  replica through Raft before it answers: after the leader is killed, and
  again after the next one is, the new leader's earliest offset is still the
  deleted-up-to offset, and a consumer reading from the start gets exactly
  the acknowledged records from there on.
- Retention deletes old segments on each replica by itself; a replica that
  was down while its leader's retention removed what it still lacked
  installs the leader's snapshot on its return (its own older segments are
  dropped) and, made the leader, serves exactly what the others serve."""

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from cluster_support import NODES, Cluster, Workload, consume_to

pytestmark = pytest.mark.timeout(180)

RETENTION_CHECKS = '"log.retention.check.interval.ms" = 200\n'


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, config=RETENTION_CHECKS)
    try:
        c.start()
        yield c
        crashed = c.crashed()
        assert not crashed, f"brokers exited on their own: {crashed}"
    finally:
        c.shutdown()


def read_from_start(bootstrap, topic):
    """(earliest offset, [(offset, value)] up to the end) with a fresh
    librdkafka consumer starting at the beginning."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "retention-checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
                break
            except Exception:
                assert time.time() < deadline, "no watermarks within 30 s"
                time.sleep(0.2)
        # Offset 0 may be gone: the consumer resets to the earliest.
        c.assign([TopicPartition(topic, 0, 0)])
        return low, [(m.offset(), m.value()) for m in consume_to(c, high, deadline)]
    finally:
        c.close()


def expect_from(w, topic, start):
    """The acknowledged (offset, value)s of `topic` at or above `start`."""
    return sorted((a.offset, a.value) for a in w.acks if a.topic == topic and a.offset is not None and a.offset >= start)


def test_delete_records_holds_on_every_replica_after_failovers(cluster):
    topic = "trimmed"
    cluster.create_topic(topic, 1, 3)
    w = Workload(cluster.bootstrap, [(topic, 0)])
    w.start()
    try:
        w.wait_acks(2000, timeout=30)
    finally:
        w.stop()
    cut = max(a.offset for a in w.acks) // 2
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    fut = admin.delete_records([TopicPartition(topic, 0, cut)], request_timeout=10, operation_timeout=10)
    deleted = fut[TopicPartition(topic, 0, cut)].result(timeout=20)
    assert deleted.low_watermark == cut, deleted
    print(f"  {len(w.acks)} acknowledged; DeleteRecords up to {cut}")

    def read():
        return read_from_start(cluster.bootstrap, topic)

    # Each replica leads in turn (the leader before it killed each time).
    first, _ = cluster.leader(topic, 0)
    order = [n for n in NODES if n != first] + [first]
    for target, (low, records) in cluster.read_under_each_leader(topic, 0, order, w.probe, read):
        want = expect_from(w, topic, cut)
        print(f"  broker {target} leads: earliest {low}, {len(records)} records")
        assert low == cut, f"broker {target}: earliest offset {low}, records were deleted up to {cut}"
        assert [v for _, v in records] == [v for _, v in want], (
            f"broker {target} serves {len(records)} records from {records[:1]}, expected the {len(want)} "
            f"acknowledged from {cut}"
        )


def test_a_replica_behind_retention_installs_the_snapshot_and_serves_the_same(cluster):
    topic = "expiring"
    cluster.create_topic(topic, 1, 3, config={"retention.ms": "3000", "segment.bytes": "16384"})
    leader, _ = cluster.leader(topic, 0)
    behind = next(n for n in NODES if n != leader)
    w = Workload(cluster.bootstrap, [(topic, 0)])
    w.start()
    try:
        w.wait_acks(1000, timeout=30)
        cluster.kill9(behind)
        t0 = time.monotonic()
        w.wait_acks(3000, timeout=30)
        # Retention on the two left deletes what `behind` still lacks.
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))
    finally:
        w.stop()
    assert not w.failed, f"writes failed: {dict(w.failed)}"
    cluster.start([behind])
    deadline = time.time() + 20
    log = cluster.brokers[behind].log_path
    while "installed a raft snapshot" not in log.read_text(errors="replace"):
        assert time.time() < deadline, f"broker {behind} never installed a snapshot"
        time.sleep(0.2)
    # From here on retention keeps everything, so that every leader has the
    # same to serve.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=20)

    def read():
        return read_from_start(cluster.bootstrap, topic)

    views = {}
    order = [behind] + [n for n in NODES if n != behind]
    for target, (low, records) in cluster.read_under_each_leader(topic, 0, order, w.probe, read):
        want = expect_from(w, topic, low)
        print(f"  broker {target} leads: earliest {low}, {len(records)} records")
        assert low > 0, f"broker {target}: retention deleted nothing"
        assert [v for _, v in records] == [v for _, v in want], (
            f"broker {target}: {len(records)} records from {low}, expected the {len(want)} acknowledged from there"
        )
        views[target] = low
    assert len(views) == 3
