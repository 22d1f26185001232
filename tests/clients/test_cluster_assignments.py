"""Explicit replica assignments in a three-broker cluster: CreateTopics and
CreatePartitions place replicas as the client lists them (the first replica
is the preferred leader and takes leadership), and bad lists (an unknown or
fenced broker, a broker twice, lists of different lengths, an assignment
together with num_partitions) get Kafka's error codes and create nothing.

The bad requests go out raw (CreateTopics v4, CreatePartitions v1) since
librdkafka refuses some of them before sending. (librdkafka wants the
partition count along with an assignment, and sends -1 for it.)"""

import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from cluster_support import NODES, kafka_call, metadata, running_cluster

pytestmark = pytest.mark.timeout(150)

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_PARTITIONS = 37
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_REQUEST = 42


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path) as c:
        yield c


# -- raw requests -------------------------------------------------------------


def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _ints(xs):
    return struct.pack(">i", len(xs)) + b"".join(struct.pack(">i", x) for x in xs)


def create_topics_raw(port, name, assignment, partitions=-1, rf=-1, validate_only=False):
    """CreateTopics v4 for one topic; returns (error code, message)."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">ih", partitions, rf)
    body += struct.pack(">i", len(assignment))
    for i, replicas in enumerate(assignment):
        body += struct.pack(">i", i) + _ints(replicas)
    body += struct.pack(">i", 0)  # configs
    body += struct.pack(">ib", 10000, 1 if validate_only else 0)
    r = kafka_call(port, 19, 4, body, timeout=15)
    r.i32()  # throttle
    (result,) = r.array(lambda: (r.string(), r.i16(), r.string()))
    assert result[0] == name
    return result[1], result[2]


def create_partitions_raw(port, name, total, assignment, validate_only=False):
    """CreatePartitions v1 for one topic; returns (error code, message)."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">i", total)
    body += struct.pack(">i", len(assignment)) + b"".join(_ints(a) for a in assignment)
    body += struct.pack(">ib", 10000, 1 if validate_only else 0)
    r = kafka_call(port, 37, 1, body, timeout=15)
    r.i32()  # throttle
    (result,) = r.array(lambda: (r.string(), r.i16(), r.string()))
    assert result[0] == name
    return result[1], result[2]


# -- helpers --------------------------------------------------------------------


def replicas_everywhere(cluster, topic, expected, timeout=20.0):
    """Waits until every broker's Metadata lists `expected` (one replica list
    per partition, in order)."""
    deadline = time.time() + timeout
    seen = {}
    while time.time() < deadline:
        seen = {}
        for n in NODES:
            t = metadata(cluster.port(n), [topic])["topics"].get(topic)
            if t and t["error"] == 0:
                seen[n] = [t["partitions"][p]["replicas"] for p in sorted(t["partitions"])]
        if all(seen.get(n) == expected for n in NODES):
            return
        time.sleep(0.1)
    raise AssertionError(f"{topic}: expected replicas {expected}, brokers say {seen}")


def preferred_leads(cluster, topic, assignment, timeout=20.0):
    """Each partition's leader becomes its first replica (the preferred one)."""
    deadline = time.time() + timeout
    for p, replicas in enumerate(assignment):
        while True:
            leader, _ = cluster.leader(topic, p, timeout=max(deadline - time.time(), 1.0))
            if leader == replicas[0]:
                break
            assert time.time() < deadline, f"{topic}-{p} led by {leader}, not its first replica {replicas[0]}"
            time.sleep(0.1)


def produce_and_read(cluster, topic, partitions, n=20):
    """acks=all records to each partition, then read back in order."""
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    failures = []
    sent = {part: [f"{topic}-{part}-{i}".encode() for i in range(n)] for part in partitions}
    for part, values in sent.items():
        for v in values:
            p.produce(topic, v, partition=part, on_delivery=lambda e, m: e and failures.append(e))
    assert p.flush(30) == 0, "undelivered records"
    assert not failures, failures
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    try:
        for part, values in sent.items():
            c.assign([TopicPartition(topic, part, 0)])
            got = []
            deadline = time.time() + 30
            while len(got) < len(values) and time.time() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    got.append(m.value())
            assert got == values, f"{topic}-{part}: read {got}"
    finally:
        c.close()


def absent(cluster, topic):
    for n in NODES:
        t = metadata(cluster.port(n), [topic])["topics"][topic]
        assert t["error"] == UNKNOWN_TOPIC_OR_PARTITION, f"broker {n} knows {topic}: {t}"


def partition_count(cluster, topic):
    counts = {len(metadata(cluster.port(n), [topic])["topics"][topic]["partitions"]) for n in NODES}
    assert len(counts) == 1, counts
    return counts.pop()


# -- tests ----------------------------------------------------------------------


def test_create_topic_with_an_explicit_assignment(cluster):
    assignment = [[2, 3, 1], [3, 1, 2], [1, 2, 3], [2, 1, 3]]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    fut = admin.create_topics([NewTopic("placed", len(assignment), replica_assignment=assignment)], operation_timeout=15)
    fut["placed"].result(timeout=30)
    replicas_everywhere(cluster, "placed", assignment)
    preferred_leads(cluster, "placed", assignment)
    produce_and_read(cluster, "placed", range(len(assignment)))


