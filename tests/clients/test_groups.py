"""Consumer groups with real clients: librdkafka (confluent-kafka), kafka-python,
aiokafka and KafkaJS subscribe with a group.id; partitions are shared out,
move when a member leaves or dies, and consumption resumes at the committed
offsets, also across broker restarts."""

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient

from conftest import create_topic

HERE = Path(__file__).resolve().parent


def produce(bootstrap: str, topic: str, n: int, start: int = 0):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(start, start + n):
        p.produce(topic, key=f"k{i % 101}", value=f"v{i}")
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict:
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks-unused"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def wait_for(cond, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Member(threading.Thread):
    """A librdkafka group member in a thread. Records every (partition, offset)
    it reads and every assignment change. With manual commits it commits
    synchronously after each batch it processed, so what it has read is
    committed before it can lose a partition."""

    def __init__(self, bootstrap, topic, group, batch=500, pause=0.0, manual_commit=True, **conf):
        super().__init__(daemon=True)
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": not manual_commit,
            **conf,
        }
        if conf.get("group.protocol") != "consumer":
            # With the KIP-848 protocol the broker owns these settings.
            self.conf = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **self.conf}
        self.topic, self.batch, self.pause, self.manual = topic, batch, pause, manual_commit
        self.read = []
        self.assigned = set()
        self.events = []
        self.stopping = threading.Event()
        self.error = None
        self.commit_errors = []
        self.lock = threading.Lock()

    def on_assign(self, _c, parts):
        with self.lock:
            self.assigned |= {p.partition for p in parts}
            self.events.append(("assign", sorted(p.partition for p in parts)))

    def on_revoke(self, c, parts):
        # What was read from a partition is committed before it is given up,
        # as applications do, so its next owner does not read it again.
        if self.manual and parts:
            try:
                c.commit(offsets=c.position(parts), asynchronous=False)
            except KafkaException:
                pass
        with self.lock:
            self.assigned -= {p.partition for p in parts}
            self.events.append(("revoke", sorted(p.partition for p in parts)))

    def run(self):
        try:
            c = Consumer(self.conf)
            c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
            uncommitted = False
            while not self.stopping.is_set() or uncommitted:
                msgs = c.consume(self.batch, 0.2)
                for m in msgs:
                    if m.error():
                        continue
                    self.read.append((m.partition(), m.offset()))
                    uncommitted = True
                if uncommitted and self.manual:
                    try:
                        c.commit(asynchronous=False)
                        uncommitted = False
                    except KafkaException as e:
                        # REBALANCE_IN_PROGRESS while the group completes a
                        # rebalance: retried after the next poll, as apps do.
                        self.commit_errors.append(e.args[0].code())
                else:
                    uncommitted = False
                if self.pause:
                    time.sleep(self.pause)
            c.close()
        except Exception as e:  # surfaced by stop()
            self.error = e

    def stop(self):
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), "consumer did not close"
        assert self.error is None, f"consumer failed: {self.error!r}"


def no_duplicates(*members):
    reads = [r for m in members for r in m.read]
    assert len(reads) == len(set(reads)), "a message was read twice"
    return set(reads)


