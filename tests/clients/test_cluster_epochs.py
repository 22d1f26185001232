"""Partition leader epochs on three brokers (Raft replication factor 3), seen
through real clients.

A partition's leader epoch is its Raft term: every batch written carries it
in its header (partitionLeaderEpoch), Metadata (v7+) reports it per
partition, ListOffsets (v4+) gives the epoch of the offset it returns (for
"latest", the current epoch), and OffsetForLeaderEpoch (KIP-320) answers
where an epoch ends in the log, which the Java consumer asks after a leader
change to validate its position. A request naming an older
current_leader_epoch than the broker's is answered FENCED_LEADER_EPOCH
(74), a newer one UNKNOWN_LEADER_EPOCH (75).

Leadership is moved with `Cluster.make_leader` (the third broker cut off
while a few records are written, the current leader killed: only the chosen
broker holds every committed entry, so only it can win the election). The
killed broker stays down while the new leader is checked. A returning
preferred replica (the first of the partition's replicas) does not take its
leadership back by itself; a preferred election (ElectLeaders) gives it
back.

- Java clients (kafka-clients, tests/java/src/EpochDriver.java, one JVM per
  test driven over stdin): a producer with the defaults (idempotent,
  acks=all; only its delivery timeout shortened), Admin
  listOffsets(latest).leaderEpoch() after each leader change, consumers
  reading from the beginning (ConsumerRecord.leaderEpoch()), and a consumer
  holding a position in the old epoch when leadership moves;
- kafka-python's Admin client (describe_topics: Metadata's leader_epoch),
  compared with what the Java Admin client's ListOffsets says;
- kafka-python's protocol classes sent through its network client for what no
  client lets an application send: stale and future current_leader_epoch in
  ListOffsets, OffsetForLeaderEpoch and Fetch, to the leader and to a
  follower, and OffsetForLeaderEpoch's end offsets checked against the
  epochs librdkafka reads back.

Run with `pytest -s` to see the epochs and timings."""

import collections
import json
import queue
import subprocess
import threading
import time

import pytest
from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient
from kafka.protocol.consumer.fetch import FetchRequest
from kafka.protocol.consumer.offsets import ListOffsetsRequest, OffsetForLeaderEpochRequest

from cluster_support import NODES, Cluster, failover_producer_config, read_partitions
from java_support import JAVA_DIR, java_command

pytestmark = pytest.mark.timeout(90)

NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75

# The consumer's DEBUG lines about validating its position (KIP-320), in the
# driver's log: printed, and asserted on in the mid-read test.
DEBUG_LOGGERS = [
    "org.apache.kafka.clients.consumer.internals.OffsetsForLeaderEpochUtils",
    "org.apache.kafka.clients.consumer.internals.SubscriptionState",
    "org.apache.kafka.clients.consumer.internals.OffsetFetcher",
]
VALIDATED = "Handling OffsetsForLeaderEpoch response"
TRUNCATION_OR_RESET = ("Truncation detected", "Resetting offset", "LogTruncationException", "OffsetOutOfRange")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    started = time.monotonic()
    try:
        try:
            c.start()
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        print(f"\ncluster listening after {time.monotonic() - started:.2f}s")
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


# ---------------------------------------------------------------------------
# The Java driver (EpochDriver): one JVM, one command a line.


class JavaDriver:
    def __init__(self, bootstrap, topic, log_path):
        cmd = java_command("EpochDriver", bootstrap, topic)
        cmd[1:1] = [f"-Dorg.slf4j.simpleLogger.log.{name}=debug" for name in DEBUG_LOGGERS]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=JAVA_DIR
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._expect("ready", 30)

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _expect(self, name, timeout):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"EpochDriver: no answer to {name!r} within {timeout}s\n{self.log_tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"EpochDriver exited (code {self.proc.poll()}) before answering {name!r}\n{self.log_tail()}")
            line = line.strip()
            if line.startswith("{"):
                reply = json.loads(line)
                if reply.get("reply") == name:
                    return reply

    def call(self, *args, timeout=60):
        self.proc.stdin.write(" ".join(str(a) for a in args) + "\n")
        self.proc.stdin.flush()
        return self._expect(str(args[0]), timeout)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "--- EpochDriver log (tail) ---\n" + "\n".join(self.log().splitlines()[-n:])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=15)
            except (AssertionError, OSError):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def java_driver(cluster, tmp_path):
    drivers = []

    def start(topic):
        d = JavaDriver(cluster.bootstrap, topic, tmp_path / f"java-{topic}.log")
        drivers.append(d)
        return d

    yield start
    for d in drivers:
        d.close()


