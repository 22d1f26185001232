"""The admin CLI (`sluice topic|group|produce|consume|cluster|config|acl|user`),
the real binary against a real broker, cross-checked with confluent-kafka
(librdkafka): what the CLI creates, commits or produces, confluent sees, and
what confluent does, the CLI reports. Exit codes: 0 done, 1 a Kafka error,
2 bad usage, 3 broker unreachable."""

import json
import os
import signal
import socket
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import GROUP_CONFIG, create_topic, free_port, running_broker


def cli(broker, *args, stdin=None, timeout=60, bootstrap=None, env=None):
    """Runs `sluice ARGS` against `broker`; the CompletedProcess."""
    return subprocess.run(
        [broker.bin, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SLUICE_BOOTSTRAP": bootstrap or broker.bootstrap, **(env or {})},
    )


def ok(broker, *args, **kw):
    out = cli(broker, *args, **kw)
    assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stderr}"
    return out.stdout


def js(broker, *args, **kw):
    return json.loads(ok(broker, *args, "--json", **kw))


def produce(bootstrap, topic, messages):
    """(partition, key, value) messages through confluent-kafka."""
    p = Producer({"bootstrap.servers": bootstrap})
    for part, key, value in messages:
        p.produce(topic, key=key, value=value, partition=part)
    assert p.flush(30) == 0


def read_all(bootstrap, topic, n, partitions, group="reader", timeout=30.0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        for m in c.consume(num_messages=100, timeout=0.5):
            assert not m.error(), m.error()
            out.append(m)
    c.close()
    return out


def test_topic_commands_agree_with_confluent_admin(tmp_path):
    with running_broker(tmp_path) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        assert "created" in ok(b, "topic", "create", "orders", "-p", "3", "-c", "retention.ms=60000")
        md = admin.list_topics(timeout=10)
        assert len(md.topics["orders"].partitions) == 3

        # Already there: a Kafka error by name, exit 1; --if-not-exists: fine.
        out = cli(b, "topic", "create", "orders", "-p", "3")
        assert out.returncode == 1
        assert "TOPIC_ALREADY_EXISTS" in out.stderr and "orders" in out.stderr
        assert cli(b, "topic", "create", "orders", "--if-not-exists").returncode == 0

        create_topic(b.bootstrap, "payments", partitions=2)
        listed = js(b, "topic", "list")
        assert {t["name"]: t["partitions"] for t in listed} == {"orders": 3, "payments": 2}
        assert "payments" in ok(b, "topic", "list")

        desc = js(b, "topic", "describe", "orders")[0]
        assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2]
        assert all(p["leader"] >= 0 and p["isr"] for p in desc["partitions"])
        assert desc["configs"]["retention.ms"] == "60000"

        ok(b, "topic", "alter", "orders", "--set", "cleanup.policy=compact", "--delete", "retention.ms")
        res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
        configs = admin.describe_configs([res])[res].result(timeout=10)
        assert configs["cleanup.policy"].value == "compact"
        assert configs["retention.ms"].is_default

        ok(b, "topic", "add-partitions", "orders", "--count", "5")
        assert len(admin.list_topics(timeout=10).topics["orders"].partitions) == 5
        out = cli(b, "topic", "add-partitions", "orders", "--count", "2")
        assert out.returncode == 1 and "INVALID_PARTITIONS" in out.stderr

        assert js(b, "topic", "delete", "payments") == {"deleted": ["payments"]}
        deadline = time.time() + 10
        while "payments" in admin.list_topics(timeout=10).topics and time.time() < deadline:
            time.sleep(0.1)
        assert "payments" not in admin.list_topics(timeout=10).topics
        out = cli(b, "topic", "delete", "payments")
        assert out.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in out.stderr
        assert cli(b, "topic", "delete", "payments", "--if-exists").returncode == 0

        out = cli(b, "topic", "describe", "nope")
        assert out.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in out.stderr


def commit(bootstrap, group, offsets):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False)
    c.close()


def lag_by_partition(desc):
    return {(o["topic"], o["partition"]): (o["committed"], o["end"], o["lag"]) for o in desc["offsets"]}


