"""Leadership after a broker returns, and preferred leader elections.

A broker that comes back after a crash does not take its leaderships back by
itself: that would hit every client with a second round of
NOT_LEADER_OR_FOLLOWER right after the first. As in Kafka, leadership moves
back to the preferred replica (the first assigned) when asked:
- ElectLeaders (PREFERRED), here through librdkafka's admin client
  (confluent-kafka's AdminClient.elect_leaders);
- the active controller's leader balancing (`auto.leader.rebalance.enable`,
  every `leader.imbalance.check.interval.seconds`, when a broker leads no
  more than (100 - `leader.imbalance.per.broker.percentage`) % of the
  partitions it is the preferred replica of).
"""

import contextlib
import time

import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster_support import NODES, metadata, running_cluster

pytestmark = pytest.mark.timeout(240)

TOPIC = "balance"
PARTITIONS = 6


def leaders(cluster, not_from=None):
    """{partition: (leader, preferred replica)} as a live broker (other than
    `not_from`, which may have just started) says."""
    ask = next(n for n in cluster.live() if n != not_from)
    md = metadata(cluster.port(ask), [TOPIC])
    parts = md["topics"][TOPIC]["partitions"]
    return {p: (v["leader"], v["replicas"][0]) for p, v in parts.items()}


def wait_leaders(cluster, ok, timeout, what, not_from=None):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = leaders(cluster, not_from)
            if ok(seen):
                return seen
        except (OSError, AssertionError) as e:
            seen = repr(e)
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s: {seen}")


def all_preferred(view):
    return all(leader == preferred for leader, preferred in view.values())


def crash_and_return(cluster, node):
    """kill -9 of `node`, new leaders for its partitions, then `node` back;
    returns the partitions it was the preferred leader of."""
    view = wait_leaders(cluster, all_preferred, 30, "every partition led by its preferred replica")
    mine = sorted(p for p, (_, preferred) in view.items() if preferred == node)
    assert mine, view
    cluster.kill9(node)
    wait_leaders(cluster, lambda v: all(v[p][0] not in (node, -1) for p in mine), 30, f"new leaders away from {node}")
    cluster.start([node])
    return mine


def elect(admin, election, partitions):
    """{partition: error name or None} of one ElectLeaders request."""
    fut = admin.elect_leaders(election, [TopicPartition(TOPIC, p) for p in partitions])
    got = fut.result(timeout=30)
    return {tp.partition: (e.name() if e is not None else None) for tp, e in got.items()}


@contextlib.contextmanager
def topic_cluster(tmp_path, config=""):
    """A running cluster with TOPIC (RF 3) created."""
    with running_cluster(tmp_path, config=config) as c:
        c.create_topic(TOPIC, PARTITIONS, 3)
        yield c


def wait_listed(cluster, node, listed, timeout=20):
    """Until a broker other than `node` lists it in Metadata (unfenced), or
    no longer does (fenced)."""
    deadline = time.monotonic() + timeout
    while (node in metadata(cluster.port(next(n for n in cluster.live() if n != node)))["brokers"]) != listed:
        assert time.monotonic() < deadline, f"{node} {'not back' if listed else 'not fenced'} within {timeout}s"
        time.sleep(0.2)


@pytest.fixture
def default_cluster(tmp_path):
    with topic_cluster(tmp_path) as c:
        yield c


def test_leadership_stays_until_a_preferred_election_asks(default_cluster):
    cluster = default_cluster
    node = NODES[0]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    view = wait_leaders(cluster, all_preferred, 30, "every partition led by its preferred replica")
    mine = sorted(p for p, (_, preferred) in view.items() if preferred == node)
    # Nothing to elect while every preferred replica leads; UNCLEAN is never
    # needed while a partition has a leader.
    assert elect(admin, ElectionType.PREFERRED, range(PARTITIONS)) == {
        p: "ELECTION_NOT_NEEDED" for p in range(PARTITIONS)
    }
    assert elect(admin, ElectionType.UNCLEAN, [0]) == {0: "ELECTION_NOT_NEEDED"}
    assert elect(admin, ElectionType.PREFERRED, [PARTITIONS + 3]) == {PARTITIONS + 3: "UNKNOWN_TOPIC_OR_PART"}

    cluster.kill9(node)
    wait_leaders(cluster, lambda v: all(v[p][0] not in (node, -1) for p in mine), 30, f"new leaders away from {node}")
    # Fenced (broker.session.timeout.ms, 9 s): its partitions cannot go back.
    wait_listed(cluster, node, False)
    got = elect(admin, ElectionType.PREFERRED, mine)
    assert got == {p: "PREFERRED_LEADER_NOT_AVAILABLE" for p in mine}, got

    cluster.start([node])
    wait_listed(cluster, node, True)
    away = leaders(cluster, node)
    # Caught up and heard from, yet the leaderships stay where they are.
    time.sleep(6)
    after = leaders(cluster, node)
    assert after == away and all(after[p][0] != node for p in mine), (away, after)

    # A preferred election moves them back, and answers once done.
    got = elect(admin, ElectionType.PREFERRED, range(PARTITIONS))
    want = {p: (None if p in mine else "ELECTION_NOT_NEEDED") for p in range(PARTITIONS)}
    assert got == want, got
    assert all_preferred(leaders(cluster)), leaders(cluster)
    print(f"  {node} leads {mine} again after ElectLeaders")


@pytest.fixture
def balancing_cluster(tmp_path):
    with topic_cluster(tmp_path, '"leader.imbalance.check.interval.seconds" = 2\n') as c:
        yield c


def test_leader_balancing_gives_leaderships_back(balancing_cluster):
    cluster = balancing_cluster
    node = NODES[1]
    mine = crash_and_return(cluster, node)
    started = time.monotonic()
    wait_leaders(cluster, all_preferred, 60, f"leaderships back on {node} by leader balancing")
    print(f"  {node} leads {mine} again {time.monotonic() - started:.1f}s after its restart")


@pytest.fixture
def unbalanced_cluster(tmp_path):
    config = '"leader.imbalance.check.interval.seconds" = 1\n"auto.leader.rebalance.enable" = false\n'
    with topic_cluster(tmp_path, config) as c:
        yield c


def test_no_balancing_when_disabled(unbalanced_cluster):
    cluster = unbalanced_cluster
    node = NODES[2]
    mine = crash_and_return(cluster, node)
    wait_listed(cluster, node, True)
    time.sleep(6)
    view = leaders(cluster, node)
    assert all(view[p][0] != node for p in mine), view
