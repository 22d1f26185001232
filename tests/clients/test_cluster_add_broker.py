"""A broker that is not a controller voter joins a running cluster.

Three brokers form the controller quorum; a fourth starts later with the
same `--controller-voters` list, its own `--node-id` and `--internal-listen`
and `process.roles = "broker"` (Kafka's name). It registers, the active
controller makes it a learner of the metadata log, and from then on it is a
broker like the others: DescribeCluster lists it, new topics place replicas
and leaderships on it, clients that only know its address produce and
consume through it, a partition is moved onto it (AlterPartitionReassignments)
and a preferred election makes it the leader. After a kill -9 and a restart
it comes back with its data. Then it is removed: UnregisterBroker (Java
Admin client) is refused while it holds replicas; once they are all moved
off and it is stopped, it is unregistered and gone from DescribeCluster. A node that calls itself a broker only but is
listed among the voters, or that has no internal listener, refuses to
start."""

import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from cluster_support import Cluster, metadata, wait_for
from conftest import Broker
from java_support import run_java

pytestmark = pytest.mark.timeout(240)

BROKER_ONLY = 'process.roles = "broker"\n'


def described_brokers(cluster, via):
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{cluster.port(via)}")
    try:
        return sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
    finally:
        admin.close()


def test_a_broker_that_does_not_vote_joins_and_takes_load(tmp_path):
    c = Cluster(tmp_path, nodes=[1, 2, 3, 4], voters=[1, 2, 3], node_config={4: BROKER_ONLY})
    try:
        c.start([1, 2, 3])
        c.down.add(4)
        c.create_topic("before", 1, 3)
        assert described_brokers(c, 1) == [1, 2, 3]

        c.start([4])
        # Every broker, the new one too, lists all four.
        for via in (1, 4):
            wait_for(f"broker {via} listing broker 4", lambda via=via: described_brokers(c, via) == [1, 2, 3, 4])
        assert "a broker that is not a controller voter" in c.brokers[4].log_tail(400)
        # DescribeQuorum (Java Admin) lists it as an observer, not a voter.
        run = run_java("AdminChecks", "quorum", c.brokers[4].bootstrap, timeout=60)
        q = run.step("quorum")
        assert q["ok"], run.report()
        assert ([v[0] for v in q["voters"]], [o[0] for o in q["observers"]]) == ([1, 2, 3], [4]), q

        # New topics use it: eight partitions of RF 3 over four brokers give
        # each broker six replicas and two leaderships.
        c.create_topic("spread", 8, 3)
        md = metadata(c.port(4), ["spread"])
        parts = md["topics"]["spread"]["partitions"]
        held = [p for p, v in parts.items() if 4 in v["replicas"]]
        assert len(held) == 6, parts
        leaders = [c.leader("spread", p)[0] for p in range(8)]
        assert leaders.count(4) == 2, leaders

        # A client that knows only the new broker writes and reads through it.
        only4 = c.brokers[4].bootstrap
        p = Producer({"bootstrap.servers": only4, "acks": "all"})
        for i in range(200):
            p.produce("spread", key=str(i).encode(), value=f"v{i}".encode())
        assert p.flush(30) == 0
        got = read_all(only4, "spread", 8, 200)
        assert sorted(got) == sorted(f"v{i}" for i in range(200))

        # A partition of an older topic moves onto it, and a preferred
        # election hands it the leadership.
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{c.port(1)}")
        try:
            tp = TopicPartition("before", 0)
            assert admin.alter_partition_reassignments({tp: [4, 1, 2]}) == {tp: None}
            wait_for(
                "the move onto broker 4",
                lambda: not admin.list_partition_reassignments()
                and metadata(c.port(4), ["before"])["topics"]["before"]["partitions"][0]["replicas"] == [4, 1, 2],
            )
        finally:
            admin.close()
        c.elect_preferred("before", 0)
        assert c.leader("before", 0)[0] == 4

        # kill -9 and back: it rejoins as a learner and still holds its data.
        c.kill9(4)
        c.start([4])
        wait_for("broker 4 back", lambda: described_brokers(c, 1) == [1, 2, 3, 4])
        got = read_all(only4, "spread", 8, 200)
        assert sorted(got) == sorted(f"v{i}" for i in range(200))

        # Removing it: refused while it holds replicas (and for an unknown
        # broker, and for a controller voter) with the Java Admin client...
        bootstrap = ",".join(c.brokers[n].bootstrap for n in (1, 2, 3))
        run = run_java("AdminChecks", "unregister", bootstrap, 4, 9, 1, timeout=90)
        steps = [e for e in run.lines if "step" in e]
        assert [(e["ok"], e.get("error", "").rsplit(".", 1)[-1]) for e in steps] == [
            (False, "InvalidRequestException"),
            (False, "BrokerIdNotRegisteredException"),
            (False, "InvalidRequestException"),
        ], run.report()
        assert "still holds replicas" in steps[0]["message"], steps[0]
        # ... then drained (every replica moved off), stopped, unregistered.
        # Every topic: the groups' __consumer_offsets has replicas there too.
        drain = {}
        topics = metadata(c.port(1))["topics"]
        assert "__consumer_offsets" in topics
        for topic, t in topics.items():
            for p, v in t["partitions"].items():
                if 4 in v["replicas"]:
                    spare = next(b for b in (1, 2, 3) if b not in v["replicas"])
                    drain[TopicPartition(topic, p)] = [spare if r == 4 else r for r in v["replicas"]]
        assert sum(tp.topic in ("spread", "before") for tp in drain) == 7, drain
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert set(admin.alter_partition_reassignments(drain).values()) == {None}
            wait_for("broker 4 drained", lambda: not admin.list_partition_reassignments(), timeout=60)
        finally:
            admin.close()
        for t in metadata(c.port(1))["topics"].values():
            for v in t["partitions"].values():
                assert 4 not in v["replicas"], v
        c.kill9(4)
        run = run_java("AdminChecks", "unregister", bootstrap, 4, timeout=90)
        assert run.step("unregister 4")["ok"], run.report()
        assert described_brokers(c, 1) == [1, 2, 3]
        # Nothing was lost on the way.
        got = read_all(bootstrap, "spread", 8, 200)
        assert sorted(got) == sorted(f"v{i}" for i in range(200))
        assert not c.crashed(), c.crashed()
    finally:
        c.shutdown()


def read_all(bootstrap, topic, partitions, n, timeout=30.0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=500, timeout=0.5):
                assert not m.error(), m.error()
                out.append(m.value().decode())
    finally:
        consumer.close()
    return out


@pytest.mark.parametrize("case", ["broker role but a voter", "no internal listener"])
def test_a_broker_only_node_that_contradicts_itself_refuses_to_start(tmp_path, case):
    voter = case.endswith("voter")
    b = Broker(tmp_path, BROKER_ONLY if voter else "", extra_args=[
        "--node-id", "2",
        "--controller-voters", "1@127.0.0.1:1,2@127.0.0.1:2" if voter else "1@127.0.0.1:1",
    ])
    args = [b.bin, "--listen", b.bootstrap, "--data-dir", str(b.data_dir), *b.extra_args]
    if b.config_path:
        args += ["--config", str(b.config_path)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    want = "is among the controller voters" if voter else "internal-listen"
    assert want in out.stderr + out.stdout, out.stderr
