"""Unclean leader election, through librdkafka's admin client.

A partition whose Raft group lost a majority of its replicas has no leader:
Raft elects only a replica holding every committed entry, which needs a
majority. Kafka's answer is the unclean election, and so is Sluice's:
- ElectLeaders UNCLEAN is refused (ELIGIBLE_LEADERS_NOT_AVAILABLE) unless
  the topic has `unclean.leader.election.enable`; with it, the first replica
  left leads a new generation of the group alone, with what its log holds;
- with `unclean.leader.election.enable` the active controller does it by
  itself once the lost brokers are fenced (`broker.session.timeout.ms`);
- a lost replica that comes back drops its log and joins the new group
  empty: it catches up and can lead again.

Replicas [3, 2] (RF 2) on three brokers that all vote in the controller
quorum: killing broker 3 leaves the partitions one replica of two, while
the controller quorum keeps a majority.
"""

import time

import pytest
from confluent_kafka import ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, NewTopic
from confluent_kafka.admin import AlterConfigOpType

from cluster_support import metadata, read_partitions, running_cluster, value_of, wait_for

pytestmark = pytest.mark.timeout(240)

LOST = 3
LEFT = 2


def create(admin, name, config):
    fut = admin.create_topics([NewTopic(name, 1, replica_assignment=[[LOST, LEFT]], config=config)])
    fut[name].result(timeout=30)


def produce(bootstrap, topic, values):
    """acks=all; every value acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 20000})
    acked = []
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=lambda err, m: acked.append(err or m.offset()))
    p.flush(30)
    assert len(acked) == len(values) and all(isinstance(a, int) for a in acked), acked
    return acked


def view(cluster, topic, node=LEFT):
    return metadata(cluster.port(node), [topic])["topics"][topic]["partitions"][0]


def elect(admin, topic):
    """The error name of an UNCLEAN ElectLeaders of partition 0 (None: done)."""
    fut = admin.elect_leaders(ElectionType.UNCLEAN, [TopicPartition(topic, 0)])
    got = fut.result(timeout=40)
    err = got[TopicPartition(topic, 0)]
    return None if err is None else err.name()


def values(cluster, topic):
    return [(o, v) for o, v, _ in read_partitions(f"127.0.0.1:{cluster.port(LEFT)}", topic, 1)[0]]


def test_unclean_election_on_demand_and_by_the_controller(tmp_path):
    # A long session timeout: the explicit election happens before broker
    # 3 is fenced, so before the controller would do it.
    with running_cluster(tmp_path, config='"broker.session.timeout.ms" = 20000\n') as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        create(admin, "asked", {})
        create(admin, "auto", {"unclean.leader.election.enable": "true"})
        first = [value_of(i) for i in range(20)]
        for t in ("asked", "auto"):
            wait_for(f"{t} led by {LOST}", lambda t=t: view(cluster, t)["leader"] == LOST)
            assert produce(cluster.bootstrap, t, first) == list(range(20))
        epoch = view(cluster, "asked")["epoch"]

        killed = time.monotonic()
        cluster.kill9(LOST)
        # Raft elects nobody with one replica of two; not allowed, the
        # unclean election is refused.
        got = wait_for("broker 3 seen gone", lambda: (e := elect(admin, "asked")) != "ELECTION_NOT_NEEDED" and e, timeout=10)
        assert got == "ELIGIBLE_LEADERS_NOT_AVAILABLE", got
        assert view(cluster, "asked")["leader"] != LEFT

        # Allowed: replica 2 leads a new generation, with all 20 records.
        res = ConfigResource(ConfigResource.Type.TOPIC, "asked", incremental_configs=[
            ConfigEntry("unclean.leader.election.enable", "true", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(timeout=30)
        got = elect(admin, "asked")
        assert got is None, got
        assert time.monotonic() - killed < 20, "elected on demand before broker 3 was fenced"
        v = view(cluster, "asked")
        assert v["leader"] == LEFT and v["epoch"] > epoch, v
        assert values(cluster, "asked") == list(enumerate(first))
        second = [value_of(i) for i in range(20, 30)]
        assert produce(cluster.bootstrap, "asked", second) == list(range(20, 30))

        # The controller does it for "auto" once broker 3 is fenced.
        wait_for("auto led by 2", lambda: view(cluster, "auto")["leader"] == LEFT, timeout=45)
        assert time.monotonic() - killed >= 15, "not before broker 3 was fenced"
        assert values(cluster, "auto") == list(enumerate(first))
        assert elect(admin, "auto") == "ELECTION_NOT_NEEDED"

        # Broker 3 comes back: its replicas join the new groups empty, catch
        # up, and the preferred election gives 3 the leadership back with
        # every record the survivor held.
        cluster.start([LOST])
        wait_for("3 back in the ISR of asked", lambda: LOST in view(cluster, "asked")["isr"], timeout=60)
        assert cluster.elect_preferred("asked", 0) == LOST
        assert values(cluster, "asked") == list(enumerate(first + second))
        # Nothing to elect uncleanly with both replicas live.
        assert elect(admin, "asked") == "ELECTION_NOT_NEEDED"
