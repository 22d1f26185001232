"""A bounded chaos run: faults at random while real clients work.

Four brokers (the controller quorum is 1, 2, 3; broker 4 does not vote)
hold a topic of four partitions with three replicas each. An idempotent
acks=all librdkafka producer writes to every partition and a consumer group
member reads and commits, while a seeded schedule picks a fault every
second or two: kill -9 of a broker (restarted a few seconds later), SIGSTOP
of a broker for a few seconds (a leader that stops answering and then wakes
up, still believing it leads), cutting a broker off from the others (and
healing), reassigning a partition to three random brokers, or wiping broker
4's disk (kill -9, its data folder deleted, started again on an empty one:
it comes back as a new incarnation of itself, see docs/ARCHITECTURE.md "A
disk that forgets"). At the end
every fault is undone and the checker reads every partition back:

- nothing acknowledged is missing, and each value sits at the offset its
  acknowledgement gave, in acknowledgement order;
- no value is stored twice under one producer epoch (idempotence). A value
  stored twice under two epochs is counted and printed, not failed:
  librdkafka bumps its producer epoch when a partition answers
  OUT_OF_ORDER_SEQUENCE_NUMBER, even for a batch that only follows one
  that failed over a leader change (librdkafka issue 4953), and then sends
  again, under the new epoch, batches of other partitions whose earlier
  attempt was in fact stored; no broker can recognise those (a new epoch
  starts the sequences again), Kafka included. The copies' producer epochs
  are read from the replicas' segment files;
- offsets are dense (records numbered consecutively: no transactions, no
  compaction here);
- the group's committed offsets never go back, and the member never got an
  offset lower than one it had already got in the same assignment.

It prints the figures (operations, faults by kind, the longest time a
partition acknowledged nothing). `SLUICE_CHAOS_SECONDS` (default 40) and
`SLUICE_CHAOS_SEED` (default 1) set the length and the schedule: CI runs the
short form; docs/FAULTS.md says how to run it long."""

import ast
import collections
import os
import re
import random
import shutil
import signal
import time

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from cluster_support import VALUE_RE, Cluster, GroupReader, Workload, assert_no_problems, check_acked, read_partitions

SECONDS = float(os.environ.get("SLUICE_CHAOS_SECONDS", "40"))
SEED = int(os.environ.get("SLUICE_CHAOS_SEED", "1"))
NODES = [1, 2, 3, 4]
TOPIC = "chaos"
PARTITIONS = 4

pytestmark = pytest.mark.timeout(int(SECONDS) + 360)


class Chaos:
    """The fault schedule: at most one broker down, stopped or cut off at
    a time, so a majority of every partition and of the quorum stays."""

    def __init__(self, cluster, rng):
        self.c = cluster
        self.rng = rng
        self.faults = collections.Counter()
        self.undo = None  # (when, what) of the fault in force
        self.admin_bootstrap = ",".join(cluster.brokers[n].bootstrap for n in (1, 2, 3))

    def step(self, now):
        if self.undo is not None:
            if now >= self.undo[0]:
                self.undo[1]()
                self.undo = None
            return
        kind = self.rng.choice(["kill", "pause", "cut", "reassign", "wipe"])
        node = self.rng.choice(NODES)
        hold = self.rng.uniform(2, 6)
        if kind == "wipe":
            # Only the broker that does not vote: a wiped controller voter is
            # taken out of the quorum first (RemoveRaftVoter), by hand.
            node = 4
            self.c.kill9(node)
            shutil.rmtree(self.c.brokers[node].data_dir)
            self.undo = (now + hold, lambda: self.c.start([node], timeout=60))
            self.faults[kind] += 1
            return
        b = self.c.brokers[node]
        if kind == "kill":
            self.c.kill9(node)
            self.undo = (now + hold, lambda: self.c.start([node], timeout=60))
        elif kind == "pause":
            os.kill(b.proc.pid, signal.SIGSTOP)
            self.undo = (now + hold, lambda: os.kill(b.proc.pid, signal.SIGCONT))
        elif kind == "cut":
            if node not in self.c.voters:
                kind = "reassign"  # broker 4 talks to the others directly
            else:
                self.c.net.isolate(node)
                self.undo = (now + hold, self.c.net.heal)
        if kind == "reassign":
            p = self.rng.randrange(PARTITIONS)
            target = self.rng.sample(NODES, 3)
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.admin_bootstrap, request_timeout_ms=10000)
                try:
                    admin.alter_partition_reassignments({TopicPartition(TOPIC, p): target})
                finally:
                    admin.close()
            except Exception as e:  # a broker down or cut off: counted, not fatal
                self.faults["reassign refused: " + type(e).__name__] += 1
                return
        self.faults[kind] += 1

    def end(self):
        if self.undo is not None:
            self.undo[1]()
            self.undo = None
        self.c.net.heal()