def test_create_topic_with_fewer_replicas_than_brokers(cluster):
    assignment = [[3], [3], [1]]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("narrow", len(assignment), replica_assignment=assignment)])["narrow"].result(timeout=30)
    replicas_everywhere(cluster, "narrow", assignment)
    preferred_leads(cluster, "narrow", assignment)
    produce_and_read(cluster, "narrow", range(len(assignment)), n=5)


def test_create_partitions_with_an_explicit_assignment(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("grown", 1, replica_assignment=[[1, 2, 3]])])["grown"].result(timeout=30)
    added = [[3, 2, 1], [2, 3, 1]]
    fut = admin.create_partitions([NewPartitions("grown", new_total_count=3, replica_assignment=added)])
    fut["grown"].result(timeout=30)
    replicas_everywhere(cluster, "grown", [[1, 2, 3]] + added)
    preferred_leads(cluster, "grown", [[1, 2, 3]] + added)
    produce_and_read(cluster, "grown", range(3))


def test_bad_topic_assignments_are_refused_and_create_nothing(cluster):
    port = cluster.port(1)
    cases = [
        ("unknown-broker", [[1, 2, 9], [2, 3, 1]], -1, -1, INVALID_REPLICA_ASSIGNMENT),
        ("twice", [[1, 2, 2]], -1, -1, INVALID_REPLICA_ASSIGNMENT),
        ("uneven", [[1, 2, 3], [2, 3]], -1, -1, INVALID_REPLICA_ASSIGNMENT),
        ("empty-list", [[1, 2], []], -1, -1, INVALID_REPLICA_ASSIGNMENT),
        ("with-count", [[1, 2, 3]], 1, -1, INVALID_REQUEST),
        ("with-rf", [[1, 2, 3]], -1, 3, INVALID_REQUEST),
    ]
    for name, assignment, partitions, rf, code in cases:
        for validate_only in (True, False):
            got, message = create_topics_raw(port, name, assignment, partitions, rf, validate_only)
            assert got == code, f"{name} (validate_only={validate_only}): {got} {message}"
            assert message, name
        absent(cluster, name)

    # A good assignment under validate_only passes and creates nothing.
    assert create_topics_raw(port, "checked", [[3, 1, 2]], validate_only=True) == (NONE, None)
    absent(cluster, "checked")

    # librdkafka's own path gets the same answer.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic("via-admin", 1, replica_assignment=[[1, 9]])])["via-admin"].result(timeout=30)
    assert e.value.args[0].code() == INVALID_REPLICA_ASSIGNMENT
    absent(cluster, "via-admin")


def test_bad_partition_assignments_are_refused_and_add_nothing(cluster):
    port = cluster.port(2)
    assert create_topics_raw(port, "fixed", [[1, 2, 3], [2, 3, 1]])[0] == NONE
    replicas_everywhere(cluster, "fixed", [[1, 2, 3], [2, 3, 1]])
    cases = [
        ("unknown broker", 3, [[1, 2, 9]], INVALID_REPLICA_ASSIGNMENT),
        ("broker twice", 3, [[1, 1, 2]], INVALID_REPLICA_ASSIGNMENT),
        ("shorter than the rf", 3, [[1, 2]], INVALID_REPLICA_ASSIGNMENT),
        ("too few lists", 4, [[1, 2, 3]], INVALID_REPLICA_ASSIGNMENT),
        ("too many lists", 3, [[1, 2, 3], [3, 2, 1]], INVALID_REPLICA_ASSIGNMENT),
        ("not growing", 2, [], INVALID_PARTITIONS),
    ]
    for what, total, assignment, code in cases:
        for validate_only in (True, False):
            got, message = create_partitions_raw(port, "fixed", total, assignment, validate_only)
            assert got == code, f"{what} (validate_only={validate_only}): {got} {message}"
        assert partition_count(cluster, "fixed") == 2, what
    assert create_partitions_raw(port, "fixed", 3, [[3, 1, 2]], validate_only=True) == (NONE, None)
    assert partition_count(cluster, "fixed") == 2


def test_a_fenced_broker_gets_no_assigned_replicas(cluster):
    """Once the controller fences a stopped broker (broker.session.timeout.ms,
    9 s by default), assignments naming it are refused."""
    cluster.kill9(3)
    port = cluster.port(1)
    deadline = time.time() + 40
    while True:
        code, message = create_topics_raw(port, "on-fenced", [[1, 3]], validate_only=True)
        if code == INVALID_REPLICA_ASSIGNMENT:
            assert "fenced" in message, message
            break
        assert code == NONE, (code, message)
        assert time.time() < deadline, "broker 3 was never fenced"
        time.sleep(0.5)
    for n in (1, 2):
        t = metadata(cluster.port(n), ["on-fenced"])["topics"]["on-fenced"]
        assert t["error"] == UNKNOWN_TOPIC_OR_PARTITION
    # The live brokers still take an assignment.
    assert create_topics_raw(port, "on-live", [[2, 1]])[0] == NONE


def test_single_broker_takes_only_itself(broker):
    node = next(iter(metadata(broker.port)["brokers"]))
    code, _ = create_topics_raw(broker.port, "mine", [[node], [node]])
    assert code == NONE
    code, message = create_topics_raw(broker.port, "theirs", [[node + 1]])
    assert code == INVALID_REPLICA_ASSIGNMENT, message
    assert "the only broker" in message
    assert create_partitions_raw(broker.port, "mine", 3, [[node]]) == (NONE, None)
    assert create_partitions_raw(broker.port, "mine", 4, [[node + 1]])[0] == INVALID_REPLICA_ASSIGNMENT
