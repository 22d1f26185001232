"""Helpers of test_cluster.py: raw Kafka requests to one chosen broker, the
fault-injecting proxy in front of each internal listener, a three-broker
cluster, the acks=all workload and the checker of acknowledged writes."""

import collections
import contextlib
import random
import re
import socket
import struct
import threading
import time
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port


NODES = (1, 2, 3)
NOT_LEADER_OR_FOLLOWER = 6


# ---------------------------------------------------------------------------
# Raw Kafka requests to one chosen broker (librdkafka routes by itself; these
# let a test ask a particular broker, or send to a follower on purpose).


class _Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.i = 0

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.i)[0]
        self.i += struct.calcsize(fmt)
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.d[self.i : self.i + n].decode()
        self.i += n
        return s

    def array(self, item):
        n = self.i32()
        return [] if n < 0 else [item() for _ in range(n)]


def _str(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def kafka_call(port, api_key, version, body, timeout=3.0) -> _Reader:
    """One request (non-flexible version, header v1) on a fresh connection;
    returns a reader positioned at the response body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        msg = struct.pack(">hhi", api_key, version, 7) + _str("sluice-cluster-test") + body
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    assert struct.unpack(">i", data[:4])[0] == 7, "correlation id"
    return _Reader(data[4:])


def metadata(port, topics=None, timeout=3.0):
    """Metadata v7 from the broker on `port`: {"brokers": {id: (host, port)},
    "controller": id, "topics": {name: {"error": code, "partitions": {index:
    {"error", "leader", "epoch", "replicas", "isr", "offline"}}}}}."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
    body += struct.pack(">b", 0)  # allow_auto_topic_creation
    r = kafka_call(port, 3, 7, body, timeout)
    r.i32()  # throttle
    brokers = {}
    for _ in range(r.i32()):
        node = r.i32()
        host = r.string()
        bport = r.i32()
        r.string()  # rack
        brokers[node] = (host, bport)
    r.string()  # cluster id
    controller = r.i32()
    out_topics = {}
    for _ in range(max(r.i32(), 0)):
        err = r.i16()
        name = r.string()
        r.i8()  # is_internal
        parts = {}
        for _ in range(max(r.i32(), 0)):
            perr = r.i16()
            index = r.i32()
            leader = r.i32()
            epoch = r.i32()
            replicas = r.array(r.i32)
            isr = r.array(r.i32)
            offline = r.array(r.i32)
            parts[index] = {
                "error": perr, "leader": leader, "epoch": epoch, "replicas": replicas, "isr": isr, "offline": offline,
            }
        out_topics[name] = {"error": err, "partitions": parts}
    return {"brokers": brokers, "controller": controller, "topics": out_topics}


def init_producer_id_raw(port):
    """InitProducerId v0 (no transactional id) to the broker on `port`:
    (producer id, epoch), retried while the broker is not ready for it."""
    deadline = time.time() + 20
    while True:
        r = kafka_call(port, 22, 0, _str(None) + struct.pack(">i", 60000))
        r.i32()  # throttle
        err = r.i16()
        pid, epoch = r.i64(), r.i16()
        if err == 0:
            return pid, epoch
        assert time.time() < deadline, f"InitProducerId answered error {err}"
        time.sleep(0.2)


def produce_raw(port, topic, partition, value: bytes, acks=-1, timeout_ms=5000, producer=None):
    """Produce v7 of one record to the broker on `port`: (error code, base
    offset). `producer` = (producer id, epoch, sequence) makes it an
    idempotent producer's batch."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    pid, epoch, seq = producer or (-1, -1, -1)
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=pid, producer_epoch=epoch,
        base_sequence=seq, batch_size=1 << 20,
    )
    b.append(0, timestamp=int(time.time() * 1000), key=None, value=value, headers=[])
    records = bytes(b.build())
    body = (
        _str(None) + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1) + _str(topic)
        + struct.pack(">i", 1) + struct.pack(">i", partition)
        + struct.pack(">i", len(records)) + records
    )
    r = kafka_call(port, 0, 7, body, timeout=timeout_ms / 1000 + 3)
    r.i32()  # topic count
    r.string()
    r.i32()  # partition count
    r.i32()  # index
    err = r.i16()
    base = r.i64()
    return err, base


def fetch_raw(port, topic, partition, offset=0):
    """Fetch v4 from the broker on `port`: the partition's error code."""
    body = (
        struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0)
        + struct.pack(">i", 1) + _str(topic)
        + struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 1 << 20)
    )
    r = kafka_call(port, 1, 4, body)
    r.i32()  # throttle
    r.i32()  # topic count
    r.string()
    r.i32()  # partition count
    r.i32()  # index
    return r.i16()