def test_librdkafka_three_members_share_six_partitions_and_read_each_message_once(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "split6", 6)
    produce(b.bootstrap, "split6", 30_000)
    members = [Member(b.bootstrap, "split6", "split-group", manual_commit=False) for _ in range(3)]
    for m in members:
        m.start()
    wait_for(lambda: sum(len(m.read) for m in members) >= 30_000, 90, "30,000 messages")
    time.sleep(1.0)  # a message delivered twice would arrive now
    assert len(no_duplicates(*members)) == 30_000
    for m in members:
        assert len(m.assigned) == 2, f"a member holds {sorted(m.assigned)}"
        assert [e for e in m.events if e[0] == "assign"] == [("assign", sorted(m.assigned))], (
            "one rebalance only: every member joined the first generation"
        )
    assert set().union(*(m.assigned for m in members)) == set(range(6))

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    listed = admin.list_consumer_groups().result(timeout=20)
    assert "split-group" in {g.group_id for g in listed.valid}
    desc = admin.describe_consumer_groups(["split-group"])["split-group"].result(timeout=20)
    assert desc.state == ConsumerGroupState.STABLE
    assert desc.type == ConsumerGroupType.CLASSIC
    assert len(desc.members) == 3
    owned = sorted(tp.partition for mem in desc.members for tp in mem.assignment.topic_partitions)
    assert owned == list(range(6)), "the admin view shows who owns what"

    for m in members:
        m.stop()  # close() commits the final positions (automatic commits)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("split-group")])
    committed = {tp.partition: tp.offset for tp in offsets["split-group"].result(timeout=20).topic_partitions}
    assert committed == high_watermarks(b.bootstrap, "split6", 6), "lag is zero once all is read"
    desc = admin.describe_consumer_groups(["split-group"])["split-group"].result(timeout=20)
    assert desc.state == ConsumerGroupState.EMPTY


def test_librdkafka_partitions_move_when_a_member_leaves(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "leave4", 4)
    produce(b.bootstrap, "leave4", 4000)
    m1 = Member(b.bootstrap, "leave4", "leave-group", batch=10, pause=0.02)
    m2 = Member(b.bootstrap, "leave4", "leave-group", batch=10, pause=0.02)
    m1.start()
    m2.start()
    wait_for(lambda: len(m1.assigned) == 2 and len(m2.assigned) == 2, 30, "two partitions each")
    wait_for(lambda: len(m2.read) >= 200, 30, "m2 reading")
    m2.stop()  # commits what it read, then LeaveGroup
    left = time.time()
    wait_for(lambda: m1.assigned == {0, 1, 2, 3}, 15, "m1 to take over every partition")
    took = time.time() - left
    assert took < 6.0, f"partitions moved {took:.1f}s after the leave, past the 6 s session timeout"
    wait_for(lambda: len(set(m1.read) | set(m2.read)) >= 4000, 60, "every message")
    m1.stop()
    assert len(no_duplicates(m1, m2)) == 4000, "nothing committed was read again"