def stored_copies(cluster, topic, partition):
    """{value: [producer epoch of each copy]} from the segment files of a
    replica of the partition (uncompressed v2 batches: the header's fields
    at their fixed places; control batches left out)."""
    folder = next(
        d for n in cluster.ids if (d := cluster.brokers[n].data_dir / f"{topic}-{partition}").is_dir()
    )
    copies = collections.defaultdict(list)
    for f in sorted(folder.glob("*.log")):
        b = f.read_bytes()
        i = 0
        while i + 61 <= len(b):
            length = int.from_bytes(b[i + 8:i + 12], "big", signed=True)
            control = int.from_bytes(b[i + 21:i + 23], "big") & 0x20
            if not control:
                epoch = int.from_bytes(b[i + 51:i + 53], "big", signed=True)
                for v in VALUE_RE.findall(b[i:i + 12 + length]):
                    copies[v].append(epoch)
            i += 12 + length
    return copies


def without_epoch_bump_copies(cluster, topic, partitions, problems):
    """The problems but the duplicates whose copies all carry different
    producer epochs (see the module's docstring); and how many values
    those were."""
    bumped = {}
    for p in range(partitions):
        twice = {v: e for v, e in stored_copies(cluster, topic, p).items() if len(e) > 1}
        if twice and all(len(set(e)) == len(e) for e in twice.values()):
            bumped[p] = set(twice)
    kept = []
    for problem in problems:
        m = re.match(rf"{re.escape(topic)}-(\d+): (b'[^']*') stored \d+ times|{re.escape(topic)}-(\d+): \.\.\. \d+ values stored", problem)
        if m:
            p = int(m.group(1) or m.group(3))
            value = m.group(2)
            if p in bumped and (value is None or ast.literal_eval(value) in bumped[p]):
                continue
        kept.append(problem)
    return kept, sum(len(v) for v in bumped.values())


def test_chaos_run(tmp_path):
    rng = random.Random(SEED)
    c = Cluster(tmp_path, nodes=NODES, voters=[1, 2, 3], node_config={4: 'process.roles = "broker"\n'})
    member = None
    w = None
    try:
        c.start()
        c.create_topic(TOPIC, PARTITIONS, 3)
        w = Workload(c.bootstrap, [(TOPIC, p) for p in range(PARTITIONS)], pause=0.01)
        w.start()
        member = GroupReader(c.bootstrap, TOPIC, "chaos-readers", **{"session.timeout.ms": 30000})
        chaos = Chaos(c, rng)
        started = time.monotonic()
        next_fault = started + 2
        while time.monotonic() - started < SECONDS:
            now = time.monotonic()
            if now >= next_fault:
                chaos.step(now)
                next_fault = now + rng.uniform(1, 2)
            time.sleep(0.1)
        chaos.end()
        ended = time.monotonic()
        # Every fault undone: the cluster settles, the reassignments finish.
        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)
        try:
            deadline = time.monotonic() + 90
            while admin.list_partition_reassignments():
                assert time.monotonic() < deadline, admin.list_partition_reassignments()
                time.sleep(0.5)
        finally:
            admin.close()
        for p in range(PARTITIONS):
            w.wait_acks(20, timeout=60, since=time.monotonic(), target=(TOPIC, p))
        w.stop()
        time.sleep(3)  # the member reads the last records and commits them
        member.stop()

        longest = max(w.max_gap((TOPIC, p), started, ended) for p in range(PARTITIONS))
        print(f"\n  chaos seed {SEED}, {SECONDS:.0f} s: faults {dict(chaos.faults)}")
        print("  " + w.summary())
        print(f"  longest time a partition acknowledged nothing: {longest:.2f} s")
        print(f"  group member: read {member.read}, assignments {member.assignments}, "
              f"commits {len(member.commits)}, errors {dict(member.errors)}")

        assert w.idempotent and not w.fatal, w.summary()
        problems, bumped = without_epoch_bump_copies(c, TOPIC, PARTITIONS, check_acked(w, TOPIC, PARTITIONS, timeout=60))
        print(f"  values stored twice under two producer epochs (client epoch bumps): {bumped}")
        assert_no_problems(problems)
        logs = read_partitions(c.bootstrap, TOPIC, PARTITIONS, timeout=60)
        for p, log in logs.items():
            offsets = [o for o, _, _ in log]
            assert offsets == list(range(len(offsets))), f"{TOPIC}-{p}: offsets not dense"
        member.check()
        assert member.read > 0 and member.commits
        assert sum(chaos.faults.values()) >= SECONDS / 10, chaos.faults
        assert not c.crashed(), c.crashed()
    finally:
        if member is not None:
            member.stop()
        if w is not None and w._thread is not None and not w._stop.is_set():
            w.stop(flush_timeout=5)
        for b in c.brokers.values():
            if b.proc and b.proc.poll() is None:
                os.kill(b.proc.pid, signal.SIGCONT)
        c.shutdown()