# ---------------------------------------------------------------------------
# The fault-injecting network between the brokers.


class WrongLeader(AssertionError):
    """`make_leader` saw another broker elected; `killed` must be restarted."""

    def __init__(self, message, killed):
        super().__init__(message)
        self.killed = killed


class FaultyNetwork:
    """The state shared by every node's proxy: which nodes are cut off, the
    connections currently carried, and the inter-broker Kafka links seen
    ({(sender, receiver): count}, carried and refused apart)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cut = set()
        self.links = []
        self.unknown_hellos = 0
        self.kafka_links = collections.Counter()
        self.refused_kafka_links = collections.Counter()
        self.proxies = []

    def blocked(self, sender, receiver):
        return receiver in self.cut or (sender is not None and sender in self.cut)

    def isolate(self, node):
        """Closes every connection from or to `node` and refuses new ones."""
        with self.lock:
            self.cut.add(node)
            doomed = [link for link in self.links if self.blocked(link.sender, link.receiver)]
        for link in doomed:
            link.close()

    def heal(self):
        with self.lock:
            self.cut.clear()

    def close(self):
        for p in self.proxies:
            p.close()
        with self.lock:
            links = list(self.links)
        for link in links:
            link.close()


class _Link:
    def __init__(self, net, sender, receiver, a, b):
        self.net, self.sender, self.receiver, self.a, self.b = net, sender, receiver, a, b
        self._closed = False
        self._lock = threading.Lock()

    def pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.a, self.b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.net.lock:
            if self in self.net.links:
                self.net.links.remove(self)


# The hellos a broker opens a connection to a peer's internal listener
# with: magic (4) · version u16 · sender node id u64. SLRT carries Raft
# messages, SLKF Kafka requests from broker to broker (transaction markers,
# AddPartitionsToTxn verify_only).
RAFT_HELLO, KAFKA_HELLO = b"SLRT", b"SLKF"


class Proxy:
    """A TCP forwarder on a free loopback port in front of node `node`'s real
    internal listener on `target_port`. It reads the sender from each
    connection's hello, so `isolate` cuts Raft and inter-broker Kafka links
    alike. Over inter-broker mutual TLS the hello is encrypted: the
    connection is forwarded as from an unknown sender (counted in
    `unknown_hellos`), and `isolate` then cuts only the connections to the
    cut-off node."""

    def __init__(self, net: FaultyNetwork, node: int, target_port: int):
        self.net, self.node, self.target_port = net, node, target_port
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        net.proxies.append(self)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        out = None
        try:
            conn.settimeout(10)
            hello = _recv_exact(conn, 4)
            sender = None
            kafka = hello == KAFKA_HELLO
            if hello in (RAFT_HELLO, KAFKA_HELLO):
                hello += _recv_exact(conn, 10)
                sender = struct.unpack(">Q", hello[6:14])[0]
            else:
                with self.net.lock:
                    self.net.unknown_hellos += 1
            conn.settimeout(None)
            with self.net.lock:
                refused = self.net.blocked(sender, self.node)
                if kafka:
                    seen = self.net.refused_kafka_links if refused else self.net.kafka_links
                    seen[(sender, self.node)] += 1
            if refused:
                conn.close()
                return
            out = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            out.settimeout(None)
            out.sendall(hello)
            link = _Link(self.net, sender, self.node, conn, out)
            with self.net.lock:
                refused = self.net.blocked(sender, self.node)
                if not refused:
                    self.net.links.append(link)
            if refused:
                link.close()
                return
        except OSError:
            conn.close()
            if out is not None:
                out.close()
            return
        threading.Thread(target=link.pump, args=(conn, out), daemon=True).start()
        threading.Thread(target=link.pump, args=(out, conn), daemon=True).start()

    def close(self):
        try:
            self.listener.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# The cluster.


def quiet_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A broker binds
    its ports some time after they are chosen, and binds them again when it
    restarts; the many outgoing connections of a cluster test (brokers,
    proxies, clients) take their local ports from the ephemeral range, where
    one could take a chosen port in the meantime."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    for _ in range(100):
        port = random.randrange(max(low // 2, 1024), low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    return free_port()


_handed_out = set()


class Cluster:
    def __init__(self, tmp_path, nodes=NODES, config="", node_config=None, voters=None):
        """`config`: TOML every broker gets; `node_config`: {node: TOML}
        added for that broker only; `voters`: the nodes in the controller
        quorum (default: all; the others run as brokers only, reached
        directly at their internal listener, not through a proxy)."""
        self.ids = list(nodes)
        self.voters = list(voters or nodes)
        self.net = FaultyNetwork()
        self.proxies = {n: None for n in self.ids}
        internal = {}
        for n in self.ids:
            internal[n] = quiet_port()
            self.proxies[n] = Proxy(self.net, n, internal[n])
        voters = ",".join(f"{n}@127.0.0.1:{self.proxies[n].port}" for n in self.voters)
        self.brokers = {}
        for n in self.ids:
            d = tmp_path / f"node-{n}"
            d.mkdir()
            b = Broker(
                d,
                config + (node_config or {}).get(n, ""),
                extra_args=[
                    "--node-id", str(n),
                    "--controller-voters", voters,
                    "--internal-listen", f"127.0.0.1:{internal[n]}",
                ],
            )
            b.port = quiet_port()
            # The admin listener too: a port from the ephemeral range may be
            # taken by an outgoing connection before the broker binds it.
            b.admin_port = quiet_port()
            b.bootstrap = f"127.0.0.1:{b.port}"
            self.brokers[n] = b
        self.down = set()  # nodes this test stopped on purpose

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers.values())

    def port(self, node):
        return self.brokers[node].port

    def start(self, nodes=None, timeout=30.0):
        """Launches the nodes together (a lone node may wait for its quorum
        before listening) and waits until each accepts connections."""
        nodes = list(nodes or self.ids)
        for n in nodes:
            self.brokers[n].launch()
            self.down.discard(n)
        deadline = time.time() + timeout
        for n in nodes:
            self.brokers[n].wait_listening(max(deadline - time.time(), 1.0))

    def kill9(self, *nodes):
        for n in nodes:
            self.down.add(n)
            b = self.brokers[n]
            if b.proc and b.proc.poll() is None:
                b.proc.kill()
        for n in nodes:
            self.brokers[n].proc.wait(10)

    def live(self):
        return [n for n in self.ids if n not in self.down]

    def crashed(self):
        """Nodes that exited although the test did not stop them."""
        return [n for n in self.live() if self.brokers[n].proc and self.brokers[n].proc.poll() is not None]

    def shutdown(self):
        for b in self.brokers.values():
            if b.proc and b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(10)
        self.net.close()

    # -- metadata --------------------------------------------------------

    def partition_view(self, node, topic, partition):
        """What `node` says about the partition: its metadata dict, or None
        when it does not answer or does not know the partition."""
        try:
            md = metadata(self.port(node), [topic], timeout=2.0)
        except (OSError, struct.error, AssertionError):
            return None
        t = md["topics"].get(topic)
        if not t or t["error"] != 0:
            return None
        return t["partitions"].get(partition)

    def leader(self, topic, partition, among=None, timeout=20.0):
        """(leader, epoch) of a partition once every node in `among` (default:
        the live ones) names the same leader, itself among them; the epoch is
        the one the leader reports."""
        among = list(among or self.live())
        deadline = time.time() + timeout
        views = {}
        while time.time() < deadline:
            views = {n: self.partition_view(n, topic, partition) for n in among}
            leaders = {v["leader"] for v in views.values() if v}
            if len(leaders) == 1 and all(views.values()):
                leader = leaders.pop()
                if leader in among:
                    return leader, views[leader]["epoch"]
            time.sleep(0.05)
        raise AssertionError(f"no agreed leader of {topic}-{partition} among {among} within {timeout}s: {views}")

    def wait_new_leader(self, topic, partition, old, among, timeout=20.0):
        """Polls `among` every 50 ms until one of them names a leader other than
        `old`, itself among `among`. Returns (leader, epoch, seconds waited)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            for n in among:
                v = self.partition_view(n, topic, partition)
                if v and v["leader"] in among and v["leader"] != old:
                    return v["leader"], v["epoch"], time.monotonic() - start
            time.sleep(0.05)
        views = {n: self.partition_view(n, topic, partition) for n in among}
        raise AssertionError(f"no new leader of {topic}-{partition} among {among} within {timeout}s: {views}")

    def watch_leader(self, topic, partition, among, seconds, via=None):
        """Polls the partition every 50 ms for `seconds` and returns the
        changes of (leader, epoch) that `via` (default: the first of `among`
        that answers) reports, with the time since the start."""
        start = time.monotonic()
        changes = []
        last = None
        while time.monotonic() - start < seconds:
            for n in ([via] if via else among):
                v = self.partition_view(n, topic, partition)
                if v:
                    now = (v["leader"], v["epoch"])
                    if now != last:
                        changes.append((round(time.monotonic() - start, 2), *now))
                        last = now
                    break
            time.sleep(0.05)
        return changes

    def make_leader(self, topic, partition, target, write):
        """Makes `target` the partition's leader: the third broker is cut
        off while `write()` commits a few records (so its log falls
        behind), the current leader is killed, the cut is healed; only
        `target` holds every committed entry, so only it can be elected.
        Returns the killed broker (for the caller to restart), or None when
        `target` already led."""
        current, _ = self.leader(topic, partition)
        if current == target:
            return None
        third = next(n for n in self.live() if n not in (current, target))
        self.net.isolate(third)
        try:
            write()
            self.kill9(current)
        finally:
            self.net.heal()
        leader, _, waited = self.wait_new_leader(topic, partition, current, [target, third])
        if leader != target:
            # Raft elects `third` only if its log is as complete as
            # `target`'s: the cut did not hold it back (a connection made as
            # it was cut) or nothing committed meanwhile. Not a loss by itself;
            # the reads under every leader that follow would show one.
            raise WrongLeader(
                f"{leader} was elected, not {target}; views: "
                f"{ {n: self.partition_view(n, topic, partition) for n in (target, third)} }",
                killed=current,
            )
        print(f"  killed {current}; {target} leads after {waited:.2f}s")
        return current

    def read_under_each_leader(self, topic, partition, order, write, read):
        """Makes each node of `order` the leader in turn (`make_leader`,
        restarting the killed broker after the read) and yields (node,
        read()) with `read()` done while that node led."""
        for target in order:
            for _ in range(5):
                try:
                    killed = self.make_leader(topic, partition, target, write)
                except WrongLeader as e:
                    print(f"  {e}; again")
                    self.start([e.killed])
                    continue
                got = self.while_leading(topic, partition, target, read)
                if got is not None:
                    yield target, got
                else:
                    print(f"  leadership left {target} during the read; again")
                if killed is not None:
                    self.start([killed])
                if got is not None:
                    break
            else:
                raise AssertionError(f"could not read while {target} led")

    def while_leading(self, topic, partition, node, read):
        """`read()` while `node` leads the partition, with the same leader
        epoch before and after it; None when leadership moved meanwhile (a
        preferred election, or the leader lost its majority)."""
        before = self.leader(topic, partition)
        if before[0] != node:
            return None
        got = read()
        return got if self.leader(topic, partition) == before else None

    def elect_preferred(self, topic, partition, timeout=30.0):
        """Preferred leader election through librdkafka's admin client
        (ElectLeaders), asked again until the partition's first replica
        leads; returns it."""
        from confluent_kafka import ElectionType

        deadline = time.time() + timeout
        # Any live node that answers (one just restarted may not yet).
        view = None
        while view is None:
            assert time.time() < deadline, f"no live node describes {topic}-{partition}"
            view = next(
                (v for n in self.live() if (v := self.partition_view(n, topic, partition)) is not None),
                None,
            )
            if view is None:
                time.sleep(0.2)
        preferred = view["replicas"][0]
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        answers = []
        while time.time() < deadline:
            fut = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, partition)])
            try:
                fut.result(timeout=15)
                answers.append("ok")
            except KafkaException as e:
                answers.append(e.args[0].name())
            leader, _ = self.leader(topic, partition, timeout=max(deadline - time.time(), 1.0))
            if leader == preferred:
                return preferred
            time.sleep(0.5)
        raise AssertionError(f"{preferred} does not lead {topic}-{partition} after elections: {answers}")

    def create_topic(self, name, partitions=1, rf=3, timeout=30.0, config=None):
        """CreateTopics (with topic `config`) through librdkafka, retried while
        the cluster is still forming, then waits until every live node agrees
        on every leader."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.time() + timeout
        attempt = 0
        errors = []
        while True:
            attempt += 1
            fut = admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=rf, config=config or {})],
                request_timeout=5, operation_timeout=5,
            )
            try:
                fut[name].result(timeout=15)
                break
            except KafkaException as e:
                err = e.args[0]
                if attempt > 1 and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break  # an earlier attempt went through after all
                errors.append(err.name())
            if time.time() > deadline:
                raise AssertionError(f"could not create {name} (rf {rf}) within {timeout}s: {errors[-5:]}")
            time.sleep(0.2)
        if attempt > 1:
            print(f"  create {name}: {attempt} attempts ({collections.Counter(errors)})")
        for p in range(partitions):
            self.leader(name, p, timeout=max(deadline - time.time(), 10.0))

    def stored_values(self, node):
        """Every test value (see value_of) found in the node's data folder,
        whatever the on-disk layout: values are uncompressed, fixed-width and
        delimited, so their bytes appear in whichever file holds the record.
        (Index files, large and sparse, are skipped.)"""
        found = set()
        for f in self.brokers[node].data_dir.rglob("*"):
            if f.is_file() and not f.name.endswith((".index", ".timeindex")):
                try:
                    found.update(VALUE_RE.findall(f.read_bytes()))
                except OSError:
                    pass
        return found


# ---------------------------------------------------------------------------
# Producing and checking.


def wait_for(what, cond, timeout=30.0):
    """Asks `cond` every 0.2 s until it returns something true (returned);
    an exception counts as not yet (a broker still starting). Fails after
    `timeout` seconds with the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - asked again
            last = repr(e)
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s: last {last!r}")


