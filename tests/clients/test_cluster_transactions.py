"""Exactly-once consume-transform-produce on three brokers under faults,
Jepsen-style, checked from what a read_committed reader sees at the end.

Workload. An input topic (3 partitions, RF 3) holds 3000 records with
unique ids (key "<p>-<seq>", value "in-<p>-<seq>"), written before the
workers start. Three worker processes (txn_worker.py, librdkafka through
confluent-kafka), each a consumer of one group (read_committed, no auto
commit) and a transactional producer with its own transactional.id, loop:
consume up to 10 records, begin, produce one output record per input record
to the output topic (3 partitions, RF 3; output partition (p + seq) % 3, so
every transaction writes to the leaders of several brokers), send the
consumer's positions to the transaction with its group metadata, commit.
Every 7th transaction of a worker is aborted on purpose after its records
were acknowledged and its offsets sent, its records tagged "abort". After
an abort a worker rewinds to the group's committed offsets; after a fatal
error (fenced) it makes a new producer (init_transactions) and rewinds; a
commit that keeps failing has an unknown outcome, settled by a new
producer's init_transactions. A transactional call still blocked 5 s past
its own timeout counts as wedged (librdkafka's send_offsets_to_transaction
can wait forever for a group coordinator that went away: librdkafka issues
#5456, #5511): the producer is abandoned and a new one made. Workers pause
0.6 s after each commit while the faults run (so that the input lasts
through them), then go flat out until the group's committed offsets pass
the last input record.

Faults (SCHEDULE: one at a time, each healed before the next; none begins
after 90 s): kill -9 (down 3 s, then restarted) of the transaction
coordinator of a worker's transactional id (the broker every broker's
FindCoordinator names; the leader of the id's `__transaction_state`
partition is printed next to it), of an output partition's leader, of the
group coordinator (the leader of the group's `__consumer_offsets`
partition), of an input partition's leader; a transaction coordinator, an
output partition's leader and the group coordinator each cut off from its
peers by the fault proxies for 6 s, then healed. Of the holders of a role
(three workers' coordinators, three partitions' leaders) the broker hit
least so far is chosen; what else the broker held is reported. After each
fault: every broker agrees on the leaders of the topics' and the
coordinators' partitions again, and some worker commits again (else a
problem is recorded). The internal topics have 10 partitions each.

Checker (all brokers up, the network healed, the workers stopped, no
transaction open on the output: last stable offset = high watermark):
the output read read_committed from offset 0 and read_uncommitted, the
group's committed offsets (OffsetFetch, require_stable). Asserted:
- no record of an aborted transaction is read: none tagged "abort", none of
  a transaction a worker saw aborted;
- offsets and writes commit atomically: every input record below the group's
  committed offset of its partition is in the output exactly once, every one
  at or above it not at all (an offset committed without its writes loses
  records, writes committed without their offsets duplicate them);
- no committed record is lost: every transaction a worker saw committed is
  read in full, and every transaction read is read in full (n of n);
- per-partition order: in each output partition, the records of one input
  partition come in input order, and the records of one transaction in the
  order they were produced;
- read_uncommitted reads every read_committed record at the same offset,
  and the acknowledged records of the deliberately aborted transactions
  (the checks above have teeth: aborted records are there to be skipped);
- the workers finished: the group's committed offsets passed the last
  input record of each partition (a Raft control batch may follow it, so
  "at or past it", not "at the high watermark").

A summary (transactions committed/aborted, records, faults, the longest
time without a commit by any worker, and per fault the commits while it
lasted and how long until the next commit) is printed (`pytest -s`) and,
when SLUICE_FAULT_REPORT names a file, appended to it as Markdown tables
(by the cluster test only).

Every wait is bounded. Without a transaction coordinator in the cluster the
test fails within about 35 s, saying so: init_transactions must complete
within 30 s. Worker logs: worker-N.jsonl and worker-N.stderr in the
test's tmp_path (a worker still running when stopped first dumps its
Python stacks to its stderr).

test_harness_on_one_broker runs the same workers and checker on a single
broker (transactions work there), with the broker killed -9 and restarted
once: the harness itself is checked, so a failure of the cluster test is
the cluster's.

test_markers_go_through_the_internal_listeners_and_wait_out_a_cut checks
that the brokers' own Kafka requests (the leaders' verification, the
coordinator's WriteTxnMarkers) travel through the fault proxies, so that a
cut stops them: a cut-off coordinator's markers arrive only after the heal."""

import collections
import concurrent.futures
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from cluster_support import NODES, Cluster, kafka_call, metadata
from conftest import create_topic, running_broker

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent
WORKER = HERE / "txn_worker.py"

INPUT, OUTPUT, GROUP = "txn-fault-in", "txn-fault-out", "txn-fault-group"
PARTITIONS = 3
PER_PARTITION = 1000
WORKERS = 3
BATCH = 10
ABORT_EVERY = 7
PACE = 0.6  # s after each commit while faults run
TXN_TIMEOUT_MS = 10_000
INIT_TIMEOUT = 30  # the first init_transactions of each worker
FIRST_COMMIT_TIMEOUT = 30
KILL_DOWN = 3.0
CUT_FOR = 6.0
SETTLE = 2.0  # pause after a fault has healed and progress resumed
SCHEDULE_BUDGET = 90  # no fault starts after this many seconds
CONVERGE_TIMEOUT = 30
PROGRESS_TIMEOUT = 30
DRAIN_TIMEOUT = 60

TXN_TOPIC, OFFSETS_TOPIC = "__transaction_state", "__consumer_offsets"
TRANSACTION, GROUP_KEY = 1, 0  # FindCoordinator key types

CONFIG = (
    '"group.initial.rebalance.delay.ms" = 1000\n'
    '"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 1000\n'
    '"transaction.state.log.num.partitions" = 10\n'
    '"offsets.topic.num.partitions" = 10\n'
)