def test_group_describe_lag_and_reset_offsets_seen_by_confluent(tmp_path):
    with running_broker(tmp_path) as b:
        create_topic(b.bootstrap, "events", partitions=2)
        produce(b.bootstrap, "events", [(p, None, f"m{i}".encode()) for p in (0, 1) for i in range(10)])
        commit(b.bootstrap, "billing", [("events", 0, 3), ("events", 1, 8)])

        desc = js(b, "group", "describe", "billing")
        assert lag_by_partition(desc) == {("events", 0): (3, 10, 7), ("events", 1): (8, 10, 2)}
        assert desc["total_lag"] == 9
        assert desc["state"] == "Empty"
        human = ok(b, "group", "describe", "billing")
        assert "LAG" in human and "total lag 9" in human
        assert "billing" in [g["group"] for g in js(b, "group", "list")]

        # A dry run commits nothing.
        plan = js(b, "group", "reset-offsets", "billing", "--all-topics", "--to-earliest", "--dry-run")
        assert {(o["partition"], o["old"], o["new"]) for o in plan["offsets"]} == {(0, 3, 0), (1, 8, 0)}
        assert lag_by_partition(js(b, "group", "describe", "billing"))[("events", 0)] == (3, 10, 7)

        ok(b, "group", "reset-offsets", "billing", "--topic", "events:0", "--to-offset", "5")
        ok(b, "group", "reset-offsets", "billing", "--topic", "events:1", "--shift-by", "-6")
        assert lag_by_partition(js(b, "group", "describe", "billing")) == {
            ("events", 0): (5, 10, 5),
            ("events", 1): (2, 10, 8),
        }
        # A confluent consumer of the group starts where the reset put it.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing", "enable.auto.commit": False})
        c.assign([TopicPartition("events", 0)])
        m = c.poll(15)
        assert m is not None and not m.error() and m.offset() == 5 and m.value() == b"m5"
        c.close()

        # Out of range is kept within the partition's offsets.
        plan = js(b, "group", "reset-offsets", "billing", "--topic", "events", "--to-offset", "99")
        assert [o["new"] for o in plan["offsets"]] == [10, 10]
        now_ms = int(time.time() * 1000) + 60_000
        plan = js(b, "group", "reset-offsets", "billing", "--topic", "events", "--to-timestamp", "0")
        assert [o["new"] for o in plan["offsets"]] == [0, 0]
        plan = js(b, "group", "reset-offsets", "billing", "--topic", "events", "--to-timestamp", str(now_ms))
        assert [o["new"] for o in plan["offsets"]] == [10, 10]

        # --to-datetime (ISO-8601, UTC without a zone) moves offsets as
        # --to-timestamp does; --datetime starts a consume there too.
        create_topic(b.bootstrap, "timed", partitions=1)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(10):  # 1 s apart from 2023-11-14T22:13:20Z
            p.produce("timed", value=f"t{i}".encode(), partition=0, timestamp=1_700_000_000_000 + i * 1000)
        assert p.flush(30) == 0
        for when, ts, expected in [
            ("2023-11-14T22:13:25", 1_700_000_005_000, 5),
            ("2023-11-14T22:13:25.001Z", 1_700_000_005_001, 6),
            ("2023-11-14T23:13:22.500+01:00", 1_700_000_002_500, 3),
            ("1970-01-01T00:00:00Z", 0, 0),
            ("2030-01-01T00:00:00", 1_893_456_000_000, 10),
        ]:
            by_time = js(b, "group", "reset-offsets", "timer", "--topic", "timed", "--to-timestamp", str(ts))
            by_date = js(b, "group", "reset-offsets", "timer", "--topic", "timed", "--to-datetime", when)
            assert [o["new"] for o in by_date["offsets"]] == [o["new"] for o in by_time["offsets"]] == [expected], when
        assert lag_by_partition(js(b, "group", "describe", "timer"))[("timed", 0)] == (10, 10, 0)
        out = ok(b, "consume", "timed", "--datetime", "2023-11-14T22:13:27Z", "-e", "-f", "%o=%s\\n")
        assert out.splitlines() == ["7=t7", "8=t8", "9=t9"]
        for bad in ("2023-11-14", "yesterday", "2023-11-14T25:00:00"):
            out = cli(b, "group", "reset-offsets", "timer", "--topic", "timed", "--to-datetime", bad)
            assert out.returncode == 2 and "--to-datetime" in out.stderr, (bad, out.stderr)
        assert cli(b, "consume", "timed", "--datetime", "soon", "-e").returncode == 2

        # Not while the group has members.
        member = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing", "session.timeout.ms": 6000})
        member.subscribe(["events"])
        deadline = time.time() + 20
        while not member.assignment() and time.time() < deadline:
            member.poll(0.2)
        out = cli(b, "group", "reset-offsets", "billing", "--all-topics", "--to-earliest")
        assert out.returncode == 1 and "stop its consumers" in out.stderr
        out = cli(b, "group", "delete", "billing")
        assert out.returncode == 1 and "NON_EMPTY_GROUP" in out.stderr
        member.close()

        assert js(b, "group", "delete", "billing") == {"deleted": ["billing"]}
        assert "billing" not in [g["group"] for g in js(b, "group", "list")]
        out = cli(b, "group", "describe", "billing")
        assert out.returncode == 1 and "GROUP_ID_NOT_FOUND" in out.stderr