class Ack(NamedTuple):
    t: float  # time.monotonic() when the delivery report came
    topic: str
    partition: int
    value: bytes
    offset: int


def value_of(n: int) -> bytes:
    # Fixed width and delimited, so that values can be picked out of raw files
    # (see Cluster.stored_values).
    return f"v{n:09d};".encode()


VALUE_RE = re.compile(rb"v[0-9]{9};")


def failover_producer_config(bootstrap):
    """An acks=all, idempotent librdkafka producer that retries quickly
    through leader changes."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 20000,
        "request.timeout.ms": 5000,
        "retry.backoff.ms": 50,
        "retry.backoff.max.ms": 500,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.fast.interval.ms": 100,
    }


def consume_to(consumer, high, deadline):
    """The messages of an assigned consumer's one partition below offset
    `high`, until it has passed `high` (with enable.partition.eof, so that a
    log ending in a control batch is passed too)."""
    at = -1
    while at < high:
        assert time.time() < deadline, f"read up to {at} of {high} in time"
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at = max(at, m.offset())
                continue
            if m.offset() < high:
                yield m
            at = m.offset() + 1


class Workload:
    """A librdkafka producer (acks=all) writing distinct values round-robin
    to the given partitions from its own thread, recording every
    acknowledgement in the order the delivery reports came."""

    def __init__(self, bootstrap, targets, pause=0.005, batch=4, first_value=0):
        self.bootstrap = bootstrap
        self.targets = list(targets)
        self.pause = pause
        self.batch = batch
        self.acks = []
        self.failed = collections.Counter()
        self.client_errors = collections.Counter()
        self.fatal = []
        self.sent = 0
        self.unresolved = None
        self.idempotent = True
        self._n = first_value
        self._stop = threading.Event()
        self._thread = None
        self.p = None

    def _producer(self, idempotent):
        conf = {
            **failover_producer_config(self.bootstrap),
            "enable.idempotence": idempotent,
            "compression.type": "none",
            "error_cb": self._on_error,
        }
        if not idempotent:
            conf["max.in.flight.requests.per.connection"] = 1  # keeps order across retries
        return Producer(conf)

    def _on_error(self, err):
        self.client_errors[err.name()] += 1
        if err.fatal():
            self.fatal.append(str(err))

    def _on_delivery(self, err, msg):
        if err is None:
            self.acks.append(Ack(time.monotonic(), msg.topic(), msg.partition(), msg.value(), msg.offset()))
        else:
            self.failed[err.name()] += 1

    def _produce_one(self):
        topic, partition = self.targets[self._n % len(self.targets)]
        v = value_of(self._n)
        self._n += 1
        while True:
            try:
                self.p.produce(topic, value=v, partition=partition, on_delivery=self._on_delivery)
                self.sent += 1
                return
            except BufferError:
                self.p.poll(0.01)

    def probe(self):
        """One message per partition, flushed: did they all get acknowledged?"""
        before = len(self.acks)
        for _ in self.targets:
            self._produce_one()
        self.p.flush(20)
        return len(self.acks) - before == len(self.targets) and not self.fatal

    def start(self):
        self.p = self._producer(True)
        if not self.probe():
            print(
                "!! the idempotent producer got no acknowledgements "
                f"(failed {dict(self.failed)}, errors {dict(self.client_errors)}, fatal {self.fatal}); "
                "falling back to enable.idempotence=false"
            )
            self.p.flush(5)
            self.fatal = []
            self.idempotent = False
            self.p = self._producer(False)
            assert self.probe(), f"no acknowledgements at all: {dict(self.failed)} {dict(self.client_errors)}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for _ in range(self.batch):
                self._produce_one()
            self.p.poll(self.pause)

    def stop(self, flush_timeout=30.0):
        self._stop.set()
        if self._thread:
            self._thread.join(30)
            assert not self._thread.is_alive(), "producer thread did not stop"
        if self.p is not None:
            self.unresolved = self.p.flush(flush_timeout)

    def wait_acks(self, n, timeout, since=None, target=None):
        """Waits until `n` acknowledgements (after `since`, to `target`) came."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count(since, target) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"only {self.count(since, target)} of {n} acknowledgements within {timeout}s "
            f"(failed {dict(self.failed)}, client errors {dict(self.client_errors)}, fatal {self.fatal})"
        )

    def count(self, since=None, target=None):
        return sum(
            1 for a in list(self.acks)
            if (since is None or a.t >= since) and (target is None or (a.topic, a.partition) == target)
        )

    def max_gap(self, target, start, end):
        """The longest time without an acknowledgement to `target` in [start, end]."""
        times = [start] + [a.t for a in self.acks if (a.topic, a.partition) == target and start <= a.t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def summary(self):
        return (
            f"sent {self.sent}, acknowledged {len(self.acks)}, failed {dict(self.failed)}, "
            f"unresolved at the end {self.unresolved}, client errors {dict(self.client_errors)}, "
            f"idempotent {self.idempotent}"
        )


def read_partitions(bootstrap, topic, partitions, timeout=30.0):
    """Every record of each partition from offset 0 up to the high watermark
    it had when reading began: {partition: [(offset, value, leader epoch)]}."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "sluice-cluster-checker",
        "enable.auto.commit": False,
        # The log may end in a control batch (a new Raft leader's first
        # entry) that is never delivered: the end-of-partition event
        # tells when the consumer has passed it.
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
    }
    c = Consumer(config)
    deadline = time.time() + timeout
    errors = collections.Counter()
    try:
        highs = {}
        for p in range(partitions):
            while True:
                try:
                    highs[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                    break
                except KafkaException as e:
                    errors[e.args[0].name()] += 1
                    if time.time() > deadline:
                        views = {}
                        for addr in bootstrap.split(","):
                            try:
                                views[addr] = metadata(int(addr.rsplit(":", 1)[1]), [topic])
                            except OSError as err:
                                views[addr] = repr(err)
                        raise AssertionError(
                            f"{topic}-{p}: no watermarks within {timeout}s ({dict(errors)}); "
                            f"Metadata as each broker answers it now: {views}"
                        ) from e
                    if e.args[0].code() == KafkaError._UNKNOWN_PARTITION and errors["_UNKNOWN_PARTITION"] % 3 == 0:
                        # A client's metadata cache can hold on to a topic
                        # placeholder; a new client asks afresh. If it keeps
                        # failing, the assertion shows what each broker says.
                        c.close()
                        c = Consumer(config)
                    time.sleep(0.2)
        out = {p: [] for p in range(partitions)}
        next_offset = {p: 0 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while any(next_offset[p] < highs[p] for p in highs):
            if time.time() > deadline:
                raise AssertionError(
                    f"{topic}: read up to {next_offset} of high watermarks {highs} within {timeout}s; errors {dict(errors)}"
                )
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        next_offset[m.partition()] = max(next_offset[m.partition()], m.offset())
                    else:
                        errors[m.error().name()] += 1
                    continue
                if m.offset() < highs[m.partition()]:
                    out[m.partition()].append((m.offset(), m.value(), m.leader_epoch()))
                next_offset[m.partition()] = m.offset() + 1
        if errors:
            print(f"  reading {topic}: transient errors {dict(errors)}")
        return out
    finally:
        c.close()


def check_acked(workload, topic, partitions, timeout=30.0):
    """Reads the topic back and returns problems: acknowledged values missing,
    stored twice, at another offset than acknowledged, or out of
    acknowledgement order; leader epochs going down along the log."""
    logs = read_partitions(workload.bootstrap, topic, partitions, timeout)
    problems = []
    stats = []
    for p in range(partitions):
        log = logs[p]
        where = collections.defaultdict(list)
        for offset, value, _ in log:
            where[value].append(offset)
        acked = [a for a in workload.acks if a.topic == topic and a.partition == p]
        if workload.idempotent:
            twice = [(v, o) for v, o in where.items() if len(o) > 1]
            for v, o in twice[:5]:
                problems.append(f"{topic}-{p}: {v!r} stored {len(o)} times, at {o}")
            if len(twice) > 5:
                problems.append(f"{topic}-{p}: ... {len(twice)} values stored more than once")
        positions = []
        for a in acked:
            found = where.get(a.value)
            if not found:
                problems.append(f"{topic}-{p}: acknowledged {a.value!r} (offset {a.offset}) is missing")
                continue
            # librdkafka reports some writes with no offset (None): those an
            # idempotent producer learns were stored from a later batch's
            # answer, after their own answer was lost.
            if a.offset is not None and a.offset >= 0 and a.offset not in found:
                problems.append(f"{topic}-{p}: {a.value!r} acknowledged at offset {a.offset} but stored at {found}")
            positions.append((found[0], a.value))
        for (o1, v1), (o2, v2) in zip(positions, positions[1:]):
            if o2 <= o1:
                problems.append(f"{topic}-{p}: {v2!r} acknowledged after {v1!r} but stored at {o2} <= {o1}")
                break
        epochs = [(o, e) for o, _, e in log if e is not None and e >= 0]
        for (o1, e1), (o2, e2) in zip(epochs, epochs[1:]):
            if e2 < e1:
                problems.append(f"{topic}-{p}: leader epoch goes down from {e1} (offset {o1}) to {e2} (offset {o2})")
                break
        offsets = [o for o, _, _ in log]
        gaps = sum(1 for a, b in zip(offsets, offsets[1:]) if b != a + 1)
        stats.append(
            f"{topic}-{p}: {len(acked)} acknowledged, {len(log)} stored, "
            f"{len(log) - len(set(v for _, v, _ in log) & set(a.value for a in acked))} stored unacknowledged, "
            f"offset gaps {gaps}, epochs {sorted(set(e for _, e in epochs))}"
        )
    for s in stats:
        print("  " + s)
    return problems


class GroupReader:
    """A consumer group member (librdkafka) reading `topic` from its own
    thread and committing what it read every half second. `check()`: within
    one assignment no offset delivered twice or going back, and no committed
    offset ever going back."""

    def __init__(self, bootstrap, topic, group, **config):
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **config,
        })
        self.assignments = 0
        self.read = 0
        self.went_back = []
        self.commits = []
        self.errors = collections.Counter()
        self._last = {}
        self.c.subscribe([topic], on_assign=self._assigned)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _assigned(self, consumer, partitions):
        # A new assignment starts again from the committed offsets.
        self.assignments += 1
        self._last = {}

    def _run(self):
        last_commit = time.monotonic()
        while not self._stop.is_set():
            for m in self.c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    self.errors[m.error().name()] += 1
                    continue
                p, o = m.partition(), m.offset()
                if o <= self._last.get(p, -1):
                    self.went_back.append((p, self._last[p], o))
                self._last[p] = o
                self.read += 1
            if time.monotonic() - last_commit > 0.5:
                last_commit = time.monotonic()
                try:
                    done = self.c.commit(asynchronous=False)
                    # A partition the member has read nothing from yet
                    # comes back with no offset (negative): nothing committed.
                    self.commits.append({tp.partition: tp.offset for tp in done or [] if tp.offset >= 0})
                except KafkaException as e:
                    self.errors[e.args[0].name()] += 1

    def stop(self):
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(15)
            self.c.close()

    def check(self):
        """Asserts the reader's invariants; returns the highest committed
        offset of each partition."""
        assert not self.went_back, f"offsets delivered again or going back: {self.went_back[:5]}"
        high = {}
        for c in self.commits:
            for p, o in c.items():
                assert o >= high.get(p, 0), f"partition {p}: commit went back from {high[p]} to {o}"
                high[p] = o
        return high


def assert_no_problems(problems):
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def wait_replicated(cluster, workload, nodes, timeout=20.0):
    """Every acknowledged value ends up in the data folder of each of `nodes`."""
    values = {a.value for a in workload.acks}
    deadline = time.time() + timeout
    missing = {}
    while time.time() < deadline:
        missing = {n: sorted(values - cluster.stored_values(n)) for n in nodes}
        if not any(missing.values()):
            return
        time.sleep(0.5)
    raise AssertionError(
        "acknowledged values missing from data folders: "
        + ", ".join(f"node {n}: {len(m)} (e.g. {m[:3]})" for n, m in missing.items() if m)
    )


@contextlib.contextmanager
def running_cluster(tmp_path, **kwargs):
    """A started `Cluster` (an RF 3 topic created: a leader agreed) for one
    test, shut down after it; the test fails if a broker exited on its own
    meanwhile. Brokers' log tails are printed when it does not start."""
    c = Cluster(tmp_path, **kwargs)
    try:
        try:
            c.start()
            c.create_topic("cluster-ready-probe", 1, 3)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        yield c
        assert not c.crashed(), f"brokers exited on their own: {c.crashed()}"
    finally:
        c.shutdown()