# The fault schedule: (what, whose role). Roles: "txn" (the transaction
# coordinator of a worker's id), "group" (the group coordinator), "out" and
# "in" (the leader of an output or input partition). Of a role's holders
# (one per worker or partition) the broker hit least so far is chosen.
SCHEDULE = [
    ("kill", "txn"),
    ("kill", "out"),
    ("kill", "group"),
    ("cut", "txn"),
    ("cut", "out"),
    ("kill", "in"),
    ("kill", "txn"),
    ("cut", "group"),
]


def tid(w):
    return f"txn-fault-worker-{w}"


# ---------------------------------------------------------------------------
# Coordinators.


def java_hash(s: str) -> int:
    """Java's String.hashCode (over UTF-16 units)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """Kafka's partition of a group or transactional id: Utils.abs(hashCode) % n."""
    h = java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def _kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def find_coordinator(port, key, key_type, timeout=3.0):
    """FindCoordinator v1 to the broker on `port`: (error code, node id)."""
    r = kafka_call(port, 10, 1, _kstr(key) + struct.pack(">b", key_type), timeout)
    r.i32()  # throttle
    err = r.i16()
    r.string()  # message
    node = r.i32()
    r.string()  # host
    r.i32()  # port
    return err, node


def coordinator_answers(ports, key, key_type):
    out = {}
    for n, port in ports.items():
        try:
            out[n] = find_coordinator(port, key, key_type)
        except (OSError, struct.error, AssertionError) as e:
            out[n] = repr(e)
    return out


def agreed_coordinator(cluster, key, key_type, timeout=15.0):
    """The node every live broker's FindCoordinator names (itself live)."""
    deadline = time.time() + timeout
    answers = {}
    while time.time() < deadline:
        live = cluster.live()
        answers = coordinator_answers({n: cluster.port(n) for n in live}, key, key_type)
        nodes = {a[1] for a in answers.values() if isinstance(a, tuple) and a[0] == 0}
        if len(nodes) == 1 and all(isinstance(a, tuple) and a[0] == 0 for a in answers.values()):
            node = nodes.pop()
            if node in live:
                return node
        time.sleep(0.1)
    raise AssertionError(f"no agreed coordinator of {key!r} (key type {key_type}) within {timeout}s: "
                         f"(error, node) by broker {answers}")


def partition_count(cluster, topic):
    """The partition count of `topic` as some live broker describes it, or None."""
    for n in cluster.live():
        try:
            t = metadata(cluster.port(n), [topic], timeout=2.0)["topics"].get(topic)
        except (OSError, struct.error, AssertionError):
            continue
        if t and t["error"] == 0 and t["partitions"]:
            return len(t["partitions"])
    return None


# ---------------------------------------------------------------------------
# Reading back.


def list_ends(admin, topic, partitions, committed, timeout=30.0):
    """ListOffsets latest (read_committed: the last stable offsets), retried
    through transient errors."""
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    deadline = time.time() + timeout
    while True:
        try:
            req = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
            futs = admin.list_offsets(req, isolation_level=level, request_timeout=10)
            return {tp.partition: f.result(timeout=15).offset for tp, f in futs.items()}
        except (KafkaException, concurrent.futures.TimeoutError) as e:
            if time.time() > deadline:
                raise AssertionError(f"ListOffsets {topic} ({level}) failed for {timeout}s: {e!r}") from e
            time.sleep(0.3)


def wait_stable(bootstrap, topic, partitions, timeout=45.0):
    """Waits until no transaction is open on the topic (last stable offsets =
    high watermarks); returns the ends."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + timeout
    while True:
        hw = list_ends(admin, topic, partitions, committed=False)
        lso = list_ends(admin, topic, partitions, committed=True)
        if lso == hw:
            return hw
        if time.time() > deadline:
            raise AssertionError(f"{topic}: a transaction still open after {timeout}s: last stable offsets {lso}, "
                                 f"high watermarks {hw}")
        time.sleep(0.2)


def read_topic(bootstrap, topic, ends, isolation, timeout=60.0):
    """Every record of the partitions `ends` from offset 0 until each reports
    its end at or past ends[p]: {p: [(offset, key, value)]}."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-fault-checker",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            "fetch.wait.max.ms": 100,
        }
    )
    out = {p: [] for p in ends}
    at = {p: -1 for p in ends}
    errors = collections.Counter()
    deadline = time.time() + timeout
    try:
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        while any(at[p] < end for p, end in ends.items()):
            if time.time() > deadline:
                raise AssertionError(f"{isolation} reader of {topic}: at {at} of {ends} after {timeout}s; "
                                     f"errors {dict(errors)}")
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at[m.partition()] = max(at[m.partition()], m.offset())
                    else:
                        errors[m.error().name()] += 1
                    continue
                if m.offset() < ends[m.partition()]:
                    out[m.partition()].append((m.offset(), m.key().decode(), m.value().decode()))
                at[m.partition()] = max(at[m.partition()], m.offset() + 1)
    finally:
        c.close()
    if errors:
        print(f"  {isolation} reader of {topic}: transient errors {dict(errors)}")
    return out