def test_produce_lines_read_back_by_confluent(tmp_path):
    with running_broker(tmp_path) as b:
        create_topic(b.bootstrap, "lines", partitions=3)
        keys = [f"key-{i}" for i in range(12)]
        stdin = "".join(f"{k}:value {i}\n" for i, k in enumerate(keys)) + "no separator here\n"
        res = js(b, "produce", "lines", "-K", ":", "-H", "source=cli", "-H", "n=1", stdin=stdin)
        assert res == {"topic": "lines", "produced": 13}

        got = read_all(b.bootstrap, "lines", 13, 3)
        assert len(got) == 13
        by_value = {m.value().decode(): m for m in got}
        assert by_value["no separator here"].key() is None
        for i, k in enumerate(keys):
            m = by_value[f"value {i}"]
            assert m.key() == k.encode()
            assert m.headers() == [("source", b"cli"), ("n", b"1")]

        # Keys land where Kafka's default partitioner (murmur2) puts them.
        p = Producer({"bootstrap.servers": b.bootstrap, "partitioner": "murmur2_random"})
        where = {}
        for k in keys:
            p.produce("lines", key=k.encode(), value=b"x",
                      on_delivery=lambda err, msg: where.__setitem__(msg.key().decode(), msg.partition()))
        assert p.flush(30) == 0
        for k in keys:
            assert by_value[f"value {keys.index(k)}"].partition() == where[k], k

        # One partition, and a topic that does not exist.
        ok(b, "produce", "lines", "-p", "2", stdin="a\nb\n")
        out = cli(b, "produce", "missing", stdin="a\n")
        assert out.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in out.stderr