class Writer:
    """Records "v<i>" produced through the Java driver, in order; each
    produce() remembers the (leader, epoch) that held all along it, when it
    did not change."""

    def __init__(self, driver, cluster, topic):
        self.d, self.cluster, self.topic = driver, cluster, topic
        self.values = []
        self.batches = []  # (first index, count, (leader, epoch) or None)

    def produce(self, count, live=None):
        before = settled(self.cluster, self.topic, live)
        first = len(self.values)
        r = self.d.call("produce", first, count, timeout=60)
        assert r["ok"] and r["acked"] == count, f"produce of {count}: {r}\n{self.d.log_tail()}"
        after = settled(self.cluster, self.topic, live)
        self.values += [f"v{i}" for i in range(first, first + count)]
        self.batches.append((first, count, before if before == after else None))
        return before if before == after else None


# ---------------------------------------------------------------------------
# What the brokers and the clients say.


def settled(cluster, topic, live=None, timeout=20.0):
    """(leader, epoch) of partition 0 once every live broker reports the same
    leader (one of them) and the same epoch in Metadata."""
    live = list(live or cluster.live())
    deadline = time.time() + timeout
    views = {}
    while time.time() < deadline:
        views = {n: cluster.partition_view(n, topic, 0) for n in live}
        seen = {(v["leader"], v["epoch"]) for v in views.values() if v}
        if all(views.values()) and len(seen) == 1:
            leader, epoch = seen.pop()
            if leader in live:
                return leader, epoch
        time.sleep(0.05)
    raise AssertionError(f"{topic}-0: live brokers {live} never agreed on leader and epoch: {views}")


