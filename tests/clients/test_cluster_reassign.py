"""Partition reassignment on four brokers, through kafka-python's admin
client and the Java Admin client (AlterPartitionReassignments,
ListPartitionReassignments).

While an idempotent acks=all producer writes, a partition moves from
brokers {1,2,3} to {2,3,4} and back: its Raft group adds the new replicas
as learners, catches them up, switches through a joint configuration and
drops the replicas leaving (their folders go). Nothing acknowledged is
lost, offsets stay dense, a consumer group reading meanwhile reads no
record twice and its commits never go back, and the time without a leader
is reported. A
reassignment that cannot finish (its new broker is down) is cancelled.
Bad requests get Kafka's errors and change nothing."""

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import (
    InvalidReplicationAssignmentError,
    KafkaError,
    NoReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)

from java_support import run_java

from cluster_support import GroupReader, Workload, assert_no_problems, check_acked, metadata, read_partitions, running_cluster

pytestmark = pytest.mark.timeout(300)

NODES = [1, 2, 3, 4]
TOPIC = "moving"
TP = TopicPartition(TOPIC, 0)


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, nodes=NODES) as c:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        fut = admin.create_topics([NewTopic(TOPIC, 2, replica_assignment=[[1, 2, 3], [1, 2, 3]])], operation_timeout=15)
        fut[TOPIC].result(30)
        for p in (0, 1):
            c.leader(TOPIC, p)
        yield c


def replicas(cluster, ask):
    md = metadata(cluster.port(ask), [TOPIC])
    return md["topics"][TOPIC]["partitions"][0]["replicas"]