def test_consume_formats_offsets_and_groups(tmp_path):
    with running_broker(tmp_path) as b:
        create_topic(b.bootstrap, "feed", partitions=2)
        produce(b.bootstrap, "feed", [(i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])

        out = ok(b, "consume", "feed", "--from-beginning", "-e", "-f", "%p:%o:%k=%s\\n")
        lines = sorted(out.splitlines())
        assert len(lines) == 20
        assert "0:0:k0=v0" in lines and "1:9:k19=v19" in lines

        recs = [json.loads(line) for line in ok(b, "consume", "feed", "--from-beginning", "-e", "--json").splitlines()]
        assert sorted(r["value"] for r in recs) == sorted(f"v{i}" for i in range(20))
        assert all(r["topic"] == "feed" and r["timestamp"] > 0 for r in recs)

        out = ok(b, "consume", "feed", "-p", "0", "-o", "7", "-e", "-f", "%o %s\\n")
        assert out.splitlines() == ["7 v14", "8 v16", "9 v18"]
        out = ok(b, "consume", "feed", "--from-beginning", "-c", "3", "-f", "%s\\n")
        assert len(out.splitlines()) == 3
        assert ok(b, "consume", "feed", "-e") == ""  # from the end: nothing new
        assert len(ok(b, "consume", "feed", "--timestamp", "0", "-e").splitlines()) == 20

        # With a group: from its committed offsets, and what is read is committed.
        commit(b.bootstrap, "tail", [("feed", 0, 8), ("feed", 1, 10)])
        out = ok(b, "consume", "feed", "-g", "tail", "-e", "-f", "%s\\n")
        assert sorted(out.splitlines()) == ["v16", "v18"]
        desc = js(b, "group", "describe", "tail")
        assert {o["partition"]: o["lag"] for o in desc["offsets"]} == {0: 0, 1: 0}
        produce(b.bootstrap, "feed", [(1, None, b"late")])
        assert ok(b, "consume", "feed", "-g", "tail", "-e") == "late\n"

        # The group assigns the partitions: --partition with it is bad usage.
        out = cli(b, "consume", "feed", "-g", "tail", "-p", "0", "-e")
        assert out.returncode == 2 and "--partition" in out.stderr

        # Following (no -e) until SIGTERM: what was read is still committed.
        follower = subprocess.Popen(
            [b.bin, "consume", "feed", "-g", "follow", "--from-beginning"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "SLUICE_BOOTSTRAP": b.bootstrap},
        )
        lines = [follower.stdout.readline() for _ in range(21)]
        assert len([x for x in lines if x]) == 21
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(15) == 0
        desc = js(b, "group", "describe", "follow")
        assert desc["total_lag"] == 0 and len(desc["offsets"]) == 2


def produce_keyed(bootstrap, topic, keys):
    """One message a key, partitioned by key; key → partition."""
    where = {}
    p = Producer({"bootstrap.servers": bootstrap})
    for k in keys:
        p.produce(topic, key=k.encode(), value=k.encode(),
                  on_delivery=lambda err, msg: where.__setitem__(msg.key().decode(), msg.partition()))
    assert p.flush(30) == 0
    return where


def start_consume(b, tmp_path, name, *args):
    """A `sluice consume` in the background, its stdout in a file."""
    out = open(tmp_path / f"{name}.out", "w")
    err = open(tmp_path / f"{name}.err", "w")
    proc = subprocess.Popen([b.bin, "consume", *args], stdout=out, stderr=err,
                            env={**os.environ, "SLUICE_BOOTSTRAP": b.bootstrap})
    out.close()
    err.close()
    return proc


def lines_of(tmp_path, name):
    return (tmp_path / f"{name}.out").read_text().splitlines()


def wait_for(what, cond, timeout=30.0, step=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        (step or (lambda: time.sleep(0.2)))()
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc, tmp_path, name):
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    assert code == 0, (tmp_path / f"{name}.err").read_text()


def test_two_cli_consumers_in_one_group_split_the_partitions(tmp_path):
    with running_broker(tmp_path, GROUP_CONFIG) as b:
        create_topic(b.bootstrap, "shared", partitions=4)
        keys = [f"key-{i}" for i in range(40)]
        where = produce_keyed(b.bootstrap, "shared", keys[:20])
        fmt = ["-f", "%p:%o:%k\\n"]
        procs = {n: start_consume(b, tmp_path, n, "shared", "-g", "duo", "--from-beginning", *fmt)
                 for n in ("one", "two")}

        # Both are members of the group, two partitions each. Until the
        # first of them has joined, the group does not exist yet.
        def split():
            out = cli(b, "group", "describe", "duo", "--json")
            if out.returncode != 0 and "GROUP_ID_NOT_FOUND" in out.stderr:
                return None
            assert out.returncode == 0, out.stderr
            d = json.loads(out.stdout)
            ok_ = (d["type"] == "consumer" and len(d["members"]) == 2
                   and sorted(len(m["assigned"]) for m in d["members"]) == [2, 2])
            return d if ok_ else None
        desc = wait_for("two members with two partitions each", split)
        owned = [{a["partition"] for a in m["assigned"]} for m in desc["members"]]
        assert owned[0] | owned[1] == {0, 1, 2, 3} and not owned[0] & owned[1]

        where.update(produce_keyed(b.bootstrap, "shared", keys[20:]))
        assert set(where.values()) == {0, 1, 2, 3}  # the keys spread
        wait_for("all 40 records", lambda: sum(len(lines_of(tmp_path, n)) for n in procs) >= 40)
        for n, proc in procs.items():
            stop(proc, tmp_path, n)

        # Each record exactly once, from the partition its key went to.
        printed = [line.split(":") for n in procs for line in lines_of(tmp_path, n)]
        assert sorted(k for _, _, k in printed) == sorted(keys)
        assert all(int(p) == where[k] for p, _, k in printed)
        assert len({(p, o) for p, o, _ in printed}) == 40
        # Records produced once both were members: each read its own partitions.
        late = [{int(p) for p, _, k in (line.split(":") for line in lines_of(tmp_path, n)) if k in keys[20:]}
                for n in procs]
        assert sorted(map(sorted, late)) == sorted(map(sorted, owned))

        # Stopped by SIGTERM: they committed everything and left.
        desc = js(b, "group", "describe", "duo")
        assert desc["members"] == []
        assert all(o["committed"] == o["end"] for o in desc["offsets"]) and len(desc["offsets"]) == 4
        assert sum(o["end"] for o in desc["offsets"]) == 40


def test_cli_consumer_and_confluent_kip848_consumer_share_a_group(tmp_path):
    with running_broker(tmp_path, GROUP_CONFIG) as b:
        create_topic(b.bootstrap, "mixed", partitions=4)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "mix", "group.protocol": "consumer",
                      "auto.offset.reset": "earliest"})
        c.subscribe(["mixed"])
        got = []

        def poll():
            for m in c.consume(num_messages=100, timeout=0.2):
                assert not m.error(), m.error()
                got.append(m)
        wait_for("confluent's assignment", lambda: len(c.assignment()) == 4, step=poll)

        cli_proc = start_consume(b, tmp_path, "cli", "mixed", "-g", "mix", "-f", "%p:%o:%k\\n")

        def split():
            d = js(b, "group", "describe", "mix")
            return (len(d["members"]) == 2 and len(c.assignment()) == 2
                    and sorted(len(m["assigned"]) for m in d["members"]) == [2, 2])
        wait_for("the partitions split between confluent and the CLI", split, step=poll)

        keys = [f"key-{i}" for i in range(40)]
        where = produce_keyed(b.bootstrap, "mixed", keys)
        wait_for("all 40 records", lambda: len(got) + len(lines_of(tmp_path, "cli")) >= 40, step=poll)
        stop(cli_proc, tmp_path, "cli")
        c.close()

        theirs = {m.key().decode(): m.partition() for m in got}
        ours = {line.split(":")[2]: int(line.split(":")[0]) for line in lines_of(tmp_path, "cli")}
        assert sorted([*theirs, *ours]) == sorted(keys)  # each once
        assert not set(theirs.values()) & set(ours.values())  # different partitions
        assert ours and theirs
        assert all(where[k] == p for k, p in {**theirs, **ours}.items())