def kafka_python_metadata(cluster, topic, node):
    """kafka-python's Admin client (bootstrapped on broker `node`):
    describe_topics' partition 0, with Metadata's leader_epoch."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.brokers[node].bootstrap, request_timeout_ms=10000)
    try:
        # It sends Metadata to its "least loaded" broker, which may be the one
        # killed (brokers still list it), and fails on the refused connection
        # instead of trying another: again, with that broker backed off.
        for attempt in range(5):
            try:
                [t] = admin.describe_topics([topic])
                break
            except KafkaError as e:
                if attempt == 4:
                    raise
                print(f"  kafka-python describe_topics: {e!r}; again")
                time.sleep(0.2)
    finally:
        admin.close()
    assert t["error_code"] == 0, t
    [p] = [p for p in t["partitions"] if p["partition_index"] == 0]
    return p


def observe(driver, cluster, topic, live=None, attempts=5):
    """The current epoch as the Java Admin client's listOffsets(latest) and
    kafka-python's describe_topics (Metadata) give it, both asked while
    every live broker agreed on one (leader, epoch) before and after:
    {"leader", "epoch" (Metadata, raw), "list": the Java reply, "md": the
    kafka-python partition}."""
    live = list(live or cluster.live())
    for _ in range(attempts):
        before = settled(cluster, topic, live)
        listed = driver.call("latest", timeout=40)
        assert listed["ok"], f"Admin listOffsets(latest): {listed}\n{driver.log_tail()}"
        md = kafka_python_metadata(cluster, topic, before[0])
        if settled(cluster, topic, live) == before:
            return {"leader": before[0], "epoch": before[1], "list": listed, "md": md}
        print(f"  leadership moved while observing (was {before}); again")
    raise AssertionError(f"{topic}-0: leadership kept moving while observing epochs")


def check_epochs_agree(obs):
    listed, md = obs["list"], obs["md"]
    assert listed["leader_epoch"] >= 0, f"Admin listOffsets(latest) gave no leader epoch: {listed}"
    assert md["leader_id"] == obs["leader"], f"kafka-python Metadata names leader {md['leader_id']}, brokers {obs['leader']}"
    assert md["leader_epoch"] == listed["leader_epoch"] == obs["epoch"], (
        f"leader epoch by source: Java listOffsets(latest) {listed['leader_epoch']}, "
        f"kafka-python describe_topics (Metadata) {md['leader_epoch']}, raw Metadata v7 {obs['epoch']} "
        f"(leader {obs['leader']})"
    )


def read_and_check(driver, writer, latest):
    """A Java consumer reads the partition from the beginning: every value
    produced once, in produce order, epochs never going down, each stable
    produce batch carrying its leader's epoch, and the last records the
    newest epoch (the one listOffsets(latest) gave)."""
    r = driver.call("read", 30000, timeout=60)
    assert r["ok"], f"Java read: {r}\n{driver.log_tail()}"
    records = r["records"]
    offsets = [o for o, _, _ in records]
    values = [v for _, v, _ in records]
    counts = collections.Counter(values)
    twice = [v for v, c in counts.items() if c > 1]
    missing = [v for v in writer.values if v not in counts]
    assert not twice and not missing, f"read {len(values)} of {len(writer.values)}: twice {twice[:10]}, missing {missing[:10]}"
    assert values == writer.values, "records out of produce order"
    assert offsets == sorted(offsets), "offsets out of order"
    assert r["end"] == latest["offset"], f"endOffsets {r['end']} but listOffsets(latest) {latest['offset']}"
    epochs = [e for _, _, e in records]
    assert all(e >= 0 for e in epochs), f"records without a leader epoch: {[x for x in records if x[2] < 0][:5]}"
    down = [(a, b) for a, b in zip(records, records[1:]) if b[2] < a[2]]
    assert not down, f"leader epoch goes down along the log: {down[:5]}"
    by_value = {v: (o, e) for o, v, e in records}
    for first, count, held in writer.batches:
        if held is None:
            continue
        wrong = [(v, by_value[v]) for v in writer.values[first : first + count] if by_value[v][1] != held[1]]
        assert not wrong, (
            f"records v{first}..v{first + count - 1} were acknowledged while {held[0]} led in epoch {held[1]}, "
            f"but carry other epochs: {wrong[:5]}"
        )
    assert epochs[-1] == latest["leader_epoch"], (
        f"the last record (offset {offsets[-1]}) carries epoch {epochs[-1]}, listOffsets(latest) says {latest['leader_epoch']}"
    )
    runs = []
    for o, _, e in records:
        if not runs or runs[-1][0] != e:
            runs.append([e, o, o, 0])
        runs[-1][2] = o
        runs[-1][3] += 1
    print(f"  Java read {len(records)} records up to {r['end']}; epochs along the log (epoch, first, last offset, records): "
          f"{[tuple(x) for x in runs]}")
    return records


def preferred_replica(cluster, topic):
    v = cluster.partition_view(cluster.live()[0], topic, 0)
    return v["replicas"][0]


def wait_leader(cluster, topic, node, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        leader, _ = cluster.leader(topic, 0, timeout=max(deadline - time.time(), 1.0))
        if leader == node:
            return True
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------------------
# 1. Epochs rise with every leader, and every client sees the same ones.


def test_epochs_rise_with_each_leader_and_reach_every_client(cluster, java_driver):
    topic = "epochs"
    cluster.create_topic(topic, 1, 3)
    d = java_driver(topic)
    w = Writer(d, cluster, topic)

    preferred = preferred_replica(cluster, topic)
    wait_leader(cluster, topic, preferred, 15)
    w.produce(100)
    obs = observe(d, cluster, topic)
    check_epochs_agree(obs)
    history = [(obs["leader"], obs["list"]["leader_epoch"])]
    print(f"  {obs['leader']} leads (preferred replica {preferred}), epoch {history[-1][1]}; "
          f"listOffsets(latest) {obs['list']}")
    read_and_check(d, w, obs["list"])

    leaders_used = {obs["leader"]}
    for move in (1, 2):
        target = next(n for n in NODES if n not in leaders_used)
        current, _ = cluster.leader(topic, 0)
        started = time.monotonic()
        # (While the third broker is cut off, only the two others are asked
        # about the leader: the cut-off one has its own idea.)
        killed = cluster.make_leader(topic, 0, target, lambda: w.produce(30, [current, target]))
        assert killed is not None, f"{target} led already"
        live = [n for n in NODES if n != killed]
        w.produce(100, live)
        obs = observe(d, cluster, topic, live)
        check_epochs_agree(obs)
        epoch = obs["list"]["leader_epoch"]
        print(f"  move {move}: {current} -> {obs['leader']} in {time.monotonic() - started:.2f}s; epoch {history[-1][1]} -> {epoch}")
        assert obs["leader"] == target, f"{obs['leader']} leads, not {target}"
        assert epoch > history[-1][1], f"listOffsets(latest) epoch {epoch} after moving leadership to {target}, before {history[-1][1]}"
        history.append((target, epoch))
        leaders_used.add(target)
        read_and_check(d, w, obs["list"])

        # The killed broker comes back; when it is the preferred replica a
        # preferred election gives it its leadership back: one more epoch.
        cluster.start([killed])
        if move == 1 and killed == preferred:
            if cluster.elect_preferred(topic, 0) == preferred:
                w.produce(20)
                obs = observe(d, cluster, topic)
                check_epochs_agree(obs)
                epoch = obs["list"]["leader_epoch"]
                print(f"  {preferred} took its leadership back: epoch {history[-1][1]} -> {epoch}")
                assert epoch > history[-1][1], f"epoch {epoch} after {preferred} took leadership back, before {history[-1][1]}"
                history.append((preferred, epoch))
                read_and_check(d, w, obs["list"])
    print(f"  (leader, epoch) history: {history}")
    assert len({n for n, _ in history}) == 3, f"leadership did not visit all three brokers: {history}"


# ---------------------------------------------------------------------------
# 2. A consumer holding a position in the old epoch goes on after the move.


def test_consumer_mid_read_validates_and_goes_on_after_leader_change(cluster, java_driver):
    topic = "epochs-mid-read"
    cluster.create_topic(topic, 1, 3)
    d = java_driver(topic)
    w = Writer(d, cluster, topic)
    preferred = preferred_replica(cluster, topic)
    wait_leader(cluster, topic, preferred, 15)
    held = w.produce(200)
    old_leader, old_epoch = held or settled(cluster, topic)

    start = d.call("follow-start", 100, timeout=45)
    assert start["ok"], f"follow-start: {start}\n{d.log_tail()}"
    print(f"  the consumer read {len(start['records'])} records from {old_leader} (epoch {old_epoch}), "
          f"position {start['position']}, last record's epoch {start['last_epoch']}")
    assert start["last_epoch"] == old_epoch, start
    log_mark = len(d.log())

    target = next(n for n in NODES if n != old_leader)
    killed = cluster.make_leader(topic, 0, target, lambda: w.produce(30, [old_leader, target]))
    live = [n for n in NODES if n != killed]
    w.produce(100, live)
    new_leader, new_epoch = settled(cluster, topic, live)
    assert new_epoch > old_epoch, f"epoch {new_epoch} after the move, {old_epoch} before"
    latest = d.call("latest", timeout=40)
    assert latest["ok"] and latest["leader_epoch"] == new_epoch, latest
    print(f"  leadership moved {old_leader} -> {new_leader}, epoch {old_epoch} -> {new_epoch}; end offset {latest['offset']}")

    rest = d.call("follow-rest", latest["offset"], 40000, timeout=60)
    after = d.log()[log_mark:]
    validation = [line for line in after.splitlines() if VALIDATED in line]
    complaints = [line for line in after.splitlines() if any(s in line for s in TRUNCATION_OR_RESET)]
    print("  consumer log after the move (validation):\n    " + "\n    ".join(validation[:10] or ["(none)"]))
    assert not rest["errors"], f"the consumer threw after the leader change: {rest['errors']}\n{d.log_tail()}"
    assert not complaints, "the consumer detected truncation or reset its offset:\n" + "\n".join(complaints[:10])
    assert not rest["timed_out"], f"the consumer did not reach {latest['offset']}: position {rest['position']}\n{d.log_tail()}"

    records = start["records"] + rest["records"]
    values = [v for _, v, _ in records]
    counts = collections.Counter(values)
    twice = sorted((v for v, c in counts.items() if c > 1), key=lambda v: int(v[1:]))
    missing = [v for v in w.values if v not in counts]
    assert not twice and not missing, (
        f"{len(values)} records read for {len(w.values)} produced: read twice {twice[:10]}, never read {missing[:10]} "
        f"(a reset to the beginning reads records twice, one to the end skips some)"
    )
    assert values == w.values, "records out of produce order"
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offsets not increasing"
    down = [(a, b) for a, b in zip(records, records[1:]) if b[2] < a[2]]
    assert not down, f"leader epoch goes down along the log: {down[:5]}"
    assert records[-1][2] == new_epoch, f"last record's epoch {records[-1][2]}, current epoch {new_epoch}"
    assert rest["position"] == latest["offset"], rest["position"]
    # The consumer held epoch old_epoch; the new leader's answer to
    # OffsetForLeaderEpoch told it where that epoch ends (at or past its
    # position: nothing truncated), so it went on from where it was.
    assert validation, (
        "the consumer never validated its position with OffsetForLeaderEpoch after the leader change "
        f"(no {VALIDATED!r} line in its DEBUG log)\n{d.log_tail()}"
    )


# ---------------------------------------------------------------------------
# 3. Stale and future current_leader_epoch, and where epochs end.


class Raw:
    """kafka-python's network client, to send protocol requests to one chosen
    broker."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.client = KafkaNetClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10000)
        self.client.check_version()

    def send(self, node, request):
        return self.client.send_and_receive(node, request, timeout_ms=15000)

    def list_offsets(self, node, topic, current_epoch, version, timestamp=-1):
        T = ListOffsetsRequest.ListOffsetsTopic
        req = ListOffsetsRequest(
            replica_id=-1, isolation_level=0,
            topics=[T(name=topic, partitions=[T.ListOffsetsPartition(
                partition_index=0, current_leader_epoch=current_epoch, timestamp=timestamp)])],
            version=version,
        )
        [t] = self.send(node, req).topics
        [p] = t.partitions
        return p.error_code, p.offset, p.leader_epoch

    def epoch_end(self, node, topic, current_epoch, epoch, version):
        T = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
        req = OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[T(topic=topic, partitions=[T.OffsetForLeaderPartition(
                partition=0, current_leader_epoch=current_epoch, leader_epoch=epoch)])],
            version=version,
        )
        [t] = self.send(node, req).topics
        [p] = t.partitions
        return p.error_code, p.leader_epoch, p.end_offset

    def fetch(self, node, topic, current_epoch, version, offset=0):
        T = FetchRequest.FetchTopic
        req = FetchRequest(
            replica_id=-1, max_wait_ms=10, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
            session_id=0, session_epoch=-1,
            topics=[T(topic=topic, partitions=[T.FetchPartition(
                partition=0, current_leader_epoch=current_epoch, fetch_offset=offset,
                log_start_offset=-1, partition_max_bytes=1 << 20)])],
            forgotten_topics_data=[], version=version,
        )
        [t] = self.send(node, req).responses
        [p] = t.partitions
        return p.error_code

    def close(self):
        self.client.close()


