"""A dead broker is fenced: after kill -9 of a broker, the active controller
stops hearing it, and once `broker.session.timeout.ms` (Kafka's 9 s) has
passed it leaves Metadata's and DescribeCluster's broker lists and every
ISR (it is listed among the offline replicas), on every broker's answers.
When it comes back it is heard again and returns everywhere. A long-lived
admin client made before the kill keeps working through all of it."""

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from cluster_support import NODES as _NODES, Workload, metadata, running_cluster
from java_support import run_java_interactive

pytestmark = pytest.mark.timeout(180)

NODES = list(_NODES)
SESSION_MS = 9000  # the default, as Kafka's
REVIEW_MS = 2000  # broker.heartbeat.interval.ms, the default


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path) as c:
        c.create_topic("live", 3, 3)
        yield c


def views(cluster, asked):
    """{asking broker: (broker ids listed, {partition: (isr, offline)})}."""
    out = {}
    for n in asked:
        md = metadata(cluster.port(n), ["live"])
        parts = md["topics"]["live"]["partitions"]
        out[n] = (
            sorted(md["brokers"]),
            {p: (sorted(v["isr"]), sorted(v.get("offline", []))) for p, v in parts.items()},
        )
    return out


def wait_views(cluster, asked, want_brokers, timeout):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = views(cluster, asked)
        except (OSError, AssertionError) as e:
            seen = repr(e)
        if isinstance(seen, dict) and all(
            b == want_brokers and all(isr == want_brokers for isr, _ in parts.values())
            for b, parts in seen.values()
        ):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"brokers and ISRs not {want_brokers} within {timeout}s: {seen}")


def test_a_killed_broker_is_fenced_then_back(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    java = run_java_interactive("AdminSurvives", cluster.bootstrap)
    try:
        java.expect("ready", 60)
        assert sorted(n.id for n in admin.describe_cluster().result(10).nodes) == NODES
        wait_views(cluster, NODES, NODES, 10)

        victim = 3
        killed = time.monotonic()
        cluster.kill9(victim)
        rest = [n for n in NODES if n != victim]
        seen = wait_views(cluster, rest, rest, (SESSION_MS + REVIEW_MS) / 1000 + 3)
        fenced_after = time.monotonic() - killed
        print(f"  broker {victim} fenced after {fenced_after:.1f}s: {seen}")
        assert fenced_after > 3, "fenced before the session timeout could pass"
        for _, parts in seen.values():
            assert all(offline == [victim] for _, offline in parts.values()), parts
        assert sorted(n.id for n in admin.describe_cluster().result(10).nodes) == rest

        # The admin clients made before the kill keep working, promptly.
        started = time.monotonic()
        res = ConfigResource("topic", "live", set_config={"retention.ms": "3600000"})
        admin.alter_configs([res])[res].result(15)
        admin.create_topics([NewTopic("after-kill", 2, 2)])["after-kill"].result(15)
        print(f"  librdkafka admin: alter + create took {time.monotonic() - started:.2f}s")
        java.send("go")
        line = java.expect("done", 90)
        print(f"  Java Admin after the kill: {line}")
        assert line["ok"], line
        assert line["nodes"] == rest, line
        assert max(line["ms"].values()) < 10000, f"a Java admin call took {line['ms']}"

        cluster.start([victim])
        back = time.monotonic()
        wait_views(cluster, NODES, NODES, 20)
        print(f"  broker {victim} back in every view {time.monotonic() - back:.1f}s after its restart")
    finally:
        java.close()


def test_a_lagging_replica_leaves_the_isr_and_comes_back(tmp_path):
    """A follower cut off from the other brokers, for less than
    `broker.session.timeout.ms` (so it is not fenced: still listed, not
    offline): once `replica.lag.time.max.ms` has passed without it catching
    up, its partition's leader leaves it out of the ISR, on every other
    broker's Metadata; healed, it catches up and is back in the ISR."""
    config = '"replica.lag.time.max.ms" = 2000\n"broker.session.timeout.ms" = 60000\n'
    with running_cluster(tmp_path, config=config) as c:
        c.create_topic("lag", 1, 3)
        leader, _ = c.leader("lag", 0)
        follower = next(n for n in NODES if n != leader)
        others = [n for n in NODES if n != follower]

        def isr_everywhere(asked, want, timeout):
            deadline = time.monotonic() + timeout
            seen = None
            while time.monotonic() < deadline:
                try:
                    seen = {}
                    for n in asked:
                        md = metadata(c.port(n), ["lag"])
                        p = md["topics"]["lag"]["partitions"][0]
                        seen[n] = (sorted(md["brokers"]), sorted(p["isr"]), sorted(p.get("offline", [])))
                except (OSError, AssertionError) as e:
                    seen = repr(e)
                if isinstance(seen, dict) and all(v == (NODES, want, []) for v in seen.values()):
                    return time.monotonic()
                time.sleep(0.1)
            raise AssertionError(f"(brokers, isr, offline) of lag-0 not ({NODES}, {want}, []) within {timeout}s: {seen}")

        isr_everywhere(NODES, NODES, 20)
        # Under a steady stream of writes every follower keeps up: none
        # leaves the ISR.
        w = Workload(c.bootstrap, [("lag", 0)], pause=0.001)
        w.start()
        try:
            w.wait_acks(100, timeout=15)
            until = time.monotonic() + 5
            while time.monotonic() < until:
                isr = sorted(metadata(c.port(leader), ["lag"])["topics"]["lag"]["partitions"][0]["isr"])
                assert isr == NODES, f"the ISR of lag-0 shrank to {isr} under writes, no replica cut off"
                time.sleep(0.2)
        finally:
            w.stop()
        print(f"  under writes for 5 s the ISR stayed whole ({w.summary()})")
        cut = time.monotonic()
        c.net.isolate(follower)
        left = isr_everywhere(others, others, 15)
        print(f"  follower {follower} cut off: out of the ISR of lag-0 after {left - cut:.1f}s, still listed")
        assert left - cut >= 1.5, f"out of the ISR {left - cut:.1f}s after the cut, before replica.lag.time.max.ms"
        c.net.heal()
        healed = time.monotonic()
        back = isr_everywhere(NODES, NODES, 20)
        print(f"  healed: back in the ISR after {back - healed:.1f}s")