def test_unreachable_broker_exits_3_within_timeout(tmp_path):
    from conftest import Broker

    nobody = Broker(tmp_path)  # for its binary path; never started
    # Nothing listens on the port.
    addr = f"127.0.0.1:{free_port()}"
    t0 = time.time()
    out = cli(nobody, "topic", "list", "--timeout", "3", bootstrap=addr)
    assert out.returncode == 3, out.stderr
    assert addr in out.stderr and "cannot reach" in out.stderr
    assert time.time() - t0 < 3

    # Something accepts the connection but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.time()
        out = cli(nobody, "group", "list", "--timeout", "2", bootstrap=addr)
        took = time.time() - t0
    assert out.returncode == 3, out.stderr
    assert addr in out.stderr and "within 2 s" in out.stderr
    assert 1.5 < took < 10

    # Bad usage is exit 2.
    assert cli(nobody, "topic", "create").returncode == 2
    assert cli(nobody, "topic", "create", "t", "-c", "novalue", bootstrap=addr).returncode == 2
    assert cli(nobody, "topic", "list", "--timeout", "0").returncode == 2


def test_cluster_describe_and_config_get_set(tmp_path):
    with running_broker(tmp_path) as b:
        c = js(b, "cluster", "describe")
        assert [(x["host"], x["port"]) for x in c["brokers"]] == [("127.0.0.1", b.port)]
        assert c["controller"] == c["brokers"][0]["id"]
        assert "BROKER" in ok(b, "cluster", "describe")
        # A bootstrap list is tried in turn, as bootstrap.servers.
        dead = f"127.0.0.1:{free_port()}"
        assert js(b, "cluster", "describe", bootstrap=f"{dead},{b.bootstrap}")["controller"] == c["controller"]

        create_topic(b.bootstrap, "cfg", partitions=1)
        ok(b, "config", "set", "--topic", "cfg", "retention.bytes=1048576", "max.message.bytes=2000000")
        got = {e["name"]: e for e in js(b, "config", "get", "--topic", "cfg")}
        assert got["retention.bytes"]["value"] == "1048576"
        assert got["retention.bytes"]["source"] == "DYNAMIC_TOPIC_CONFIG"
        assert "segment.bytes" not in got  # defaults only with --all
        every = {e["name"] for e in js(b, "config", "get", "--topic", "cfg", "--all")}
        assert "segment.bytes" in every
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
        assert admin.describe_configs([res])[res].result(timeout=10)["max.message.bytes"].value == "2000000"
        ok(b, "config", "set", "--topic", "cfg", "--delete", "retention.bytes")
        assert "retention.bytes" not in {e["name"] for e in js(b, "config", "get", "--topic", "cfg")}

        out = cli(b, "config", "set", "--topic", "cfg", "retention.ms=soon")
        assert out.returncode == 1 and "INVALID_CONFIG" in out.stderr

        node = c["brokers"][0]["id"]
        broker_cfg = {e["name"]: e for e in js(b, "config", "get", "--broker", str(node), "--all")}
        assert "num.partitions" in broker_cfg or "log.segment.bytes" in broker_cfg
        assert cli(b, "config", "get").returncode == 2  # which resource?


