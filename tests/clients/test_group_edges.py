"""Classic consumer-group edge cases, checked against what Kafka does:

- static membership (KIP-345) with librdkafka (confluent-kafka) and with the
  Java client: static member "a" alone gets both partitions of a 2-partition
  topic; static member "b" joins and each then owns one, never both the same
  partition at once; "b" closes (a static member sends no LeaveGroup) and a
  new consumer with instance id "b" starts within the session timeout: it
  gets its partition back and "a" sees no rebalance;
- Kafka's order of checks for OffsetCommit and Heartbeat: the generation is
  checked before the group's state, so a stale generation while the group
  rebalances is ILLEGAL_GENERATION (22), not REBALANCE_IN_PROGRESS (27).
  A raw member (kafka-python's protocol classes over its network client)
  leads a group that two librdkafka consumers join, so the test decides how
  long each rebalance phase lasts;
- a static member removed by the Admin client
  (removeMembersFromConsumerGroup with its instance id: LeaveGroup by
  group.instance.id) is gone at once: deleteConsumerGroups right after
  succeeds; and an emptied group without committed offsets can still be
  deleted a second later (Kafka drops such groups only in its offsets
  cleanup, every offsets.retention.check.interval.ms).

The Java side is tests/java/src/GroupEdges.java.

Run with `pytest -s` to see the timelines."""

import struct
import threading
import time

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from kafka.net.compat import KafkaNetClient
from kafka.protocol.admin.groups import DescribeGroupsRequest
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    SyncGroupRequest,
)

from conftest import create_topic
from java_support import run_java

pytestmark = pytest.mark.timeout(60)

NONE, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED = 0, 22, 27, 79
CODE_NAMES = {0: "NONE", 22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 27: "REBALANCE_IN_PROGRESS",
              79: "MEMBER_ID_REQUIRED", 82: "FENCED_INSTANCE_ID"}


def wait_for(cond, timeout: float, what: str, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details()}")


# ---------------------------------------------------------------------------
# Static membership: the checks shared by the librdkafka and Java scenarios.


def ownership_problems(events):
    """Replays (t, owner, event, partitions) in time order; an owner is one
    consumer instance ("a", "b#1", "b#2"). Returns the moments two owners held
    the same partition."""
    owned = {}
    problems = []
    for t, owner, event, parts in sorted(events, key=lambda e: e[0]):
        if event == "assigned":
            owned[owner] = owned.get(owner, set()) | set(parts)
        elif event in ("revoked", "lost"):
            owned[owner] = owned.get(owner, set()) - set(parts)
        elif event == "closed":
            owned[owner] = set()
        holders = {}
        for o, ps in owned.items():
            for p in ps:
                holders.setdefault(p, []).append(o)
        both = {p: os for p, os in holders.items() if len(os) > 1}
        if both:
            problems.append(f"at {t}: partition(s) owned by two members at once {both}")
    return problems


def check_static_scenario(events, b_closed_at, a_first, shared, b_back, a_end, b_end):
    """events: (t, owner, event, partitions). a_first: a's assignment when
    alone; shared: (a's, b's) once b joined; b_back: the restarted b's
    assignment; a_end, b_end: the assignments at the end."""
    timeline = "\n".join(f"  {t:>8} {o:<4} {e:<9} {p}" for t, o, e, p in sorted(events, key=lambda e: e[0]))
    problems = []
    if a_first != [0, 1]:
        problems.append(f"a alone holds {a_first}, not both partitions")
    a_shared, b_shared = shared
    if not (len(a_shared) == 1 and len(b_shared) == 1 and set(a_shared) != set(b_shared)):
        problems.append(f"once b joined: a holds {a_shared}, b holds {b_shared} (one each expected)")
    problems += ownership_problems(events)
    if sorted(b_back) != sorted(b_shared):
        problems.append(f"the restarted b got {b_back}, not its partition {b_shared} back")
    a_after = [e for e in events if e[1] == "a" and e[0] >= b_closed_at and e[2] != "closed"]
    if a_after:
        problems.append(f"a saw a rebalance after b closed (no rebalance expected): {a_after}")
    if sorted(a_end + b_end) != [0, 1] or sorted(a_end) != sorted(a_shared):
        problems.append(f"at the end: a holds {a_end}, b holds {b_end} (expected {a_shared} and {b_shared})")
    print(f"\ntimeline (b closed at {b_closed_at}):\n{timeline}")
    assert not problems, "\n".join(problems) + f"\ntimeline (b closed at {b_closed_at}):\n{timeline}"