def produce_librdkafka(bootstrap, topic, values):
    p = Producer({**failover_producer_config(bootstrap), "linger.ms": 0})
    failed = []
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=lambda err, m: err and failed.append(err.name()))
    left = p.flush(30)
    assert not failed and left == 0, f"produce: failed {failed[:5]}, {left} unresolved"


def test_stale_and_future_current_leader_epoch_and_epoch_end_offsets(cluster):
    topic = "epochs-fenced"
    cluster.create_topic(topic, 1, 3)
    n = 0

    def produce(count):
        nonlocal n
        # (Bootstrapped on the live brokers only: librdkafka logs every
        # refused connection to stderr.)
        bootstrap = ",".join(cluster.brokers[x].bootstrap for x in cluster.live())
        produce_librdkafka(bootstrap, topic, [f"v{i}".encode() for i in range(n, n + count)])
        n += count

    produce(50)
    old_leader, old = settled(cluster, topic)
    target = next(x for x in NODES if x != old_leader)
    killed = cluster.make_leader(topic, 0, target, lambda: produce(20))
    live = [x for x in NODES if x != killed]
    produce(50)
    leader, epoch = settled(cluster, topic, live)
    follower = next(x for x in live if x != leader)
    assert epoch > old, f"epoch {epoch} after the move, {old} before"
    print(f"  {old_leader} (epoch {old}) -> {leader} (epoch {epoch}); follower {follower}, {killed} down")

    log = read_partitions(",".join(cluster.brokers[x].bootstrap for x in live), topic, 1)[0]
    by_epoch = collections.defaultdict(list)
    for o, _, e in log:
        by_epoch[e].append(o)
    print(f"  records by epoch (librdkafka): {{epoch: (first, last, count)}} "
          f"{ {e: (min(o), max(o), len(o)) for e, o in sorted(by_epoch.items())} }")
    assert max(by_epoch) == epoch and old in by_epoch, (
        f"records carry epochs {sorted(by_epoch)}; expected some in the old {old} and the last in the new {epoch}"
    )

    raw = Raw(cluster)
    try:
        hw = raw.list_offsets(leader, topic, -1, 4)[1]
        answers = {}
        for node, role in ((leader, "leader"), (follower, "follower")):
            here = NONE if role == "leader" else NOT_LEADER_OR_FOLLOWER
            for v in (4, 7):
                answers[(role, f"ListOffsets v{v}")] = (
                    [raw.list_offsets(node, topic, e, v)[0] for e in (old, epoch + 5, epoch)],
                    [FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, here],
                )
            for v in (2, 3, 4):
                answers[(role, f"OffsetForLeaderEpoch v{v}")] = (
                    [raw.epoch_end(node, topic, e, epoch, v)[0] for e in (old, epoch + 5, epoch)],
                    [FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, here],
                )
            for v in (9, 12):
                answers[(role, f"Fetch v{v}")] = (
                    [raw.fetch(node, topic, e, v) for e in (old, epoch + 5, epoch)],
                    [FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, here],
                )
        print("  error codes for current_leader_epoch = (old, current + 5, current):")
        for (role, api), (got, want) in answers.items():
            print(f"    {role:<8} {api:<24} {got}{'' if got == want else f'   expected {want}'}")
        wrong = {k: v for k, v in answers.items() if v[0] != v[1]}
        assert not wrong, "unexpected error codes {(role, api): (got, expected)} for current_leader_epoch " \
            f"(old {old}, current + 5 = {epoch + 5}, current {epoch}): {wrong}"

        # ListOffsets with the right epoch: the offset's epoch.
        err, latest, latest_epoch = raw.list_offsets(leader, topic, epoch, 7)
        assert (err, latest, latest_epoch) == (NONE, hw, epoch), f"ListOffsets latest: {(err, latest, latest_epoch)}"
        err, earliest, earliest_epoch = raw.list_offsets(leader, topic, epoch, 7, timestamp=-2)
        first_offset, _, first_epoch = log[0]
        print(f"  ListOffsets v7 from the leader: latest {latest} (epoch {latest_epoch}), earliest {earliest} "
              f"(epoch {earliest_epoch}); first record at {first_offset} (epoch {first_epoch})")
        assert err == NONE and earliest <= first_offset, f"ListOffsets earliest: {(err, earliest, earliest_epoch)}"
        if earliest == first_offset:
            assert earliest_epoch == first_epoch, f"ListOffsets earliest {earliest}: epoch {earliest_epoch}, the record there has {first_epoch}"
        else:  # a control batch first (a leader's first entry)
            assert 0 <= earliest_epoch <= first_epoch, f"ListOffsets earliest {earliest}: epoch {earliest_epoch}, first record's {first_epoch}"

        # OffsetForLeaderEpoch with the right current epoch: where epochs end.
        ends = {v: {e: raw.epoch_end(leader, topic, epoch, e, v) for e in sorted({old, epoch, epoch + 3} | set(range(old, epoch)))}
                for v in (2, 3, 4)}
        print(f"  OffsetForLeaderEpoch from the leader {{version: {{epoch asked: (error, epoch, end offset)}}}}: {ends}")
        assert ends[2] == ends[3] == ends[4], "versions answer differently"
        got = ends[4]
        first_new = min(by_epoch[epoch])
        last_old = max(by_epoch[old])
        err, e_old, end_old = got[old]
        assert err == NONE and e_old == old and last_old < end_old <= first_new, (
            f"end of epoch {old}: {got[old]}; its records end at offset {last_old}, epoch {epoch}'s begin at {first_new}"
        )
        for e in range(old + 1, epoch):
            # Terms without records: the largest epoch at or below with an
            # entry in the log, and the first offset past it (Kafka's
            # leader epoch cache).
            err, floor, end = got[e]
            assert err == NONE and old <= floor <= e and end_old <= end <= first_new, (
                f"epoch {e} (no record written in it): {got[e]}; end of {old} is {end_old}, epoch {epoch} begins at {first_new}"
            )
        err, e_cur, end_cur = got[epoch]
        assert err == NONE and e_cur == epoch and end_cur >= hw, f"end of the current epoch {epoch}: {got[epoch]}, high watermark {hw}"
        assert got[epoch + 3] == (NONE, -1, -1), f"a future epoch: {got[epoch + 3]}, expected undefined (-1, -1)"
    finally:
        raw.close()