AUTHORIZER = (
    '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"\n'
    '"allow.everyone.if.no.acl.found" = true\n'
)


def test_acls_through_the_cli_seen_by_confluent(tmp_path):
    from confluent_kafka.admin import (
        AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType,
    )

    with running_broker(tmp_path, AUTHORIZER) as b:
        created = js(b, "acl", "create", "--principal", "User:alice", "--topic", "orders",
                     "--operation", "READ,DESCRIBE")
        assert {a["operation"] for a in created} == {"READ", "DESCRIBE"}
        ok(b, "acl", "create", "--principal", "User:bob", "--group", "pay", "--prefixed",
           "--operation", "READ", "--deny")

        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        seen = admin.describe_acls(everything).result(timeout=20)
        assert sorted((a.principal, a.name, a.operation.name, a.permission_type.name,
                       a.resource_pattern_type.name) for a in seen) == [
            ("User:alice", "orders", "DESCRIBE", "ALLOW", "LITERAL"),
            ("User:alice", "orders", "READ", "ALLOW", "LITERAL"),
            ("User:bob", "pay", "READ", "DENY", "PREFIXED"),
        ]
        listed = js(b, "acl", "list", "--principal", "User:bob")
        assert [(a["resource_type"], a["resource_name"], a["permission"]) for a in listed] == [("GROUP", "pay", "DENY")]
        assert "User:alice" in ok(b, "acl", "list")

        deleted = js(b, "acl", "delete", "--topic", "orders", "--principal", "User:alice")
        assert len(deleted) == 2
        assert [a.principal for a in admin.describe_acls(everything).result(timeout=20)] == ["User:bob"]
        assert cli(b, "acl", "create", "--topic", "x", "--operation", "READ").returncode == 2
        assert cli(b, "acl", "create", "--principal", "User:a", "--topic", "x", "--operation", "EAT").returncode == 2