class StaticMember(threading.Thread):
    """A librdkafka static member (classic protocol, eager "range" assignor)
    polling in a thread; its rebalance callbacks go to the shared log."""

    def __init__(self, bootstrap, topic, group, instance, owner, log, t0, session_ms=15000):
        super().__init__(daemon=True)
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": instance,
            "client.id": f"{group}-{owner}",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        self.topic, self.owner, self.log, self.t0 = topic, owner, log, t0
        self.assigned = set()
        self.stopping = threading.Event()
        self.error = None
        self.closed_at = None

    def note(self, event, parts):
        self.log.append((round(time.monotonic() - self.t0, 3), self.owner, event, sorted(parts)))

    def on_assign(self, _c, parts):
        ps = {p.partition for p in parts}
        self.note("assigned", ps)
        self.assigned |= ps

    def on_revoke(self, _c, parts):
        ps = {p.partition for p in parts}
        self.assigned -= ps
        self.note("revoked", ps)

    def on_lost(self, _c, parts):
        ps = {p.partition for p in parts}
        self.assigned -= ps
        self.note("lost", ps)

    def run(self):
        try:
            c = Consumer(self.conf)
            c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)
            while not self.stopping.is_set():
                c.poll(0.1)
            # A static member's close sends no LeaveGroup: its session keeps
            # its place in the group.
            c.close()
            self.closed_at = round(time.monotonic() - self.t0, 3)
            self.note("closed", [])
        except Exception as e:  # surfaced by stop()
            self.error = e

    def stop(self):
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), f"{self.owner} did not close"
        assert self.error is None, f"{self.owner} failed: {self.error!r}"


def test_librdkafka_static_members_share_and_restart_without_a_rebalance(group_broker):
    b = group_broker
    topic, group = "edges-static-rdk", "edges-static-rdk-g"
    create_topic(b.bootstrap, topic, 2)
    log, t0 = [], time.monotonic()
    show = lambda: "\n".join(map(str, log))  # noqa: E731
    a = StaticMember(b.bootstrap, topic, group, "a", "a", log, t0)
    members = [a]
    try:
        a.start()
        wait_for(lambda: a.assigned == {0, 1}, 20, "a alone to hold both partitions", show)
        a_first = sorted(a.assigned)

        b1 = StaticMember(b.bootstrap, topic, group, "b", "b#1", log, t0)
        members.append(b1)
        b1.start()
        wait_for(lambda: len(a.assigned) == 1 and len(b1.assigned) == 1 and a.assigned != b1.assigned,
                 20, "one partition each", show)
        time.sleep(2.0)  # the group settles: heartbeats go on at the same generation
        shared = (sorted(a.assigned), sorted(b1.assigned))

        b_closed_at = round(time.monotonic() - t0, 3)
        b1.stop()  # no LeaveGroup: b's place is kept for its session timeout (15 s)
        b2 = StaticMember(b.bootstrap, topic, group, "b", "b#2", log, t0)
        members.append(b2)
        b2.start()
        wait_for(lambda: len(b2.assigned) == 1, 12, "the restarted b's assignment", show)
        b_back = sorted(b2.assigned)
        time.sleep(3.0)  # a rebalance, if one was started, would show in a's callbacks
        a_end, b_end = sorted(a.assigned), sorted(b2.assigned)
        end_t = round(time.monotonic() - t0, 3)
    finally:
        for m in reversed(members):
            if m.is_alive():
                m.stopping.set()
        for m in members:
            m.join(30)
    for m in members:
        assert m.error is None, f"{m.owner} failed: {m.error!r}"
    # The final close of every consumer is left out: only what happened
    # while the scenario ran counts.
    events = [e for e in log if e[0] <= end_t]
    check_static_scenario(events, b_closed_at, a_first, shared, b_back, a_end, b_end)