def test_librdkafka_partitions_of_a_killed_member_move_within_the_session_timeout(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "kill4", 4)
    produce(b.bootstrap, "kill4", 4000)
    survivor = Member(b.bootstrap, "kill4", "kill-group", batch=10, pause=0.02)
    victim = subprocess.Popen(
        [sys.executable, str(HERE / "group_member.py"), b.bootstrap, "kill4", "kill-group", "6000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    events = []
    reader = threading.Thread(target=lambda: events.extend(json.loads(line) for line in victim.stdout), daemon=True)
    reader.start()
    survivor.start()
    try:
        wait_for(lambda: len(survivor.assigned) == 2, 30, "survivor assignment")
        wait_for(lambda: sum("committed" in e for e in list(events)) >= 50, 30, "victim commits")
        victim.kill()
        victim.wait(10)
        killed = time.time()
        reader.join(5)
        wait_for(lambda: survivor.assigned == {0, 1, 2, 3}, 20, "survivor to take every partition")
        took = time.time() - killed
        # Session timeout 6 s, plus one heartbeat interval and the rejoin.
        assert took < 9.0, f"partitions moved {took:.1f}s after kill -9"
        committed = {}
        for e in events:
            if "committed" in e:
                p, nxt = e["committed"]
                committed[p] = max(committed.get(p, 0), nxt)
        assert committed, "the victim had read from its partitions"
        rest = 4000 - sum(committed.values()) - len(committed)
        wait_for(lambda: len(survivor.read) >= rest, 60, "the rest")
        time.sleep(0.5)
    finally:
        if victim.poll() is None:
            victim.kill()
        survivor.stop()
    no_duplicates(survivor)
    for p, nxt in committed.items():
        offsets = [o for q, o in survivor.read if q == p]
        assert offsets, f"partition {p} was never resumed"
        # The victim may have died between its commit and its print: one more.
        assert nxt <= min(offsets) <= nxt + 1, f"partition {p} resumed at {min(offsets)}, committed {nxt}"


def test_librdkafka_members_resume_at_committed_offsets_after_broker_restarts(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "resume3", 3)
    produce(b.bootstrap, "resume3", 3000)
    first = Member(b.bootstrap, "resume3", "resume-group", batch=100, pause=0.01)
    first.start()
    wait_for(lambda: len(first.read) >= 1500, 60, "half the messages")
    first.stop()
    nxt = {}
    for p, o in first.read:
        nxt[p] = max(nxt.get(p, 0), o + 1)

    b.stop()  # clean restart
    b.start()
    second = Member(b.bootstrap, "resume3", "resume-group")
    second.start()
    wait_for(lambda: len(second.read) >= 3000 - len(first.read), 60, "the rest")
    time.sleep(0.5)
    second.stop()
    for p in range(3):
        offsets = [o for q, o in second.read if q == p]
        if offsets:
            assert min(offsets) == nxt.get(p, 0), f"partition {p} resumed at {min(offsets)}"
    assert len(no_duplicates(first, second)) == 3000

    produce(b.bootstrap, "resume3", 300, start=3000)
    third = Member(b.bootstrap, "resume3", "resume-group")
    third.start()
    wait_for(lambda: len(third.read) >= 300, 60, "the new messages")
    third.stop()
    b.kill9()  # unclean restart: every acknowledged commit is still there
    b.start()
    fourth = Member(b.bootstrap, "resume3", "resume-group")
    fourth.start()
    wait_for(lambda: len(fourth.assigned) == 3, 30, "assignment")
    time.sleep(2.0)
    fourth.stop()
    assert fourth.read == [], "committed messages were read again after kill -9"
    assert len(no_duplicates(first, second, third)) == 3300


def test_librdkafka_cooperative_sticky_moves_only_what_it_must(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "coop4", 4)
    produce(b.bootstrap, "coop4", 2000)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    m1 = Member(b.bootstrap, "coop4", "coop-group", batch=10, pause=0.02, **conf)
    m1.start()
    wait_for(lambda: m1.assigned == {0, 1, 2, 3}, 30, "m1 holds all")
    m2 = Member(b.bootstrap, "coop4", "coop-group", batch=10, pause=0.02, **conf)
    m2.start()
    wait_for(lambda: len(m1.assigned) == 2 and len(m2.assigned) == 2, 30, "two each")
    wait_for(lambda: len(set(m1.read) | set(m2.read)) >= 2000, 60, "every message")
    m1.stop()
    m2.stop()
    revokes = [e[1] for e in m1.events if e[0] == "revoke"]
    assert revokes and all(len(r) == 2 for r in revokes), f"incremental revocation only: {m1.events}"
    assert len(no_duplicates(m1, m2)) == 2000


def test_librdkafka_static_member_restart_does_not_rebalance(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "static4", 4)
    conf = {"session.timeout.ms": 15000}
    a = Member(b.bootstrap, "static4", "static-group", **{"group.instance.id": "pod-a"}, **conf)
    other = Member(b.bootstrap, "static4", "static-group", **{"group.instance.id": "pod-b"}, **conf)
    a.start()
    other.start()
    wait_for(lambda: len(a.assigned) == 2 and len(other.assigned) == 2, 30, "two each")
    held = set(a.assigned)
    seen = list(other.events)
    a.stop()  # a static member leaves no LeaveGroup behind
    again = Member(b.bootstrap, "static4", "static-group", **{"group.instance.id": "pod-a"}, **conf)
    again.start()
    wait_for(lambda: len(again.assigned) == 2, 30, "the restarted member's assignment")
    time.sleep(2.0)
    back, other_saw = set(again.assigned), list(other.events)
    again.stop()
    other.stop()
    assert back == held, "the same partitions come back"
    assert other_saw == seen, "the other member saw no rebalance"


def test_kcat_balanced_consumer_resumes_at_committed_offsets(group_broker):
    """Debian's kcat (librdkafka 2.0.2) as a group member: -G reads each message
    once, commits on exit, and a second run has nothing left to read."""
    b = group_broker
    if not shutil.which("kcat"):
        import pytest

        pytest.skip("kcat is not installed (scripts/test.sh installs it as root)")
    create_topic(b.bootstrap, "kcat3", 3)
    produce(b.bootstrap, "kcat3", 300)

    def run():
        out = subprocess.run(
            ["kcat", "-b", b.bootstrap, "-G", "kcat-group", "kcat3", "-e", "-q",
             "-X", "auto.offset.reset=earliest", "-f", "%p %o\\n"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return [tuple(map(int, line.split())) for line in out.stdout.splitlines() if line.strip()]

    first = run()
    assert len(first) == len(set(first)) == 300
    assert run() == [], "the second run starts at the committed offsets"


def test_kafka_python_group_members_and_admin_views(group_broker):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    b = group_broker
    create_topic(b.bootstrap, "kp3", 3)
    produce(b.bootstrap, "kp3", 3000)
    highs = high_watermarks(b.bootstrap, "kp3", 3)
    reads = [[], []]
    assigned = [set(), set()]
    stop = threading.Event()

    def member(i):
        c = KafkaConsumer(
            "kp3",
            bootstrap_servers=b.bootstrap,
            group_id="kp-group",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
            session_timeout_ms=10000,
            heartbeat_interval_ms=500,
        )
        while not stop.is_set():
            for tp, msgs in c.poll(timeout_ms=200).items():
                reads[i].extend((tp.partition, m.offset) for m in msgs)
            assigned[i] = {tp.partition for tp in c.assignment()}
        c.close()  # commits

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: len(set(reads[0]) | set(reads[1])) >= 3000, 60, "every message")
    wait_for(lambda: assigned[0] and assigned[1], 30, "both members hold partitions")
    assert not (assigned[0] & assigned[1]) and assigned[0] | assigned[1] == {0, 1, 2}
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        groups = admin.list_groups()
        assert "kp-group" in json.dumps(groups, default=str), groups
        desc = admin.describe_groups(["kp-group"])
        assert "Stable" in json.dumps(desc, default=str), desc
        stop.set()
        for t in threads:
            t.join(30)
        all_reads = reads[0] + reads[1]
        assert len(all_reads) == len(set(all_reads)) == 3000
        offsets = admin.list_group_offsets({"kp-group": None})
        committed = {tp.partition: om.offset for tp, om in offsets["kp-group"].items()}
        assert committed == highs, "lag is zero once all is read"
    finally:
        admin.close()
    c = KafkaConsumer(
        "kp3", bootstrap_servers=b.bootstrap, group_id="kp-group", auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    assert list(c) == [], "a new member starts at the committed offsets"
    assert {p: c.committed(TopicPartition("kp3", p)) for p in range(3)} == highs
    c.close()


def test_aiokafka_group_member_commits_manually(group_broker):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    b = group_broker
    create_topic(b.bootstrap, "aio3", 3)
    produce(b.bootstrap, "aio3", 3000)

    async def run():
        c = AIOKafkaConsumer(
            "aio3", bootstrap_servers=b.bootstrap, group_id="aio-group",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await c.start()
        seen = set()
        try:
            deadline = time.time() + 60
            while len(seen) < 3000 and time.time() < deadline:
                for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                    seen.update((tp.partition, m.offset) for m in msgs)
            await c.commit()
            committed = [await c.committed(TopicPartition("aio3", p)) for p in range(3)]
        finally:
            await c.stop()
        again = AIOKafkaConsumer("aio3", bootstrap_servers=b.bootstrap, group_id="aio-group", auto_offset_reset="earliest")
        await again.start()
        try:
            more = await again.getmany(timeout_ms=3000)
        finally:
            await again.stop()
        return seen, committed, more

    seen, committed, more = asyncio.run(run())
    assert len(seen) == 3000
    highs = high_watermarks(b.bootstrap, "aio3", 3)
    assert committed == [highs[p] for p in range(3)]
    assert not any(more.values()), "a new member starts at the committed offsets"


def test_kafkajs_group_consumer(group_broker):
    b = group_broker
    create_topic(b.bootstrap, "js3", 3)
    produce(b.bootstrap, "js3", 3000)
    js = HERE.parent / "js" / "consume_group.js"
    node = shutil.which("node")

    def run(expected, seconds):
        out = subprocess.run([node, str(js), b.bootstrap, "js3", "js-group", str(expected), str(seconds * 1000)],
                             capture_output=True, text=True, timeout=seconds + 60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run(3000, 60)
    assert first["read"] == first["unique"] == 3000
    highs = high_watermarks(b.bootstrap, "js3", 3)
    assert first["committed"] == {str(p): str(h) for p, h in highs.items()}
    again = run(0, 4)
    assert again["read"] == 0, "a new member starts at the committed offsets"


KIP848 = {"group.protocol": "consumer"}


def test_librdkafka_kip848_consumer_protocol(group_broker):
    """group.protocol=consumer: the broker assigns (uniform assignor), partitions
    move incrementally as members join and leave, commits carry member epochs,
    and after a broker restart a new member resumes at the committed offsets."""
    b = group_broker
    create_topic(b.bootstrap, "kip6", 6)
    produce(b.bootstrap, "kip6", 6000)
    members = [Member(b.bootstrap, "kip6", "kip-group", batch=20, pause=0.01, **KIP848) for _ in range(3)]
    for m in members:
        m.start()
        time.sleep(0.3)
    wait_for(lambda: all(len(m.assigned) == 2 for m in members), 30, "two partitions each")
    assert set().union(*(m.assigned for m in members)) == set(range(6))
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    desc = admin.describe_consumer_groups(["kip-group"])["kip-group"].result(timeout=20)
    assert desc.type == ConsumerGroupType.CONSUMER, "described through ConsumerGroupDescribe"
    assert desc.partition_assignor == "uniform"
    assert len(desc.members) == 3
    assert sorted(tp.partition for mem in desc.members for tp in mem.assignment.topic_partitions) == list(range(6))
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=20).valid}
    assert listed["kip-group"].type == ConsumerGroupType.CONSUMER

    # One member leaves: the other two take its partitions.
    members[2].stop()
    wait_for(lambda: len(members[0].assigned) == 3 and len(members[1].assigned) == 3, 20, "three each")
    wait_for(lambda: len(set().union(*(set(m.read) for m in members))) >= 6000, 60, "every message")
    time.sleep(0.5)
    for m in members[:2]:
        m.stop()
    assert len(no_duplicates(*members)) == 6000

    # After a broker restart a new member resumes at the committed offsets.
    produce(b.bootstrap, "kip6", 600, start=6000)
    b.stop()
    b.start()
    again = Member(b.bootstrap, "kip6", "kip-group", **KIP848)
    again.start()
    wait_for(lambda: len(again.read) >= 600, 60, "the new messages")
    time.sleep(1.0)
    again.stop()
    assert len(again.read) == 600, "only what was not committed is read"
    assert len(no_duplicates(*members, again)) == 6600


def test_librdkafka_kip848_regex_subscription(group_broker):
    """A pattern subscription with group.protocol=consumer: the broker matches
    topic names, including topics created after the member joined."""
    b = group_broker
    for t in ("kre-a", "kre-b", "other"):
        create_topic(b.bootstrap, t, 1)
        produce(b.bootstrap, t, 100)
    m = Member(b.bootstrap, "^kre-.*", "kre-group", **KIP848)
    m.start()
    try:
        wait_for(lambda: len(m.read) >= 200, 30, "both matching topics")
        create_topic(b.bootstrap, "kre-c", 1)
        produce(b.bootstrap, "kre-c", 100)
        wait_for(lambda: len(m.read) >= 300, 60, "the topic created later")
        time.sleep(0.5)
    finally:
        m.stop()
    assert len(m.read) == 300, "nothing from 'other', everything from kre-*"