def test_scram_user_added_by_the_cli_authenticates(tmp_path):
    from test_sasl import consume_rdkafka, produce_rdkafka, rdkafka_conf, start_sasl_broker

    b = start_sasl_broker(tmp_path)
    try:
        ok(b, "user", "add", "carol", "--password", "carol-secret", "--mechanism", "SCRAM-SHA-512")
        ok(b, "user", "add", "dave", env={"SLUICE_USER_PASSWORD": "dave-secret"})
        users = {(u["user"], u["mechanism"]) for u in js(b, "user", "list")}
        assert {("carol", "SCRAM-SHA-512"), ("dave", "SCRAM-SHA-256"), ("bob", "SCRAM-SHA-256")} <= users

        produce_rdkafka(rdkafka_conf(b, "SCRAM-SHA-512", "carol", "carol-secret"), "scram-cli", n=20)
        got = consume_rdkafka(rdkafka_conf(b, "SCRAM-SHA-256", "dave", "dave-secret"), "scram-cli", 20)
        assert len(got) == 20

        # The CLI itself logs in with SCRAM (and PLAIN) on the SASL listener.
        carol = ["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "carol", "--sasl-password", "carol-secret"]
        assert "scram-cli" in [t["name"] for t in js(b, "topic", "list", *carol, bootstrap=b.sasl_bootstrap)]
        ok(b, "produce", "scram-cli", *carol, bootstrap=b.sasl_bootstrap, stdin="over sasl\n")
        plain = ["--sasl-mechanism", "PLAIN", "--sasl-username", "bob", "--sasl-password", "bob-secret"]
        out = ok(b, "consume", "scram-cli", "--from-beginning", "-e", *plain, bootstrap=b.sasl_bootstrap)
        assert "over sasl" in out.splitlines()
        bad = ["--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "dave", "--sasl-password", "nope"]
        out = cli(b, "topic", "list", *bad, bootstrap=b.sasl_bootstrap)
        assert out.returncode == 1 and "SASL_AUTHENTICATION_FAILED" in out.stderr and "dave" in out.stderr
        assert cli(b, "topic", "list", "--sasl-mechanism", "GSSAPI", bootstrap=b.sasl_bootstrap).returncode == 2

        ok(b, "user", "delete", "dave")
        assert "dave" not in {u["user"] for u in js(b, "user", "list")}
        out = cli(b, "user", "delete", "nobody")
        assert out.returncode == 1 and "RESOURCE_NOT_FOUND" in out.stderr
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def test_shell_completion_and_help_name_exit_codes(tmp_path):
    from conftest import Broker

    b = Broker(tmp_path)
    script = ok(b, "completion", "bash")
    assert "sluice" in script and "reset-offsets" in script
    assert "Exit codes" in ok(b, "group", "--help")


def test_group_describe_shows_kip848_and_classic_members_with_their_partitions(tmp_path):
    with running_broker(tmp_path) as b:
        create_topic(b.bootstrap, "work", partitions=4)
        produce(b.bootstrap, "work", [(p, None, b"x") for p in range(4) for _ in range(5)])
        members = []
        for group, protocol in (("new-style", "consumer"), ("old-style", "classic")):
            conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "group.protocol": protocol,
                    "auto.offset.reset": "earliest"}
            if protocol == "classic":
                conf["session.timeout.ms"] = 6000
            c = Consumer(conf)
            c.subscribe(["work"])
            seen, deadline = 0, time.time() + 30
            while seen < 20 and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    seen += 1
            assert seen == 20
            c.commit(asynchronous=False)
            members.append(c)

            desc = js(b, "group", "describe", group)
            assert desc["type"] == ("consumer" if protocol == "consumer" else "classic")
            assert desc["state"] == "Stable"
            assert len(desc["members"]) == 1
            assert sorted(a["partition"] for a in desc["members"][0]["assigned"]) == [0, 1, 2, 3]
            member_id = desc["members"][0]["member_id"]
            assert [(o["partition"], o["lag"], o["consumer"]) for o in desc["offsets"]] == [
                (p, 0, member_id) for p in range(4)
            ]
            out = cli(b, "group", "reset-offsets", group, "--all-topics", "--to-earliest")
            assert out.returncode == 1 and "stop its consumers" in out.stderr
        for c in members:
            c.close()


def test_cli_over_tls_and_mutual_tls(tmp_path):
    from test_tls import make_pki

    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    from conftest import Broker

    b = Broker(tmp_path)
    ssl_port, mtls_port = free_port(), free_port()
    b.config_path = tmp_path / "sluice.toml"
    b.config_path.write_text(
        f'listeners = "PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{ssl_port},MTLS://127.0.0.1:{mtls_port}"\n'
        '"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL"\n'
        '"inter.broker.listener.name" = "PLAINTEXT"\n'
        '"ssl.keystore.type" = "PEM"\n'
        f'"ssl.keystore.location" = "{pki / "broker-store.pem"}"\n'
        '"ssl.truststore.type" = "PEM"\n'
        f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
        '"listener.name.mtls.ssl.client.auth" = "required"\n'
    )
    b.start()
    try:
        ssl = f"127.0.0.1:{ssl_port}"
        mtls = f"127.0.0.1:{mtls_port}"
        ca = ["--tls-ca", str(pki / "ca.pem")]
        ok(b, "topic", "create", "secure", "-p", "2", *ca, bootstrap=ssl)
        ok(b, "produce", "secure", *ca, bootstrap=ssl, stdin="a\nb\n")
        alice = [*ca, "--tls-cert", str(pki / "alice.pem"), "--tls-key", str(pki / "alice.key")]
        out = ok(b, "consume", "secure", "--from-beginning", "-e", *alice, bootstrap=mtls)
        assert sorted(out.splitlines()) == ["a", "b"]
        # Metadata on the TLS listener names TLS addresses: the leader
        # connections are TLS too.
        assert js(b, "cluster", "describe", *ca, bootstrap=ssl)["brokers"][0]["port"] == ssl_port
        # Plaintext to a TLS port, or no client certificate on the mTLS
        # port: no broker there to talk to, within the timeout.
        out = cli(b, "topic", "list", "--timeout", "3", bootstrap=ssl)
        assert out.returncode == 3 and ssl in out.stderr
        out = cli(b, "topic", "list", "--timeout", "3", *ca, bootstrap=mtls)
        assert out.returncode == 3 and mtls in out.stderr
        assert cli(b, "topic", "list", "--tls-ca", str(tmp_path / "missing.pem"), bootstrap=ssl).returncode == 2
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def test_three_broker_cluster_leaders_coordinators_and_quorum(tmp_path):
    from cluster_support import Cluster

    c = Cluster(tmp_path)
    c.start()
    try:
        b = c.brokers[1]
        # Only one broker's address: the CLI finds leaders and coordinators itself.
        deadline = time.time() + 30
        while cli(b, "topic", "create", "spread", "-p", "6", "-r", "3").returncode != 0:
            assert time.time() < deadline, "no topic creation within 30 s"
            time.sleep(0.5)
        leaders = {p: c.leader("spread", p)[0] for p in range(6)}
        desc = js(b, "topic", "describe", "spread")[0]
        assert all(len(p["replicas"]) == 3 for p in desc["partitions"])

        lines = "".join(f"key-{i}:value-{i}\n" for i in range(60))
        assert js(b, "produce", "spread", "-K", ":", stdin=lines)["produced"] == 60
        got = read_all(c.bootstrap, "spread", 60, 6)
        assert sorted(m.value().decode() for m in got) == sorted(f"value-{i}" for i in range(60))
        out = ok(b, "consume", "spread", "--from-beginning", "-e", "-f", "%p %s\\n")
        assert len(out.splitlines()) == 60
        assert {int(line.split()[0]) for line in out.splitlines()} <= set(leaders)

        commit(c.bootstrap, "spread-readers", [("spread", p, 1) for p in range(6)])
        # End offsets as confluent saw them (a replicated log need not start at 0).
        ends = {}
        for m in got:
            ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
        desc = js(b, "group", "describe", "spread-readers")
        assert {o["partition"]: (o["end"], o["lag"]) for o in desc["offsets"]} == {
            p: (ends[p], ends[p] - 1) for p in ends
        }

        cl = js(b, "cluster", "describe")
        assert sorted(x["id"] for x in cl["brokers"]) == [1, 2, 3]
        assert sorted(v["node"] for v in cl["quorum"]["voters"]) == [1, 2, 3]
        assert cl["quorum"]["leader"] in (1, 2, 3)
    finally:
        c.shutdown()
