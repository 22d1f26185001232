"""The controller quorum's voters change at runtime (KIP-853's AddRaftVoter
and RemoveRaftVoter, through the Java Admin client).

Three voters (1, 2, 3) and a broker that does not vote (4). Broker 4 is
added as a voter under its data folder's directory id; broker 1 is then
drained (its replicas moved off), removed from the quorum (it stays an
observer), stopped and unregistered — while a producer's acknowledged
records all stay readable. The quorum of 2, 3 and 4 goes on without broker
1, also with one more voter down. Bad requests get Kafka's errors and
change nothing: an unknown voter or a wrong directory id
(VOTER_NOT_FOUND), a voter added twice (DUPLICATE_VOTER), a broker added
under a folder it does not run on (INVALID_REQUEST), and the last voter
(INVALID_REQUEST)."""

import re
import shutil
import time

import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from cluster_support import Cluster, GroupReader, Workload, check_acked, metadata, wait_for
from java_support import run_java

pytestmark = pytest.mark.timeout(300)

BROKER_ONLY = 'process.roles = "broker"\n'
WRONG_DIR = "AAAAAAAAAAAAAAAAAAAAAQ"


def directory_id(broker):
    text = (broker.data_dir / "meta.properties").read_text()
    return re.search(r"^directory\.id=(\S+)$", text, re.M).group(1)


def quorum(bootstrap):
    run = run_java("AdminChecks", "quorum", bootstrap, timeout=60)
    q = run.step("quorum")
    assert q["ok"], run.report()
    return sorted(v[0] for v in q["voters"]), sorted(o[0] for o in q["observers"])


def voter_call(bootstrap, *args):
    run = run_java("AdminChecks", *args, timeout=150)
    s = run.step(args[0])
    return s["ok"], s.get("error", "").rsplit(".", 1)[-1], s.get("message", ""), run


def test_voters_are_added_and_removed_at_runtime(tmp_path):
    c = Cluster(tmp_path, nodes=[1, 2, 3, 4], voters=[1, 2, 3], node_config={4: BROKER_ONLY})
    try:
        c.start()
        c.create_topic("orders", 3, 3)
        bootstrap = c.brokers[2].bootstrap
        assert wait_for("broker 4 observing", lambda: quorum(bootstrap) == ([1, 2, 3], [4]), timeout=60)
        dirs = {n: directory_id(c.brokers[n]) for n in c.ids}

        work = Workload(c.bootstrap, [("orders", p) for p in range(3)], pause=0.02)
        work.start()
        reader = GroupReader(c.bootstrap, "orders", "voters-check", **{"session.timeout.ms": 30000})

        # Bad requests change nothing.
        ok, err, msg, run = voter_call(bootstrap, "remove-voter", bootstrap, 9, dirs[1])
        assert (ok, err) == (False, "VoterNotFoundException"), run.report()
        ok, err, msg, run = voter_call(bootstrap, "remove-voter", bootstrap, 1, WRONG_DIR)
        assert (ok, err) == (False, "VoterNotFoundException"), run.report()
        ok, err, msg, run = voter_call(bootstrap, "add-voter", bootstrap, 2, dirs[2], "127.0.0.1", 1)
        assert (ok, err) == (False, "DuplicateVoterException"), run.report()
        ok, err, msg, run = voter_call(bootstrap, "add-voter", bootstrap, 4, WRONG_DIR, "127.0.0.1", 1)
        assert (ok, err) == (False, "InvalidRequestException"), run.report()
        assert "directory id" in msg, msg
        assert quorum(bootstrap) == ([1, 2, 3], [4])

        # Broker 4 becomes a voter.
        ok, err, msg, run = voter_call(bootstrap, "add-voter", bootstrap, 4, dirs[4], "127.0.0.1", c.port(4))
        assert ok, run.report()
        assert quorum(bootstrap) == ([1, 2, 3, 4], [])

        # Broker 1 is drained: every replica it holds moves to another broker.
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            moves = {}
            for topic, t in metadata(c.port(2))["topics"].items():
                for p, v in t["partitions"].items():
                    if 1 in v["replicas"]:
                        spare = next(b for b in (2, 3, 4) if b not in v["replicas"])
                        moves[TopicPartition(topic, p)] = [spare if r == 1 else r for r in v["replicas"]]
            assert moves
            admin.alter_partition_reassignments({tp: r for tp, r in moves.items()})
            wait_for(
                "broker 1 drained",
                lambda: not admin.list_partition_reassignments()
                and all(1 not in v["replicas"] for t in metadata(c.port(2))["topics"].values() for v in t["partitions"].values()),
                timeout=120,
            )
        finally:
            admin.close()

        # ... removed from the quorum (an observer from then on) ...
        ok, err, msg, run = voter_call(bootstrap, "remove-voter", bootstrap, 1, dirs[1])
        assert ok, run.report()
        assert quorum(bootstrap) == ([2, 3, 4], [1])
        # ... stopped and unregistered.
        c.kill9(1)
        run = run_java("AdminChecks", "unregister", bootstrap, 1, timeout=90)
        assert run.step("unregister 1")["ok"], run.report()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"]) == [2, 3, 4]
        finally:
            admin.close()

        # The quorum of 2, 3 and 4 keeps the metadata going with 2 down: it
        # fences broker 2 and creates a topic on 3 and 4.
        c.kill9(2)
        wait_for("broker 2 fenced", lambda: 2 not in metadata(c.port(3))["brokers"], timeout=30)
        c.create_topic("after", 1, 2)
        c.start([2])

        work.stop()
        assert work.unresolved == 0 and not work.fatal, (work.unresolved, work.fatal)
        assert len(work.acks) > 100, len(work.acks)
        problems = check_acked(work, "orders", 3, timeout=60)
        assert not problems, problems[:10]
        reader.stop()
        reader.check()
        assert reader.read > 0, "the group read records"

        # The last voter cannot go.
        for v in (2, 3):
            ok, err, msg, run = voter_call(c.brokers[4].bootstrap, "remove-voter", c.brokers[4].bootstrap, v, dirs[v])
            assert ok, run.report()
        ok, err, msg, run = voter_call(c.brokers[4].bootstrap, "remove-voter", c.brokers[4].bootstrap, 4, dirs[4])
        assert (ok, err) == (False, "InvalidRequestException"), run.report()
        assert "last" in msg, msg
        assert quorum(c.brokers[4].bootstrap)[0] == [4]
        assert not c.crashed(), c.crashed()
    finally:
        c.shutdown()