def test_java_static_members_share_and_restart_without_a_rebalance(group_broker):
    b = group_broker
    topic, group = "edges-static-java", "edges-static-java-g"
    create_topic(b.bootstrap, topic, 2)
    run = run_java("GroupEdges", "static-members", b.bootstrap, topic, group, 15000, timeout=50)
    phases = {e["phase"]: e for e in run.lines if "phase" in e}
    assert run.returncode == 0 and not run.events("error"), run.report()
    # The final close of every consumer is left out: only what happened
    # while the scenario ran counts.
    end_t = phases["end"]["t"]
    events = []
    for e in run.lines:
        if e.get("event") in ("assigned", "revoked", "lost", "closed"):
            owner = "a" if e["member"] == "a" else f"b#{e['incarnation']}"
            if e["t"] <= end_t:
                events.append((e["t"], owner, e["event"], e.get("partitions", [])))
    check_static_scenario(
        events,
        phases["b_closing"]["t"],
        phases["a_alone"]["a"],
        (phases["shared"]["a"], phases["shared"]["b"]),
        phases["b_back"]["b"],
        phases["end"]["a"],
        phases["end"]["b"],
    )


# ---------------------------------------------------------------------------
# Generation checked before the rebalance state (OffsetCommit, Heartbeat).


def kstring(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def subscription(topic: str) -> bytes:
    """ConsumerProtocolSubscription v0: one topic, no user data."""
    return struct.pack(">hi", 0, 1) + kstring(topic) + struct.pack(">i", -1)


def assignment(topic: str, partitions) -> bytes:
    """ConsumerProtocolAssignment v0: the partitions of one topic, no user data."""
    return (struct.pack(">hi", 0, 1) + kstring(topic) + struct.pack(">i", len(partitions))
            + b"".join(struct.pack(">i", p) for p in partitions) + struct.pack(">i", -1))


class RawMember:
    """A group member speaking the classic protocol itself: kafka-python's
    request classes sent through its network client (one connection)."""

    def __init__(self, bootstrap, group, topic, client_id):
        self.group, self.topic = group, topic
        self.client = KafkaNetClient(bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=45000)
        self.client.check_version()
        [broker] = self.client.cluster.brokers()
        self.node = broker.node_id  # one broker: it coordinates every group
        self.member_id = ""
        self.generation = -1

    def send(self, request, timeout_ms=40000):
        return self.client.send_and_receive(self.node, request, timeout_ms=timeout_ms)

    def join(self):
        P = JoinGroupRequest.JoinGroupRequestProtocol
        while True:
            r = self.send(JoinGroupRequest(
                group_id=self.group, session_timeout_ms=30000, rebalance_timeout_ms=30000,
                member_id=self.member_id, group_instance_id=None, protocol_type="consumer",
                protocols=[P(name="range", metadata=subscription(self.topic))]))
            if r.error_code == MEMBER_ID_REQUIRED:
                self.member_id = r.member_id
                continue
            assert r.error_code == NONE, f"JoinGroup: {r}"
            self.member_id, self.generation = r.member_id, r.generation_id
            return r

    def sync(self, assignments: dict):
        A = SyncGroupRequest.SyncGroupRequestAssignment
        r = self.send(SyncGroupRequest(
            group_id=self.group, generation_id=self.generation, member_id=self.member_id,
            group_instance_id=None, protocol_type="consumer", protocol_name="range",
            assignments=[A(member_id=m, assignment=a) for m, a in assignments.items()]))
        assert r.error_code == NONE, f"SyncGroup: {r}"
        return r

    def heartbeat(self, generation, member_id=None):
        r = self.send(HeartbeatRequest(group_id=self.group, generation_id=generation,
                                       member_id=member_id or self.member_id, group_instance_id=None))
        return r.error_code

    def commit(self, generation, member_id=None, offset=0):
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        r = self.send(OffsetCommitRequest(
            group_id=self.group, generation_id_or_member_epoch=generation, member_id=member_id or self.member_id,
            group_instance_id=None, retention_time_ms=-1,
            topics=[T(name=self.topic, partitions=[T.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                commit_timestamp=-1, committed_metadata="")])]))
        [t] = r.topics
        [p] = t.partitions
        return p.error_code

    def describe(self):
        r = self.send(DescribeGroupsRequest(groups=[self.group], include_authorized_operations=False))
        [g] = r.groups
        return g.group_state, [(m.member_id, m.client_id) for m in g.members]

    def leave(self):
        M = LeaveGroupRequest.MemberIdentity
        self.send(LeaveGroupRequest(group_id=self.group, member_id=self.member_id,
                                    members=[M(member_id=self.member_id, group_instance_id=None)]))

    def close(self):
        self.client.close()