def group_committed(bootstrap, timeout=30.0):
    """The group's committed offsets of the input (OffsetFetch with
    require_stable: pending transactional offsets are waited for)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    deadline = time.time() + timeout
    try:
        while True:
            try:
                got = c.committed([TopicPartition(INPUT, p) for p in range(PARTITIONS)], timeout=10)
                if all(tp.error is None for tp in got):
                    return {tp.partition: tp.offset for tp in got}
                err = [str(tp.error) for tp in got if tp.error is not None]
            except KafkaException as e:
                err = str(e)
            if time.time() > deadline:
                raise AssertionError(f"the group's committed offsets: {err} for {timeout}s")
            time.sleep(0.3)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# The input.


def prefill(bootstrap):
    """Writes the input (acks=all, idempotent): {key: (partition, offset)}
    and, per partition, the offset after its last record."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 30000})
    where, failed = {}, []

    def report(err, msg):
        if err is not None:
            failed.append(err.name())
        else:
            where[msg.key().decode()] = (msg.partition(), msg.offset())

    for seq in range(PER_PARTITION):
        for part in range(PARTITIONS):
            key = f"{part}-{seq}"
            while True:
                try:
                    p.produce(INPUT, key=key.encode(), value=f"in-{key}".encode(), partition=part, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
    left = p.flush(40)
    assert left == 0 and not failed and len(where) == PARTITIONS * PER_PARTITION, (
        f"input: {len(where)} acknowledged, {left} unresolved, failed {collections.Counter(failed)}"
    )
    need = {part: max(o for q, o in where.values() if q == part) + 1 for part in range(PARTITIONS)}
    return where, need


# ---------------------------------------------------------------------------
# The workers.


class Workers:
    """The worker processes and the JSON lines they print (each also kept in
    worker-N.jsonl)."""

    def __init__(self, bootstrap, tmp_path, need, pace, deadline):
        self.bootstrap = bootstrap
        self.dir = tmp_path
        self.need = need
        self.pace = pace
        self.deadline = deadline
        self.fast_file = tmp_path / "faults-over"
        self.procs = {}
        self.events = []
        self.lock = threading.Lock()

    def start(self):
        for w in range(WORKERS):
            cfg = {
                "worker": w, "bootstrap": self.bootstrap, "input": INPUT, "output": OUTPUT, "group": GROUP,
                "transactional_id": tid(w), "out_partitions": PARTITIONS, "batch": BATCH,
                "abort_every": ABORT_EVERY, "pace": self.pace, "fast_file": str(self.fast_file),
                "txn_timeout_ms": TXN_TIMEOUT_MS, "init_timeout": INIT_TIMEOUT, "deadline": self.deadline,
                "need": {str(p): n for p, n in self.need.items()},
            }
            stderr = open(self.dir / f"worker-{w}.stderr", "w")
            proc = subprocess.Popen([sys.executable, str(WORKER), json.dumps(cfg)], stdout=subprocess.PIPE,
                                    stderr=stderr, text=True, cwd=HERE)
            stderr.close()
            self.procs[w] = proc
            threading.Thread(target=self._pump, args=(w, proc), daemon=True).start()

    def _pump(self, w, proc):
        with open(self.dir / f"worker-{w}.jsonl", "w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"ev": "raw", "w": w, "t": time.time(), "line": line.rstrip()}
                with self.lock:
                    self.events.append(ev)

    def of(self, *kinds, w=None):
        with self.lock:
            return [e for e in self.events if e["ev"] in kinds and (w is None or e.get("w") == w)]

    def commit_times(self):
        return sorted(e["t"] for e in self.of("commit"))

    def running(self):
        return [w for w, p in self.procs.items() if p.poll() is None]

    def go_fast(self):
        self.fast_file.touch()

    def wait_ready(self, cluster_ports):
        """Every worker's first init_transactions done within INIT_TIMEOUT, then
        a first commit within FIRST_COMMIT_TIMEOUT; fails the test at once,
        saying why, otherwise."""
        deadline = time.time() + INIT_TIMEOUT + 15
        while time.time() < deadline:
            settled = {e["w"] for e in self.of("init", "init_failed", "crash")}
            settled |= {w for w, p in self.procs.items() if p.poll() is not None}
            if len(settled) == WORKERS:
                break
            time.sleep(0.1)
        inited = {e["w"] for e in self.of("init")}
        if len(inited) < WORKERS:
            answers = {tid(w): coordinator_answers(cluster_ports, tid(w), TRANSACTION) for w in range(WORKERS)}
            errors = [f"worker {e['w']}: {e['ev']} {e.get('error')}" for e in self.of("init_failed", "crash")]
            errors += [f"worker {e['w']} {e.get('where')}: {e.get('error')}" for e in self.of("error")][:6]
            pytest.fail(
                f"init_transactions did not complete within {INIT_TIMEOUT}s for workers "
                f"{sorted(set(range(WORKERS)) - inited)} (done: {sorted(inited)}): the transactional producers "
                f"found no working transaction coordinator.\n  " + "\n  ".join(errors)
                + f"\n  FindCoordinator(TRANSACTION) now, (error, node) by broker: {answers}",
                pytrace=False,
            )
        took = {e["w"]: e["took"] for e in self.of("init")}
        print(f"  init_transactions took {took} s")
        deadline = time.time() + FIRST_COMMIT_TIMEOUT
        while not self.of("commit") and time.time() < deadline and self.running():
            time.sleep(0.1)
        if not self.of("commit"):
            errors = [f"worker {e['w']} {e.get('where')}: {e.get('error')}" for e in self.of("error")]
            pytest.fail(f"no transaction committed within {FIRST_COMMIT_TIMEOUT}s of init_transactions; "
                        f"running {self.running()}; errors:\n  " + "\n  ".join(errors[-12:]), pytrace=False)

    def wait_commit_after(self, t, timeout):
        """Seconds from `t` to the first commit after it (None when none came
        within `timeout`, or the workers are done)."""
        deadline = time.time() + timeout
        while True:
            after = [c for c in self.commit_times() if c >= t]
            if after:
                return after[0] - t
            if time.time() > deadline or not self.running() or self.finished():
                return None
            time.sleep(0.1)

    def finished(self):
        return bool(self.of("done")) and any(e.get("reason") == "finished" for e in self.of("done"))

    def wait_exit(self, timeout):
        deadline = time.time() + timeout
        while self.running() and time.time() < deadline:
            time.sleep(0.2)
        return not self.running()

    def stop(self):
        stuck = [p for p in self.procs.values() if p.poll() is None]
        for p in stuck:
            p.send_signal(signal.SIGUSR1)  # its Python stacks, into worker-N.stderr
        if stuck:
            time.sleep(0.5)
        for p in stuck:
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# ---------------------------------------------------------------------------
# The faults.


class Nemesis:
    def __init__(self, cluster, workers):
        self.cluster = cluster
        self.workers = workers
        self.faults = []
        self.problems = []
        self.hits = collections.Counter()

    def locate(self, role, timeout=15.0):
        """The node holding `role` now, and a note on how it was found."""
        c = self.cluster
        if role[0] == "in":
            return c.leader(INPUT, role[1], timeout=timeout)[0], f"{INPUT}-{role[1]}"
        if role[0] == "txn":
            node = agreed_coordinator(c, tid(role[1]), TRANSACTION, timeout)
            n = partition_count(c, TXN_TOPIC)
            if n:
                part = coordinator_partition(tid(role[1]), n)
                leader = c.leader(TXN_TOPIC, part, timeout=timeout)[0]
                note = f"{TXN_TOPIC}-{part} led by {leader}"
                if leader != node:
                    note += f" (FindCoordinator says {node})"
                return node, note
            return node, f"{TXN_TOPIC} not in Metadata"
        if role[0] == "group":
            node = agreed_coordinator(c, GROUP, GROUP_KEY, timeout)
            n = partition_count(c, OFFSETS_TOPIC)
            part = coordinator_partition(GROUP, n or 50)
            leader = c.leader(OFFSETS_TOPIC, part, timeout=timeout)[0]
            note = f"{OFFSETS_TOPIC}-{part} led by {leader}"
            return node, note + ("" if leader == node else f" (FindCoordinator says {node})")
        node = c.leader(OUTPUT, role[1], timeout=timeout)[0]
        return node, f"{OUTPUT}-{role[1]}"

    def roles_of(self, node):
        """Every tracked role `node` holds now (best effort)."""
        held = []
        for role in self.candidates("txn") + self.candidates("group") + self.candidates("out"):
            try:
                if self.locate(role, timeout=3.0)[0] == node:
                    held.append(name(role))
            except AssertionError:
                pass
        for p in range(PARTITIONS):
            v = self.cluster.partition_view(node, INPUT, p)
            if v and v["leader"] == node:
                held.append(name(("in", p)))
        return held

    @staticmethod
    def candidates(kind):
        if kind == "txn":
            return [("txn", w) for w in range(WORKERS)]
        if kind in ("out", "in"):
            return [(kind, p) for p in range(PARTITIONS)]
        return [("group",)]

    def pick(self, kind):
        """(role, node, note): of the holders of a role of `kind`, the one on
        the broker hit least so far (and not by the last fault, if it can)."""
        found, error = [], None
        for i, role in enumerate(self.candidates(kind)):
            try:
                node, note = self.locate(role, timeout=10.0 if error is None else 3.0)
            except AssertionError as e:
                error = e
                continue
            last = self.faults[-1]["node"] if self.faults else None
            found.append((self.hits[node], node == last, i, role, node, note))
        if not found:
            raise error
        return min(found)[3:]

    def tracked_partitions(self):
        parts = [(INPUT, p) for p in range(PARTITIONS)] + [(OUTPUT, p) for p in range(PARTITIONS)]
        n = partition_count(self.cluster, OFFSETS_TOPIC)
        if n:
            parts.append((OFFSETS_TOPIC, coordinator_partition(GROUP, n)))
        n = partition_count(self.cluster, TXN_TOPIC)
        if n:
            parts += sorted({(TXN_TOPIC, coordinator_partition(tid(w), n)) for w in range(WORKERS)})
        return parts

    def converge(self, timeout=CONVERGE_TIMEOUT):
        """Seconds until every broker agrees on the leader of every tracked
        partition."""
        start = time.time()
        for topic, p in self.tracked_partitions():
            self.cluster.leader(topic, p, among=NODES, timeout=max(timeout - (time.time() - start), 1.0))
        return time.time() - start

    def run(self, schedule, budget):
        began = time.time()
        for i, (kind, what) in enumerate(schedule):
            if time.time() - began > budget:
                print(f"  schedule budget of {budget}s spent: faults {i + 1}.. not injected")
                break
            if self.workers.finished() or not self.workers.running():
                print(f"  the workers are done: faults {i + 1}.. not injected")
                break
            try:
                role, node, note = self.pick(what)
            except AssertionError as e:
                self.problems.append(f"fault {i + 1} ({kind} {what}): could not locate it: {e}")
                print(f"  !! fault {i + 1}: {e}")
                continue
            self.hits[node] += 1
            also = [r for r in self.roles_of(node) if r != name(role)]
            f = {"n": i + 1, "kind": kind, "role": name(role), "node": node, "note": note, "also": also}
            f["at"] = time.time()
            if kind == "kill":
                self.cluster.kill9(node)
                time.sleep(KILL_DOWN)
                self.cluster.start([node])
            else:
                self.cluster.net.isolate(node)
                time.sleep(CUT_FOR)
                self.cluster.net.heal()
            f["healed"] = time.time()
            try:
                f["converged"] = self.converge()
            except AssertionError as e:
                self.problems.append(f"fault {i + 1} ({kind} {name(role)} on {node}): the cluster did not "
                                     f"converge within {CONVERGE_TIMEOUT}s after healing: {e}")
                self.faults.append(f)
                print(f"  !! {self.problems[-1]}")
                break
            f["resumed"] = self.workers.wait_commit_after(f["healed"], PROGRESS_TIMEOUT)
            if f["resumed"] is None and self.workers.running() and not self.workers.finished():
                self.problems.append(f"fault {i + 1} ({kind} {name(role)} on {node}): no transaction committed "
                                     f"within {PROGRESS_TIMEOUT}s after healing")
            commits = self.workers.commit_times()
            f["during"] = sum(1 for t in commits if f["at"] <= t < f["healed"])
            after = [t for t in commits if t >= f["at"]]
            f["first_after"] = after[0] - f["at"] if after else None
            self.faults.append(f)
            print(f"  fault {i + 1}: {kind} {name(role)} = broker {node} ({note}; also {also or 'nothing else'}); "
                  f"{f['during']} commits while it lasted, first commit {fmt(f['first_after'])} s after it, "
                  f"{fmt(f['resumed'])} s after healing; leaders agreed {f['converged']:.2f} s after healing")
            time.sleep(SETTLE)

    def heal_all(self):
        self.cluster.net.heal()
        down = sorted(self.cluster.down)
        if down:
            self.cluster.start(down)


def name(role):
    if role[0] == "in":
        return f"{INPUT}-{role[1]} leader"
    if role[0] == "txn":
        return f"txn coordinator of worker {role[1]}"
    if role[0] == "group":
        return "group coordinator"
    return f"{OUTPUT}-{role[1]} leader"


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


# ---------------------------------------------------------------------------
# The checker.


class Out:
    """One output record."""

    __slots__ = ("part", "offset", "key", "txn", "k", "n", "tag", "src", "seq")

    def __init__(self, part, offset, key, value):
        self.part, self.offset, self.key = part, offset, key
        ident, self.txn, kn, self.tag = value.split("|")
        assert ident == key, f"{OUTPUT}-{part}@{offset}: key {key} value {value}"
        self.k, self.n = (int(x) for x in kn.split("/"))
        self.src, self.seq = (int(x) for x in key.split("-"))


def check(where, need, rc_log, ru_log, committed, input_hw, workers):
    """Problems found (strings) and counts."""
    problems = []
    rc = [Out(p, o, k, v) for p, recs in rc_log.items() for o, k, v in recs]
    ru = [Out(p, o, k, v) for p, recs in ru_log.items() for o, k, v in recs]
    ev_commit = {e["txn"]: e for e in workers.of("commit")}
    ev_abort = {e["txn"]: e for e in workers.of("abort")}
    ev_unknown = {e["txn"]: e for e in workers.of("unknown")}

    def some(items, n=8):
        items = list(items)
        return ", ".join(map(str, items[:n])) + (f" ... ({len(items)})" if len(items) > n else "")

    # Nothing aborted is read.
    tagged = [r for r in rc if r.tag == "abort"]
    if tagged:
        problems.append(f"{len(tagged)} records of deliberately aborted transactions read committed: "
                        + some(f"{r.key} ({r.txn}) at {OUTPUT}-{r.part}@{r.offset}" for r in tagged))
    seen_aborted = [r for r in rc if r.txn in ev_abort]
    if seen_aborted:
        problems.append(f"{len(seen_aborted)} records of transactions their worker saw aborted read committed: "
                        + some(f"{r.key} ({r.txn}, {ev_abort[r.txn].get('reason', 'deliberate')}) at "
                               f"{OUTPUT}-{r.part}@{r.offset}" for r in seen_aborted))

    # Offsets and writes atomic: below the committed offset exactly once, at or above it never.
    copies = collections.defaultdict(list)
    for r in rc:
        copies[r.key].append(r)
    unknown_keys = [k for k in copies if k not in where]
    if unknown_keys:
        problems.append(f"records read committed for no input record: {some(unknown_keys)}")
    lost, twice, early = [], [], []
    for key, (p, offset) in sorted(where.items(), key=lambda kv: kv[1]):
        got = copies.get(key, [])
        if offset < committed.get(p, -1):
            if not got:
                lost.append(f"{key}@{offset}")
            elif len(got) > 1:
                twice.append(f"{key} in {[(r.txn, f'{r.part}@{r.offset}') for r in got]}")
        elif got:
            early.append(f"{key}@{offset} (committed offset {committed.get(p)}) in {[r.txn for r in got]}")
    if lost:
        problems.append(f"{len(lost)} input records below the group's committed offsets {committed} missing from the "
                        f"output (offsets committed without their writes, or committed writes lost): {some(lost)}")
    if twice:
        problems.append(f"{len(twice)} input records in the output more than once: {some(twice)}")
    if early:
        problems.append(f"{len(early)} input records at or above the group's committed offset in the output "
                        f"(writes committed without their offsets): {some(early)}")

    # Transactions whole.
    by_txn = collections.defaultdict(list)
    for r in rc:
        by_txn[r.txn].append(r)
    partial = [f"{t}: {len({r.k for r in rs})} of {rs[0].n}" for t, rs in by_txn.items()
               if sorted({r.k for r in rs}) != list(range(rs[0].n)) or len(rs) != rs[0].n]
    if partial:
        problems.append(f"{len(partial)} transactions read in part: {some(partial)}")
    missing_txns = [t for t in ev_commit if t not in by_txn]
    if missing_txns:
        problems.append(f"{len(missing_txns)} transactions their worker saw committed not read at all: "
                        f"{some(missing_txns)}")
    for t, e in ev_commit.items():
        if t in by_txn and len(by_txn[t]) != e["records"]:
            problems.append(f"{t}: committed with {e['records']} records, {len(by_txn[t])} read")

    # Order within each output partition.
    disorder = []
    for q in rc_log:
        last_seq, last_k = {}, {}
        for r in sorted((r for r in rc if r.part == q), key=lambda r: r.offset):
            if r.src in last_seq and r.seq <= last_seq[r.src][0]:
                disorder.append(f"{OUTPUT}-{q}: {r.key}@{r.offset} after {r.src}-{last_seq[r.src][0]}"
                                f"@{last_seq[r.src][1]}")
            last_seq[r.src] = (r.seq, r.offset)
            if r.txn in last_k and r.k <= last_k[r.txn]:
                disorder.append(f"{OUTPUT}-{q}: {r.txn} record {r.k} after its record {last_k[r.txn]}")
            last_k[r.txn] = r.k
    if disorder:
        problems.append(f"{len(disorder)} records out of order: {some(disorder)}")

    # read_uncommitted: a superset, with the aborted records.
    ru_at = {(r.part, r.offset): r for r in ru}
    moved = [f"{r.key}@{r.part}/{r.offset}" for r in rc
             if (r.part, r.offset) not in ru_at or ru_at[(r.part, r.offset)].txn != r.txn
             or ru_at[(r.part, r.offset)].key != r.key]
    if moved:
        problems.append(f"{len(moved)} read_committed records not at the same offset read_uncommitted: {some(moved)}")
    ru_txn = collections.Counter(r.txn for r in ru)
    acked_aborts = [e for e in ev_abort.values() if e.get("deliberate") and e.get("acked") == e["records"]]
    gone = [f"{e['txn']} ({ru_txn[e['txn']]} of {e['records']})" for e in acked_aborts
            if ru_txn[e["txn"]] < e["records"]]
    if gone:
        problems.append(f"acknowledged records of deliberately aborted transactions missing read_uncommitted: "
                        f"{some(gone)}")
    ru_tagged = sum(1 for r in ru if r.tag == "abort")
    if acked_aborts and not ru_tagged:
        problems.append("no aborted record in the log at all: the read_committed checks had nothing to skip")

    counts = {
        "input records": len(where),
        "output records read committed": len(rc),
        "output records in the log (read uncommitted)": len(ru),
        "aborted records in the log": len(ru) - len(rc),
        "of them tagged deliberately aborted": ru_tagged,
        "transactions committed": len(ev_commit),
        "transactions aborted on purpose": sum(1 for e in ev_abort.values() if e.get("deliberate")),
        "transactions aborted after an error": sum(1 for e in ev_abort.values() if not e.get("deliberate")),
        "transactions of unknown outcome (settled by a new producer)": len(ev_unknown),
        "of them read committed": sum(1 for t in ev_unknown if t in by_txn),
        "producers made again (init_transactions)": len([e for e in workers.of("init")]) - WORKERS,
        "consumer rewinds": len(workers.of("rewind")),
        "client calls wedged past their timeout (producer abandoned)": len(workers.of("wedged")),
        "batches dropped across a rebalance": len(workers.of("stale")),
    }

    # The workers finished.
    behind = {p: (committed.get(p), n) for p, n in need.items() if committed.get(p, -1) < n}
    if behind:
        problems.append(f"the workers did not finish: the group's committed offsets {committed}, the last input "
                        f"records end at {need} (behind: partition: (committed, needed) {behind})")
    beyond = {p: (o, input_hw[p]) for p, o in committed.items() if o > input_hw[p]}
    if beyond:
        problems.append(f"committed offsets past the input's high watermarks: {beyond}")
    return problems, counts


def stalls(workers):
    """The longest time with no commit anywhere (between the first and the
    last commit) and where it started."""
    times = workers.commit_times()
    if len(times) < 2:
        return None, None
    gap, at = max((b - a, a) for a, b in zip(times, times[1:]))
    return gap, at


def report(title, counts, faults, gap, errors, to_file):
    lines = [f"\n### {title}\n", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    lines.append(f"| longest time without a commit | {fmt(gap)} s |")
    if faults:
        lines += ["", "| # | fault | broker | also held | commits during | first commit after the fault (s) | "
                  "after healing (s) | leaders agreed after healing (s) |", "|---|---|---|---|---|---|---|---|"]
        for f in faults:
            lines.append(
                f"| {f['n']} | {f['kind']} {f['role']} | {f['node']} | {', '.join(f['also']) or '-'} | "
                f"{f.get('during', '-')} | {fmt(f.get('first_after'))} | {fmt(f.get('resumed'))} | "
                f"{fmt(f.get('converged'))} |"
            )
    if errors:
        lines += ["", "Client errors seen by the workers: "
                  + ", ".join(f"{k} ×{v}" for k, v in errors.most_common(12))]
    text = "\n".join(lines) + "\n"
    print(text)
    path = os.environ.get("SLUICE_FAULT_REPORT")
    if path and to_file:
        with open(path, "a") as fh:
            fh.write(text)


def verify(bootstrap, where, need, workers, title, faults=(), planned=0, extra_problems=(), to_file=True):
    started = time.time()
    out_ends = wait_stable(bootstrap, OUTPUT, PARTITIONS)
    rc_log = read_topic(bootstrap, OUTPUT, out_ends, "read_committed")
    ru_log = read_topic(bootstrap, OUTPUT, out_ends, "read_uncommitted")
    committed = group_committed(bootstrap)
    input_hw = list_ends(AdminClient({"bootstrap.servers": bootstrap}), INPUT, PARTITIONS, committed=False)
    problems, counts = check(where, need, rc_log, ru_log, committed, input_hw, workers)
    print(f"  read back in {time.time() - started:.1f}s: output ends {out_ends}, group offsets {committed}, "
          f"input high watermarks {input_hw}, last input records end at {need}")
    errors = collections.Counter()
    for e in workers.of("done"):
        errors.update(e.get("errors", {}))
    gap, gap_at = stalls(workers)
    if planned:
        counts["faults injected"] = f"{len(faults)} of {planned}"
    report(title, counts, faults, gap, errors, to_file)
    if gap is not None:
        near = [f for f in faults if f["at"] - 1 <= gap_at <= f.get("healed", f["at"]) + PROGRESS_TIMEOUT]
        print(f"  longest time without a commit: {gap:.2f}s from {time.strftime('%H:%M:%S', time.localtime(gap_at))}"
              + (f" (during/after fault {near[0]['n']}: {near[0]['kind']} {near[0]['role']})" if near else ""))
    problems = list(extra_problems) + problems
    crashed = [f"worker {e['w']}: {e.get('error')}" for e in workers.of("crash")]
    if crashed:
        problems.append(f"workers crashed: {crashed}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def deadline_for(schedule_seconds):
    return time.time() + INIT_TIMEOUT + FIRST_COMMIT_TIMEOUT + schedule_seconds + DRAIN_TIMEOUT + 30


# ---------------------------------------------------------------------------
# The tests.


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, config=CONFIG)
    started = time.monotonic()
    try:
        try:
            c.start()
            c.create_topic(INPUT, PARTITIONS, 3)
            c.create_topic(OUTPUT, PARTITIONS, 3)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        print(f"\ncluster ready (topics created, leaders agreed) after {time.monotonic() - started:.2f}s")
        yield c
        crashed = c.crashed()
        assert not crashed, "brokers exited on their own: " + ", ".join(
            f"{n} (code {c.brokers[n].proc.returncode})" for n in crashed
        )
    finally:
        c.shutdown()
        for n, b in c.brokers.items():
            text = b.log_path.read_text(errors="replace") if b.log_path.exists() else ""
            if "panicked" in text:
                print(f"!! broker {n} panicked; see {b.log_path}")


def test_exactly_once_through_broker_faults(cluster, tmp_path):
    t0 = time.monotonic()
    where, need = prefill(cluster.bootstrap)
    print(f"  input written ({len(where)} records; last records end at {need}) after {time.monotonic() - t0:.1f}s")
    workers = Workers(cluster.bootstrap, tmp_path, need, PACE, deadline_for(SCHEDULE_BUDGET + 60))
    nemesis = Nemesis(cluster, workers)
    workers.start()
    try:
        workers.wait_ready({n: cluster.port(n) for n in NODES})
        print(f"  workers committing after {time.monotonic() - t0:.1f}s; roles by broker: "
              f"{ {n: nemesis.roles_of(n) for n in NODES} }")
        schedule_began = time.monotonic()
        try:
            nemesis.run(SCHEDULE, SCHEDULE_BUDGET)
        finally:
            nemesis.heal_all()
            workers.go_fast()
        print(f"  faults over after {time.monotonic() - schedule_began:.1f}s; "
              f"{len(workers.of('commit'))} transactions committed so far")
        if workers.finished():
            print("  !! the input was drained before the faults were over: the later faults hit idle workers")
        drained = workers.wait_exit(DRAIN_TIMEOUT)
        print(f"  workers {'finished' if drained else 'still running'} after {time.monotonic() - t0:.1f}s")
    finally:
        workers.stop()
    extra = list(nemesis.problems)
    if not nemesis.faults:
        extra.append("no fault was injected")
    try:
        nemesis.converge()
    except AssertionError as e:
        extra.append(f"after the faults and the workers: {e}")
    for e in workers.of("done"):
        print(f"  worker {e['w']}: {e['reason']}, {e.get('counts')}")
    verify(cluster.bootstrap, where, need, workers, "Transactions under faults, three brokers",
           nemesis.faults, len(SCHEDULE), extra)
    print(f"  total {time.monotonic() - t0:.1f}s")


@pytest.fixture
def broker(tmp_path):
    # Named `broker` so that conftest's report hook prints its log on failure.
    with running_broker(tmp_path, CONFIG) as b:
        yield b


def test_harness_on_one_broker(broker, tmp_path):
    """The workers and the checker on one broker, killed -9 and restarted
    once while the workers run."""
    t0 = time.monotonic()
    create_topic(broker.bootstrap, INPUT, PARTITIONS)
    create_topic(broker.bootstrap, OUTPUT, PARTITIONS)
    where, need = prefill(broker.bootstrap)
    workers = Workers(broker.bootstrap, tmp_path, need, 0.1, deadline_for(20))
    workers.start()
    faults = []
    try:
        workers.wait_ready({1: broker.port})
        time.sleep(2)
        f = {"n": 1, "kind": "kill", "role": "the broker", "node": 1, "also": [], "at": time.time()}
        broker.kill9()
        time.sleep(1)
        broker.start()
        f["healed"] = time.time()
        f["resumed"] = workers.wait_commit_after(f["healed"], PROGRESS_TIMEOUT)
        commits = workers.commit_times()
        f["during"] = 0
        f["first_after"] = next((t - f["at"] for t in commits if t >= f["at"]), None)
        faults.append(f)
        print(f"  kill -9 and restart: first commit {fmt(f['resumed'])} s after the restart")
        workers.go_fast()
        assert workers.wait_exit(DRAIN_TIMEOUT), "the workers did not finish"
    finally:
        workers.stop()
    for e in workers.of("done"):
        print(f"  worker {e['w']}: {e['reason']}, {e.get('counts')}")
    verify(broker.bootstrap, where, need, workers, "Harness check, one broker", faults, 1, to_file=False)
    assert workers.of("abort"), "some transactions were aborted"
    print(f"  total {time.monotonic() - t0:.1f}s")


# ---------------------------------------------------------------------------
# Transaction markers travel between brokers over the internal listeners.

MARKERS_TOPIC, MARKERS_TID = "txn-markers", "txn-markers-producer"
# One replica per __transaction_state partition: the coordinator of an id
# stays its coordinator while cut off (no other broker can take over its
# partition), so what it can still reach is all that decides whether its
# markers arrive.
MARKERS_CONFIG = (
    '"transaction.state.log.num.partitions" = 3\n'
    '"transaction.state.log.replication.factor" = 1\n'
    '"transaction.state.log.min.isr" = 1\n'
    '"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 500\n'
)
MARKERS_CUT_HOLD = 2.0  # s the markers are kept cut off once they were tried


@pytest.fixture
def markers_cluster(tmp_path):
    c = Cluster(tmp_path, config=MARKERS_CONFIG)
    try:
        try:
            c.start()
            # Partitions are spread over the brokers registered when the
            # topic is created: wait for all of them.
            deadline = time.time() + 20
            while True:
                try:
                    listed = {n: sorted(metadata(c.port(n), [])["brokers"]) for n in NODES}
                except (OSError, struct.error, AssertionError) as e:
                    listed = repr(e)
                if listed == {n: list(NODES) for n in NODES}:
                    break
                assert time.time() < deadline, f"the brokers never all registered: {listed}"
                time.sleep(0.1)
            # One replica each, spread over the brokers: the partitions led
            # away from the coordinator stay led by the same broker while
            # the coordinator is cut off.
            c.create_topic(MARKERS_TOPIC, 3, 1)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        yield c
        crashed = c.crashed()
        assert not crashed, f"brokers exited on their own: {crashed}"
    finally:
        c.shutdown()


def _acked_produce(producer, partitions, value):
    errors = []
    for p in partitions:
        producer.produce(MARKERS_TOPIC, value=value, partition=p,
                         on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(15) == 0, "transactional records not delivered in 15 s"
    assert not errors, f"transactional records failed: {errors}"


def test_markers_go_through_the_internal_listeners_and_wait_out_a_cut(markers_cluster):
    """A transaction whose coordinator C leads none of its partitions: the
    partition leaders verify its appends with C and C sends them the markers,
    all through the fault proxies (inter-broker Kafka links, hello "SLKF").
    With C cut off by the proxies after the commit was asked for, C still
    decides it (its __transaction_state partition has no other replica) and
    tries to send the markers — the proxies refuse them — and the records
    stay invisible to read_committed (last stable offset below the high
    watermark) until the cut heals; then the markers arrive and the records
    are read."""
    cluster = markers_cluster
    net = cluster.net
    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "transactional.id": MARKERS_TID,
        "transaction.timeout.ms": 60_000,
        "linger.ms": 0,
    })
    producer.init_transactions(30)
    coordinator = agreed_coordinator(cluster, MARKERS_TID, TRANSACTION)
    leaders = {p: cluster.leader(MARKERS_TOPIC, p)[0] for p in range(3)}
    remote = [p for p, leader in leaders.items() if leader != coordinator]
    others = sorted({leaders[p] for p in remote})
    print(f"\n  coordinator {coordinator}; leaders {leaders}; partitions led elsewhere {remote}")
    assert remote, f"every partition of {MARKERS_TOPIC} is led by the coordinator {coordinator}"

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": "txn-markers-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 100,
    })
    seen = collections.Counter()

    def read(seconds):
        end = time.time() + seconds
        while time.time() < end:
            for m in consumer.consume(num_messages=100, timeout=0.2):
                if not m.error():
                    seen[m.value().decode()] += 1

    try:
        consumer.assign([TopicPartition(MARKERS_TOPIC, p, 0) for p in remote])

        # A transaction through healthy links: verification from the
        # leaders to C, markers from C to the leaders, all proxied.
        producer.begin_transaction()
        _acked_produce(producer, remote, b"first")
        producer.commit_transaction(30)
        with net.lock:
            links = dict(net.kafka_links)
        print(f"  inter-broker Kafka links carried by the proxies: {links}")
        for leader in others:
            assert links.get((coordinator, leader), 0) >= 1, (
                f"no inter-broker Kafka link from the coordinator {coordinator} to the leader {leader} "
                f"went through the proxies: {links}")
            assert links.get((leader, coordinator), 0) >= 1, (
                f"no verification link from the leader {leader} to the coordinator {coordinator} "
                f"went through the proxies: {links}")
        deadline = time.time() + 20
        while seen["first"] < len(remote):
            assert time.time() < deadline, f"the first transaction's records were not all read: {dict(seen)}"
            read(0.5)

        # The second transaction's records are acknowledged, then C is cut
        # off, then the commit is asked for.
        producer.begin_transaction()
        _acked_produce(producer, remote, b"second")
        with net.lock:
            refused_before = {leader: net.refused_kafka_links[(coordinator, leader)] for leader in others}
        net.isolate(coordinator)
        cut_at = time.time()
        outcome = {}

        def commit():
            try:
                producer.commit_transaction(90)
                outcome["ok"] = time.time()
            except KafkaException as e:
                outcome["error"] = e

        committer = threading.Thread(target=commit, daemon=True)
        committer.start()
        try:
            # C decides the commit and tries its markers: the proxies refuse
            # C's links to every leader.
            deadline = time.time() + 20
            while True:
                with net.lock:
                    tried = all(net.refused_kafka_links[(coordinator, leader)] > refused_before[leader]
                                for leader in others)
                if tried:
                    break
                assert seen["second"] == 0, (
                    f"read_committed read the second transaction while its coordinator was cut off: {dict(seen)}")
                assert time.time() < deadline, (
                    f"the coordinator {coordinator} never tried to reach the leaders {others} while cut off: "
                    f"refused links {dict(net.refused_kafka_links)}, carried {dict(net.kafka_links)}")
                read(0.2)
            tried_at = time.time()
            print(f"  markers tried and refused {tried_at - cut_at:.1f}s into the cut")
            read(MARKERS_CUT_HOLD)
            hw = list_ends(admin, MARKERS_TOPIC, 3, committed=False)
            lso = list_ends(admin, MARKERS_TOPIC, 3, committed=True)
            assert "ok" not in outcome, f"the commit completed while its coordinator was cut off: {outcome}"
            assert seen["second"] == 0, f"read_committed read the second transaction during the cut: {dict(seen)}"
            for p in remote:
                assert lso[p] < hw[p], (
                    f"{MARKERS_TOPIC}-{p}: last stable offset {lso[p]} reached the high watermark {hw[p]} "
                    f"while the coordinator was cut off: a marker arrived")
        finally:
            net.heal()
        healed_at = time.time()

        deadline = time.time() + 30
        while seen["second"] < len(remote):
            assert time.time() < deadline, (
                f"the second transaction was not read within 30 s of the heal: {dict(seen)}; "
                f"refused links {dict(net.refused_kafka_links)}")
            read(0.2)
        print(f"  the second transaction read {time.time() - healed_at:.1f}s after the heal")
        committer.join(60)
        assert not committer.is_alive(), "commit_transaction still blocked 60 s after the heal"
        assert "ok" in outcome, f"commit_transaction failed: {outcome.get('error')!r}"
        ends = wait_stable(cluster.bootstrap, MARKERS_TOPIC, 3, timeout=20)
        print(f"  stable at {ends}")
    finally:
        consumer.close()
        producer.flush(5)