# ---------------------------------------------------------------------------
# 4. Preferred leader election.


def test_preferred_leader_election_after_the_preferred_broker_returns(cluster):
    """The preferred replica's broker is killed and restarted; it does not
    take its leadership back by itself (clients would see a second leader
    change); electLeaders (PREFERRED) through the Java Admin client gives it
    back, and answers once it leads."""
    from java_support import run_java

    topic = "epochs-elect"
    cluster.create_topic(topic, 1, 3)
    preferred = preferred_replica(cluster, topic)
    assert wait_leader(cluster, topic, preferred, 20)
    cluster.kill9(preferred)
    others = [n for n in NODES if n != preferred]
    cluster.wait_new_leader(topic, 0, preferred, others)
    cluster.start([preferred])
    away, _ = cluster.leader(topic, 0)
    # Caught up and heard from, and still not leading: nothing asked for it.
    time.sleep(5)
    assert cluster.leader(topic, 0)[0] == away != preferred, "leadership moved back by itself"
    bootstrap = ",".join(f"127.0.0.1:{cluster.port(n)}" for n in others)
    run = run_java("AdminChecks", "elect", bootstrap, topic, 0, timeout=90)
    assert run.returncode == 0, run.report()
    [step] = run.lines
    assert step["ok"], step
    assert cluster.leader(topic, 0)[0] == preferred, "the preferred replica leads"