class DynamicMember(threading.Thread):
    """A librdkafka consumer (classic protocol, "range") polling in a thread."""

    def __init__(self, bootstrap, topic, group, name):
        super().__init__(daemon=True)
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "session.timeout.ms": 30000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
        }
        self.topic, self.name = topic, name
        self.assigned = set()
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            c = Consumer(self.conf)

            def on_assign(_c, parts):
                self.assigned = {p.partition for p in parts}

            def on_revoke(_c, parts):
                self.assigned -= {p.partition for p in parts}

            c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            while not self.stopping.is_set():
                c.poll(0.1)
            c.close()
        except Exception as e:
            self.error = e


def test_stale_generation_is_checked_before_the_rebalance_state(group_broker):
    """A raw member C forms the group alone (generation 1) and stays its
    leader; two librdkafka consumers join (PreparingRebalance until C
    rejoins); C rejoins (generation 2, CompletingRebalance until C sends its
    SyncGroup), then syncs (Stable). In each phase OffsetCommit and
    Heartbeat go out with stale and current generations; the answers must be
    Kafka's (ClassicGroup.validateOffsetCommit and the classic heartbeat
    check the member and generation first, the state after)."""
    b = group_broker
    topic, group = "edges-generation", "edges-generation-g"
    create_topic(b.bootstrap, topic, 2)
    c = RawMember(b.bootstrap, group, topic, "raw-leader")
    consumers = []
    got, want = {}, {}

    def check(name, value, expected):
        got[name], want[name] = value, expected

    try:
        first = c.join()
        assert (first.generation_id, first.leader) == (1, c.member_id), first
        c.sync({c.member_id: assignment(topic, [0, 1])})
        assert c.heartbeat(1) == NONE

        # Two real consumers join: the group prepares a rebalance and waits
        # for C, which is still at generation 1.
        consumers = [DynamicMember(b.bootstrap, topic, group, f"rdk-{i}") for i in range(2)]
        for m in consumers:
            m.start()
        wait_for(lambda: len(c.describe()[1]) == 3, 20, "both consumers to join", lambda: str(c.describe()))
        wait_for(lambda: c.heartbeat(1) == REBALANCE_IN_PROGRESS, 10, "PreparingRebalance")
        state = c.describe()[0]
        check("preparing: state", state, "PreparingRebalance")
        check("preparing: heartbeat gen 1 (current)", c.heartbeat(1), REBALANCE_IN_PROGRESS)
        check("preparing: heartbeat gen 0 (stale)", c.heartbeat(0), ILLEGAL_GENERATION)
        check("preparing: commit gen 0 (stale)", c.commit(0), ILLEGAL_GENERATION)
        check("preparing: commit gen 1 (current)", c.commit(1), NONE)

        # C rejoins last: the join completes at generation 2 and the group
        # waits for C's SyncGroup (the consumers' SyncGroups wait with it).
        second = c.join()
        assert (second.generation_id, second.leader) == (2, c.member_id), second
        others = [m.member_id for m in second.members if m.member_id != c.member_id]
        assert len(others) == 2, second
        time.sleep(0.5)  # the consumers have their JoinGroup answers and wait in SyncGroup
        check("completing: state", c.describe()[0], "CompletingRebalance")
        check("completing: commit gen 1 (stale)", c.commit(1), ILLEGAL_GENERATION)
        check("completing: commit gen 1 (stale), a consumer's member id", c.commit(1, member_id=others[0]),
              ILLEGAL_GENERATION)
        check("completing: heartbeat gen 1 (stale)", c.heartbeat(1), ILLEGAL_GENERATION)
        check("completing: commit gen 2 (current)", c.commit(2), REBALANCE_IN_PROGRESS)
        check("completing: heartbeat gen 2 (current)", c.heartbeat(2), NONE)

        # C hands out the partitions: the group is stable at generation 2.
        c.sync({c.member_id: assignment(topic, []), others[0]: assignment(topic, [0]),
                others[1]: assignment(topic, [1])})
        wait_for(lambda: sorted(tuple(sorted(m.assigned)) for m in consumers) == [(0,), (1,)], 15,
                 "the consumers' assignments", lambda: str([m.assigned for m in consumers]))
        check("stable: state", c.describe()[0], "Stable")
        check("stable: commit gen 1 (stale)", c.commit(1), ILLEGAL_GENERATION)
        check("stable: heartbeat gen 1 (stale)", c.heartbeat(1), ILLEGAL_GENERATION)
        check("stable: commit gen 2 (current)", c.commit(2), NONE)
        check("stable: heartbeat gen 2 (current)", c.heartbeat(2), NONE)
        c.leave()
    finally:
        for m in consumers:
            m.stopping.set()
        for m in consumers:
            m.join(30)
        c.close()

    def name(v):
        return f"{v} ({CODE_NAMES[v]})" if isinstance(v, int) and v in CODE_NAMES else str(v)

    table = "\n".join(f"  {'ok ' if got[k] == want[k] else 'BAD'} {k:<62} got {name(got[k]):<28} Kafka: {name(want[k])}"
                      for k in got)
    print("\n" + table)
    assert got == want, "answers that differ from Kafka's:\n" + table
    for m in consumers:
        assert m.error is None, f"{m.name} failed: {m.error!r}"