def wait_replicas(cluster, want, timeout=60):
    """Until every live broker reports `want` as the partition's replicas
    and no reassignment is listed; returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    seen = None
    live = ",".join(f"127.0.0.1:{cluster.port(n)}" for n in cluster.live())
    admin = KafkaAdminClient(bootstrap_servers=live)
    try:
        while time.monotonic() < deadline:
            try:
                seen = ({n: replicas(cluster, n) for n in cluster.live()}, admin.list_partition_reassignments())
                if all(r == want for r in seen[0].values()) and not seen[1]:
                    return time.monotonic() - started
            except (OSError, AssertionError, KeyError, KafkaError) as e:
                seen = repr(e)
            time.sleep(0.2)
    finally:
        admin.close()
    raise AssertionError(f"replicas not {want} within {timeout}s: {seen}")


def leaderless_during(cluster, action):
    """Runs `action` while sampling the partition's leader (from broker 2,
    which holds a replica throughout); returns (result, longest time with
    no leader)."""
    import threading

    stop = threading.Event()
    worst = [0.0]

    def watch():
        since = None
        while not stop.is_set():
            try:
                leader = metadata(cluster.port(2), [TOPIC], timeout=1.0)["topics"][TOPIC]["partitions"][0]["leader"]
            except (OSError, AssertionError, KeyError):
                leader = -1
            now = time.monotonic()
            if leader < 0:
                since = since or now
                worst[0] = max(worst[0], now - since)
            else:
                since = None
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        out = action()
    finally:
        stop.set()
        t.join(5)
    return out, worst[0]


def test_a_partition_moves_to_another_broker_and_back_under_load(cluster, tmp_path):
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    w = Workload(cluster.bootstrap, [(TOPIC, 0), (TOPIC, 1)])
    w.start()
    reader = GroupReader(cluster.bootstrap, TOPIC, "movers")
    try:
        w.wait_acks(100, timeout=30)
        # Bad requests: Kafka's errors, nothing changes.
        bad = admin.alter_partition_reassignments({
            TP: [2, 3, 9],
            TopicPartition(TOPIC, 1): [2, 2, 3],
            TopicPartition(TOPIC, 7): [1, 2, 3],
        })
        assert bad[TP] is InvalidReplicationAssignmentError, bad
        assert bad[TopicPartition(TOPIC, 1)] is InvalidReplicationAssignmentError, bad
        assert bad[TopicPartition(TOPIC, 7)] is UnknownTopicOrPartitionError, bad
        assert admin.alter_partition_reassignments({TP: None}) == {TP: NoReassignmentInProgressError}
        assert admin.list_partition_reassignments() == {}
        assert replicas(cluster, 1) == [1, 2, 3]

        # To {2,3,4}: broker 4 gets a replica, broker 1 loses its own.
        def move(target):
            assert admin.alter_partition_reassignments({TP: target}) == {TP: None}
            return wait_replicas(cluster, target)

        took, leaderless = leaderless_during(cluster, lambda: move([2, 3, 4]))
        print(f"  moved to [2, 3, 4] in {took:.1f}s; longest without a leader {leaderless:.2f}s")
        w.wait_acks(50, timeout=30, since=time.monotonic(), target=(TOPIC, 0))
        gone = tmp_path / "node-1" / "data" / f"{TOPIC}-0"
        deadline = time.monotonic() + 10
        while gone.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not gone.exists(), "broker 1 still holds the partition it left"
        assert (tmp_path / "node-4" / "data" / f"{TOPIC}-0").exists()

        # And back, through the Java Admin client.
        def move_back():
            run = run_java("AdminChecks", "reassign", cluster.bootstrap, TOPIC, 0, "1,2,3", timeout=90)
            assert run.returncode == 0, run.report()
            reassigned, listed = run.lines
            assert reassigned["ok"], reassigned
            # Listed while under way ([replicas, adding, removing]), or done.
            assert listed["reassignments"] in ({}, {f"{TOPIC}-0": [[1, 2, 3, 4], [1], [4]]}), listed
            return wait_replicas(cluster, [1, 2, 3])

        took, leaderless = leaderless_during(cluster, move_back)
        print(f"  moved back to [1, 2, 3] in {took:.1f}s; longest without a leader {leaderless:.2f}s")
        # Back under the same Raft id, broker 1's new replica starts from
        # the term and vote its earlier one left (no second vote in a term).
        log = cluster.brokers[1].log_path.read_text(errors="replace").splitlines()
        assert any(f"group={TOPIC}-0 " in line and "the term and vote it left" in line for line in log)
        assert not (tmp_path / "node-1" / "data" / ".raft-votes" / f"{TOPIC}-0").exists(), "taken up, then forgotten"
        w.wait_acks(50, timeout=30, since=time.monotonic(), target=(TOPIC, 0))

        # A move that cannot finish (its new broker is down) is cancelled.
        cluster.kill9(4)
        admin.close()
        # Once fenced, broker 4 is out of Metadata: kafka-python's admin
        # client then never tries to reach it.
        deadline = time.monotonic() + 30
        while 4 in metadata(cluster.port(1))["brokers"]:
            assert time.monotonic() < deadline, "broker 4 not fenced"
            time.sleep(0.2)
        admin = KafkaAdminClient(bootstrap_servers=",".join(f"127.0.0.1:{cluster.port(n)}" for n in (1, 2, 3)))
        assert admin.alter_partition_reassignments({TP: [2, 3, 4]}) == {TP: None}
        listed = admin.list_partition_reassignments()
        assert listed == {TP: {"replicas": [2, 3, 4, 1], "adding_replicas": [4], "removing_replicas": [1]}}, listed
        time.sleep(2)
        assert admin.list_partition_reassignments() == listed, "the move finished without its new broker"
        assert admin.alter_partition_reassignments({TP: None}) == {TP: None}
        wait_replicas(cluster, [1, 2, 3])
        cluster.start([4])
        w.wait_acks(50, timeout=30, since=time.monotonic(), target=(TOPIC, 0))
    finally:
        w.stop()
        admin.close()
        time.sleep(2)  # the group reads the last records
        reader.stop()
    print("  " + w.summary())
    committed = reader.check()
    print(f"  the group read {reader.read} records, committed {committed}; errors {dict(reader.errors)}")
    assert reader.read > len(w.acks) // 2, "the group kept reading through the moves"
    assert not w.fatal, w.fatal
    assert_no_problems(check_acked(w, TOPIC, 2))
    offsets = [o for o, _, _ in read_partitions(cluster.bootstrap, TOPIC, 1)[0]]
    assert offsets == list(range(len(offsets))), "offsets stay dense through the moves"
