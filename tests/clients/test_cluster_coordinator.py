"""A group keeps its members while its coordination moves away and back.

The coordinator of a group is the leader of the group's __consumer_offsets
partition. Cutting it off from the other brokers (it keeps running, and
clients still reach it) moves coordination to another broker; healing the
network gives it the leadership back (it is the partition's preferred
replica, and the active controller's leader balancing, checking every 2 s
here, asks for a preferred election), so coordination returns to a broker that still holds its own copy
of the group from before, with session deadlines long past. It must load
the group afresh before it acts on it: acting on the stale copy expired
every member (Stable → Empty) and the live members got UNKNOWN_MEMBER_ID
and rebalanced."""

import json
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from cluster_support import running_cluster

pytestmark = pytest.mark.timeout(200)

# Leadership returns to a preferred replica through leader balancing (Kafka's
# default interval is 300 s).
BALANCE_OFTEN = '"leader.imbalance.check.interval.seconds" = 2\n'


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, config=BALANCE_OFTEN) as c:
        yield c


class Member:
    """A librdkafka group member polling from its own thread, counting the
    assignments it is given (each one after the first is a rebalance)."""

    def __init__(self, bootstrap, name):
        self.assignments = []
        self.records = 0
        self.errors = []
        # The member's own view of the group (librdkafka's statistics):
        # (when, state, join state), and since when it has been "up" (it
        # talks to a coordinator) and "steady" without a break.
        self.cgrp = (0.0, None, None)
        self.steady_since = None
        self._stop = threading.Event()
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "steady",
            "client.id": name,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 15000,
            "heartbeat.interval.ms": 1000,
            "error_cb": lambda e: self.errors.append(e.name()),
            "statistics.interval.ms": 200,
            "stats_cb": self._stats,
        })
        self.c.subscribe(["jobs"], on_assign=lambda c, ps: self.assignments.append(sorted(p.partition for p in ps)))
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _stats(self, text):
        cgrp = json.loads(text).get("cgrp", {})
        now = time.monotonic()
        self.cgrp = (now, cgrp.get("state"), cgrp.get("join_state"))
        if self.cgrp[1:] != ("up", "steady"):
            self.steady_since = None
        elif self.steady_since is None:
            self.steady_since = now

    def settled_since(self, t):
        """Whether the member has been steady with a coordinator it reaches
        for the last 3 s, as reported after `t`."""
        when = self.cgrp[0]
        return when > t and self.steady_since is not None and when - self.steady_since >= 3

    def _run(self):
        while not self._stop.is_set():
            m = self.c.poll(0.2)
            if m is not None and not m.error():
                self.records += 1

    def close(self):
        self._stop.set()
        self.t.join(10)
        self.c.close()


def group_view(cluster):
    """(coordinator id, state, sorted member ids), asked afresh."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    g = admin.describe_consumer_groups(["steady"], request_timeout=5)["steady"].result(timeout=10)
    return g.coordinator.id, g.state.name, sorted(m.member_id for m in g.members)


def wait_view(cluster, cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = group_view(cluster)
            if cond(*last):
                return last
        except Exception as e:  # a coordinator moving: ask again
            last = repr(e)
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout}s: last view {last}")


def test_members_stay_while_coordination_moves_away_and_back(cluster):
    cluster.create_topic("jobs", 4, 3)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(400):
        p.produce("jobs", key=str(i).encode(), value=b"x")
    assert p.flush(30) == 0
    members = [Member(cluster.bootstrap, f"m{i}") for i in range(2)]
    try:
        first, state, ids = wait_view(cluster, lambda c, s, m: s == "STABLE" and len(m) == 2, 60, "a stable group of two")
        assert all(len(m.assignments) == 1 for m in members), [m.assignments for m in members]
        print(f"  coordinator {first}, members {ids}")

        cluster.net.isolate(first)
        cut = time.monotonic()
        # On a loaded machine a member may miss its session while the
        # coordinator moves, and rejoin under a new id: what must hold is
        # that the group the other broker coordinates stays as it is when
        # coordination comes back.
        away, _, _ = wait_view(
            cluster, lambda c, s, m: c != first and s == "STABLE" and len(m) == 2, 60, "another coordinator"
        )
        # The group is only settled on the new coordinator once every
        # member reaches it (a client still looking for the coordinator
        # when its session runs out rejoins under a new id).
        moved = time.monotonic()
        deadline = moved + 60
        while not all(m.settled_since(moved) for m in members):
            assert time.monotonic() < deadline, [m.cgrp for m in members]
            time.sleep(0.2)
        away, _, ids = wait_view(
            cluster, lambda c, s, m: c != first and s == "STABLE" and len(m) == 2, 60, "another coordinator"
        )
        given = [len(m.assignments) for m in members]
        print(f"  cut off {first}; {away} coordinates {ids}")
        # Longer than a session timeout away: the cut-off broker's copy of
        # the group has every deadline in the past.
        time.sleep(max(0.0, 20 - (time.monotonic() - cut)))
        cluster.net.heal()
        # It is the preferred leader of the group's partition: once caught
        # up, leader balancing gives it the leadership back.
        back, state, now = wait_view(cluster, lambda c, s, m: c == first, 60, "coordination back on the healed broker")
        print(f"  coordination back on {back}: {state}, members {now}")
        # Several heartbeats and a session timeout's worth of time with the
        # returned coordinator: nobody is expired, nobody rejoins.
        time.sleep(17)
        coordinator, state, after = group_view(cluster)
        assert (coordinator, state, after) == (first, "STABLE", ids), (coordinator, state, after, ids)
        assert [len(m.assignments) for m in members] == given, (
            f"members were assigned again after coordination came back: {[m.assignments for m in members]}"
        )
    finally:
        for m in members:
            m.close()