# ---------------------------------------------------------------------------
# Removing a static member by its instance id.


def run_remove_static(bootstrap, name, commit, pause_ms):
    topic, group = f"edges-{name}", f"edges-{name}-g"
    create_topic(bootstrap, topic, 2)
    # The static member's session (30 s) outlives the test's steps: only the
    # removal can empty the group in time.
    run = run_java("GroupEdges", "remove-static", bootstrap, topic, group, 30000,
                   "commit" if commit else "no-commit", pause_ms, timeout=50)
    assert run.returncode == 0 and not run.events("error"), run.report()
    print("\n" + "\n".join(str(e) for e in run.lines if "step" in e or "phase" in e or e.get("event") == "committed"))

    described = run.step("describe_after_close")
    assert described["ok"] and described["members"] == ["a"], (
        f"the closed static member should still be in the group: {described}\n{run.report()}")
    refused = run.step("delete_before_remove")
    assert (refused["ok"], refused.get("error")) == (
        False, "org.apache.kafka.common.errors.GroupNotEmptyException"), run.report()
    assert run.step("remove_member")["ok"], run.report()
    deleted = run.step("delete_after_remove")
    assert deleted["ok"], f"deleteConsumerGroups after the removal: {deleted}\n{run.report()}"
    gone = run.step("describe_after_delete")
    assert (gone["ok"] and gone["state"] == "Dead" and gone["members"] == []) or (
        not gone["ok"] and gone["error"] == "org.apache.kafka.common.errors.GroupIdNotFoundException"
    ), run.report()
    # And nothing is left of it in the group listing.
    listed = AdminClient({"bootstrap.servers": bootstrap}).list_consumer_groups().result(timeout=20)
    assert group not in [g.group_id for g in listed.valid], listed.valid


def test_java_removed_static_member_leaves_at_once_so_the_group_can_be_deleted(broker):
    """The member committed its positions (the group has offsets, as an
    application's would); deleteConsumerGroups follows the removal at once."""
    run_remove_static(broker.bootstrap, "remove-static", commit=True, pause_ms=0)


def test_java_emptied_group_without_offsets_can_still_be_deleted(broker):
    """The same without committed offsets, and 1 s between the removal and
    deleteConsumerGroups: Kafka keeps an Empty group until its offsets
    cleanup (offsets.retention.check.interval.ms, 10 min by default) finds
    it without offsets, so the delete succeeds; GROUP_ID_NOT_FOUND means the
    broker dropped the group as soon as it was empty."""
    run_remove_static(broker.bootstrap, "remove-static-no-offsets", commit=False, pause_ms=1000)