# ---------------------------------------------------------------------------
# 5. Group configs in a cluster live in the controller quorum's image.


def test_group_configs_in_a_cluster_reach_every_broker(cluster):
    """A GROUP config altered through one broker (kafka-python's admin
    client, IncrementalAlterConfigs) is described by every broker, also
    after a broker restarts."""
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType

    def describe(node):
        a = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{cluster.port(node)}")
        try:
            got = a.describe_configs([KpConfigResource(ConfigResourceType.GROUP, "cluster-group")], config_filter="all")
            hb = got["group"]["cluster-group"]["consumer.heartbeat.interval.ms"]
            return hb["value"], hb["config_source"]
        finally:
            a.close()

    a = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{cluster.port(NODES[0])}")
    try:
        res = a.alter_configs(
            [KpConfigResource(ConfigResourceType.GROUP, "cluster-group", {"consumer.heartbeat.interval.ms": "6000"})]
        )
        assert res == {"group": {"cluster-group": "OK"}}, res
        bad = a.alter_configs(
            [KpConfigResource(ConfigResourceType.GROUP, "cluster-group", {"consumer.session.timeout.ms": "100"})]
        )
        assert bad["group"]["cluster-group"].startswith("[Error 40]"), bad
    finally:
        a.close()
    deadline = time.time() + 10
    while True:
        seen = {n: describe(n) for n in NODES}
        if all(v == ("6000", "DYNAMIC_GROUP_CONFIG") for v in seen.values()) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert all(v == ("6000", "DYNAMIC_GROUP_CONFIG") for v in seen.values()), seen
    last = NODES[-1]
    cluster.kill9(last)
    cluster.start([last])
    deadline = time.time() + 15
    while True:
        try:
            after = describe(last)
        except Exception as e:  # the restarted broker may still be catching up
            after = repr(e)
        if after == ("6000", "DYNAMIC_GROUP_CONFIG") or time.time() > deadline:
            break
        time.sleep(0.3)
    assert after == ("6000", "DYNAMIC_GROUP_CONFIG"), after