def test_a_voter_back_on_a_wiped_disk_votes_only_once_added_again(tmp_path):
    """Voter 3 loses its data folder (kill -9, folder deleted, started
    again on an empty one). Its memory of the votes it gave went with it,
    so it follows the quorum without voting (a vote now could be its second
    in a term): with the active controller down, it and the other voter
    elect no leader, and no topic can be created. Once RemoveRaftVoter
    (its old folder) and AddRaftVoter (its new folder) have made the new
    folder its own, the same two elect a leader and the metadata moves."""
    c = Cluster(tmp_path, nodes=[1, 2, 3], voters=[1, 2, 3])
    try:
        c.start()
        c.create_topic("before", 1, 3)
        old = directory_id(c.brokers[3])
        c.kill9(3)
        shutil.rmtree(c.brokers[3].data_dir)
        c.start([3])
        new = directory_id(c.brokers[3])
        assert new != old
        assert wait_for(
            "voter 3 abstaining",
            lambda: "back on another data folder" in c.brokers[3].log_path.read_text(errors="replace"),
            timeout=30,
        )

        def quorum_leader(node):
            run = run_java("AdminChecks", "quorum", c.brokers[node].bootstrap, timeout=60)
            q = run.step("quorum")
            assert q["ok"], run.report()
            return q["leader"]

        leader = quorum_leader(1)
        assert leader in (1, 2), leader
        other = 3 - leader
        c.kill9(leader)
        time.sleep(6)  # many election timeouts
        with pytest.raises(AssertionError, match="could not create"):
            Cluster.create_topic(c, "without-a-quorum", 1, 2, timeout=8)
        print(f"  controller {leader} down: broker {other} and the wiped voter 3 elected no leader")

        c.start([leader])
        bootstrap = c.brokers[leader].bootstrap
        ok, err, msg, run = voter_call(bootstrap, "remove-voter", bootstrap, 3, old)
        assert ok, run.report()
        ok, err, msg, run = voter_call(bootstrap, "add-voter", bootstrap, 3, new, "127.0.0.1", c.port(3))
        assert ok, run.report()
        assert wait_for("voter 3 votes again", lambda: "votes again" in c.brokers[3].log_path.read_text(errors="replace"), timeout=30)
        leader = quorum_leader(other)
        down = leader if leader != 3 else other
        c.kill9(down)
        up = [n for n in (1, 2, 3) if n != down]
        # Fencing the killed broker takes the quorum; then a topic on the
        # two brokers up.
        wait_for(f"broker {down} fenced", lambda: down not in metadata(c.port(up[0]))["brokers"], timeout=30)
        c.create_topic("after", 1, 2, timeout=30)
        print(f"  after RemoveRaftVoter and AddRaftVoter: with {down} down, {up} keep the metadata going")
        assert not c.crashed(), c.crashed()
    finally:
        c.shutdown()
