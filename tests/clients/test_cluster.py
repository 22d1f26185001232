"""Three brokers in cluster mode (a Raft controller quorum, partitions
replicated by Raft), driven by real clients: acknowledged writes survive the
partition leader's kill -9, a leader cut off from its peers, and all three
brokers killed at once; Metadata describes the three brokers and the
replicas, and followers turn away produce and fetch requests.

Every broker's internal (broker-to-broker) listener sits behind a
fault-injecting proxy run by the test: `--controller-voters` names the
proxies, `--internal-listen` the real ports behind them. The Raft transport
opens one connection per directed pair of nodes and starts it with a hello
naming the sender ("SLRT" · version u16 · node id u64); the brokers' Kafka
requests to each other (transaction markers, AddPartitionsToTxn
verify_only) go to the same listeners after a hello of the same layout
("SLKF"), so a proxy knows both ends of every connection it carries. Cutting
node X closes and refuses every connection from X and every connection to X:
X can neither send to nor hear from its peers (clients can still reach it), a
full partition of X from the quorum. A connection that does not start with
one of those hellos is forwarded with an unknown sender, and then only cut
when its destination is cut off.

A value counts as acknowledged only when librdkafka's delivery report for it
(acks=all) has no error. The checker reads each partition from offset 0 up to
its high watermark and requires every acknowledged value there once, at the
offset its delivery report gave, in the order the acknowledgements came.
Unacknowledged values may or may not be there.

Timings (no-leader windows, gaps between acknowledgements) are printed:
run with `pytest -s` to see them."""

import re
import shutil
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_support import (
    NODES,
    NOT_LEADER_OR_FOLLOWER,
    Cluster,
    Workload,
    assert_no_problems,
    check_acked,
    fetch_raw,
    init_producer_id_raw,
    metadata,
    produce_raw,
    read_partitions,
    wait_for,
    wait_replicated,
)

NOT_ENOUGH_REPLICAS = 19

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    started = time.monotonic()
    try:
        try:
            c.start()
            c.create_topic("cluster-ready-probe", 1, 3)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        print(f"\ncluster ready (RF3 topic created, leader agreed) after {time.monotonic() - started:.2f}s")
        yield c
        crashed = c.crashed()
        assert not crashed, "brokers exited on their own: " + ", ".join(
            f"{n} (code {c.brokers[n].proc.returncode})" for n in crashed
        )
    finally:
        c.shutdown()
        if c.net.unknown_hellos:
            print(f"proxies carried {c.net.unknown_hellos} connections without a hello (sender unknown)")
        for n, b in c.brokers.items():
            text = b.log_path.read_text(errors="replace") if b.log_path.exists() else ""
            if "panicked" in text:
                print(f"!! broker {n} panicked; see {b.log_path}")




def test_metadata_replicas_and_followers_turn_away_clients(cluster):
    """Every broker lists the three; an RF3 topic has three replicas, all in
    sync, and the same leader from every broker; followers answer produce and
    fetch with NOT_LEADER_OR_FOLLOWER and the leader takes them; RF1 works and
    RF4 is refused."""
    for n in NODES:
        md = metadata(cluster.port(n))
        assert sorted(md["brokers"]) == list(NODES), f"broker {n} lists {md['brokers']}"
        for m, (host, port) in md["brokers"].items():
            assert (host, port) == ("127.0.0.1", cluster.port(m)), f"broker {n} advertises {m} as {host}:{port}"
        assert md["controller"] in NODES, f"broker {n}: controller {md['controller']}"
        admin = AdminClient({"bootstrap.servers": cluster.brokers[n].bootstrap})
        described = admin.describe_cluster(request_timeout=10).result(timeout=15)
        assert sorted(node.id for node in described.nodes) == list(NODES), f"DescribeCluster via {n}"

    cluster.create_topic("described", 3, 3)
    for p in range(3):
        deadline = time.time() + 20
        while True:
            views = {n: cluster.partition_view(n, "described", p) for n in NODES}
            ok = all(v and sorted(v["replicas"]) == list(NODES) and sorted(v["isr"]) == list(NODES) for v in views.values())
            if ok and len({(v["leader"], v["epoch"]) for v in views.values()}) == 1:
                break
            assert time.time() < deadline, f"described-{p}: replicas/isr/leader never settled: {views}"
            time.sleep(0.1)
        leader, epoch = views[1]["leader"], views[1]["epoch"]
        assert leader in NODES and epoch >= 0, views
        print(f"  described-{p}: leader {leader} epoch {epoch} replicas {views[1]['replicas']} isr {views[1]['isr']}")

    # Leadership may still move right after creation (an election at a higher
    # term): a follower that took the write must have become the leader.
    for attempt in range(5):
        leader, epoch = cluster.leader("described", 0)
        answers = {}
        for n in NODES:
            if n != leader:
                answers[n] = (
                    produce_raw(cluster.port(n), "described", 0, b"to-a-follower")[0],
                    fetch_raw(cluster.port(n), "described", 0),
                )
        if all(a == (NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER) for a in answers.values()):
            break
        now, now_epoch = cluster.leader("described", 0)
        took = [n for n, a in answers.items() if a[0] == 0]
        print(f"  followers of described-0 under leader {leader} (epoch {epoch}) answered (produce, fetch) {answers}; "
              f"leader now {now} (epoch {now_epoch})")
        assert now_epoch > epoch and set(took) <= {now}, (
            f"followers of described-0 (leader {leader}, epoch {epoch}) answered (produce, fetch) {answers}, "
            f"and the leader is still {now} (epoch {now_epoch})"
        )
    else:
        raise AssertionError("described-0's leadership kept moving")
    err, base = produce_raw(cluster.port(leader), "described", 0, b"to-the-leader")
    # (Not necessarily at offset 0: Raft control entries, such as a new
    # leader's first entry, may take offsets as Kafka control batches.)
    assert err == 0 and base >= 0, f"produce to leader {leader}: error {err}, base offset {base}"
    assert fetch_raw(cluster.port(leader), "described", 0) == 0

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    fut = admin.create_topics([NewTopic("too-many", num_partitions=1, replication_factor=4)], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        fut["too-many"].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, e.value

    cluster.create_topic("single", 3, 1)
    for p in range(3):
        v = cluster.partition_view(1, "single", p)
        assert len(v["replicas"]) == 1 and v["leader"] == v["replicas"][0], v
        # Every broker gives the same leader epoch, replica of the partition or
        # not (librdkafka drops metadata whose leader epoch went backwards).
        deadline = time.time() + 10
        while True:
            views = {n: cluster.partition_view(n, "single", p) for n in NODES}
            epochs = {n: v and v["epoch"] for n, v in views.items()}
            if len(set(epochs.values())) == 1:
                break
            assert time.time() < deadline, f"single-{p} (replicas {v['replicas']}): leader epochs differ by broker: {epochs}"
            time.sleep(0.1)


def test_acked_writes_survive_leader_kill(cluster):
    """kill -9 of the leader of `one-0` under acks=all load: the two left
    elect a new leader (with a higher epoch) and take writes; the killed
    broker comes back and catches up; every acknowledged write is there once,
    in order, on all three brokers; a second failover (killing the new
    leader) loses nothing either."""
    cluster.create_topic("one", 1, 3)
    cluster.create_topic("three", 3, 3)
    targets = [("one", 0)] + [("three", p) for p in range(3)]
    w = Workload(cluster.bootstrap, targets)
    w.start()
    try:
        w.wait_acks(300, timeout=15)
        time.sleep(1)
        old, old_epoch = cluster.leader("one", 0)
        killed_at = time.monotonic()
        cluster.kill9(old)
        survivors = [n for n in NODES if n != old]
        new, new_epoch, leaderless = cluster.wait_new_leader("one", 0, old, survivors)
        elected_at = killed_at + leaderless
        print(f"  killed leader {old} (epoch {old_epoch}); {new} leads (epoch {new_epoch}) after {leaderless:.3f}s without a leader")
        assert new_epoch > old_epoch, f"the new leader's epoch {new_epoch} is not above {old_epoch}"
        w.wait_acks(50, timeout=15, since=elected_at, target=("one", 0))
        time.sleep(max(0.0, 3.0 - (time.monotonic() - killed_at)))
        gap = w.max_gap(("one", 0), killed_at - 1, time.monotonic())
        print(f"  one-0: longest wait between acknowledgements around the kill {gap:.3f}s")
        cluster.start([old])
        restarted_at = time.monotonic()
        changes = cluster.watch_leader("one", 0, NODES, 3.0, via=new)
        print(f"  after restarting {old}: one-0's (leader, epoch) as broker {new} saw it, by time since the restart: {changes}")
        w.wait_acks(20, timeout=15, since=restarted_at, target=("one", 0))
        gap = w.max_gap(("one", 0), restarted_at, time.monotonic())
        print(f"  one-0: longest wait between acknowledgements after the restart {gap:.3f}s")
    finally:
        w.stop()
    print("  " + w.summary())
    assert not w.fatal, f"producer fatal errors: {w.fatal}"
    problems = check_acked(w, "one", 1) + check_acked(w, "three", 3)
    assert_no_problems(problems)
    wait_replicated(cluster, w, NODES)

    # The restarted broker is a working voter again: kill the current leader,
    # and the two left (the restarted one among them) still elect a leader
    # that has every acknowledged write.
    second, _ = cluster.leader("one", 0)
    cluster.kill9(second)
    rest = [n for n in NODES if n != second]
    third, _, leaderless2 = cluster.wait_new_leader("one", 0, second, rest)
    print(f"  second failover: killed {second}, {third} leads after {leaderless2:.3f}s")
    # The partitions of `three` that `second` led elect their own leaders,
    # each after its own election timeout. A client asking meanwhile is told
    # the old leader, and librdkafka, which never reached that broker, keeps
    # sending it requests without refreshing its metadata: wait for them.
    for p in range(3):
        cluster.leader("three", p, among=rest)
    assert_no_problems(check_acked(w, "one", 1) + check_acked(w, "three", 3))


def test_wiped_broker_rejoins_and_refills(cluster):
    """A follower's data folder is lost (kill -9, folder deleted, restart
    empty) while acks=all writes go on: it learns the cluster metadata again
    from the controller quorum, its replica refills from the leader, and it
    ends up holding every acknowledged write, including those written before
    it was wiped. Then the leader is killed, so the wiped broker is one of
    the two that must carry on: nothing acknowledged is missing."""
    cluster.create_topic("wiped", 1, 3)
    w = Workload(cluster.bootstrap, [("wiped", 0)])
    w.start()
    try:
        w.wait_acks(1000, timeout=20)
        leader, _ = cluster.leader("wiped", 0)
        victim = next(n for n in NODES if n != leader)
        cluster.kill9(victim)
        shutil.rmtree(cluster.brokers[victim].data_dir)
        w.wait_acks(300, timeout=15, since=time.monotonic())
        cluster.start([victim])
        restarted_at = time.monotonic()
        w.wait_acks(300, timeout=15, since=restarted_at)
    finally:
        w.stop()
    print(f"  wiped broker {victim} (leader {leader}); " + w.summary())
    assert not w.fatal, f"producer fatal errors: {w.fatal}"
    assert_no_problems(check_acked(w, "wiped", 1))
    wait_replicated(cluster, w, [victim], timeout=30)
    print(f"  broker {victim} held every acknowledged write {time.monotonic() - restarted_at:.1f}s after its restart")
    # The refilled replica is a full member once every group swapped it in
    # (left the joint configuration of old and new incarnation: until then
    # a group needs a majority of the old voters too, and the old
    # incarnation is gone for good). Then, without the leader, it and the
    # third broker elect a leader that serves every acknowledged write.
    new_id = (1 << 32) | victim

    def swapped_in():
        text = cluster.brokers[leader].log_path.read_text(errors="replace")
        joint = len(re.findall(r"membership changed .*outgoing=\[\d", text))
        done = len(re.findall(rf"membership changed .*voters=\[[^\]]*\b{new_id}\b[^\]]*\] outgoing=\[\]", text))
        return joint > 0 and done >= joint

    assert wait_for("every group swapped the new incarnation in", swapped_in, timeout=30)
    cluster.kill9(leader)
    rest = [n for n in NODES if n != leader]
    new, _, leaderless = cluster.wait_new_leader("wiped", 0, leader, rest)
    print(f"  killed leader {leader}: {new} leads after {leaderless:.3f}s")
    assert_no_problems(check_acked(w, "wiped", 1))


def test_isolated_broker_then_healed(cluster):
    """The leader of `iso-0` is cut off from both peers (not killed): the two
    others elect a new leader and keep acknowledging writes; after healing,
    the cut-off broker follows the new leader and holds every acknowledged
    write; nothing acknowledged is lost, duplicated or reordered.

    Two producers: one writing to `iso-0` and the three partitions of
    `iso3` (so it has connections to several brokers), and one writing to
    `iso-0` alone, whose only connection is likely the cut-off leader, and
    which then must learn the new leader through it. Both must get writes
    acknowledged while the cut lasts."""
    cluster.create_topic("iso", 1, 3)
    cluster.create_topic("iso3", 3, 3)
    targets = [("iso", 0)] + [("iso3", p) for p in range(3)]
    w = Workload(cluster.bootstrap, targets)
    single = Workload(cluster.bootstrap, [("iso", 0)], first_value=500_000_000)
    w.start()
    single.start()
    try:
        w.wait_acks(300, timeout=15)
        single.wait_acks(100, timeout=15)
        time.sleep(1)
        old, old_epoch = cluster.leader("iso", 0)
        others = [n for n in NODES if n != old]
        cut_at = time.monotonic()
        cluster.net.isolate(old)
        # A write sent to the cut-off leader right after the cut cannot commit:
        # how, and when, is it answered?
        raw = {}

        def produce_to_cut_off_leader():
            t = time.monotonic()
            try:
                raw["answer"] = produce_raw(cluster.port(old), "iso", 0, b"raw-to-the-cut-off-leader", timeout_ms=10_000)
            except OSError as e:
                raw["answer"] = repr(e)
            raw["after"] = time.monotonic() - t

        raw_thread = threading.Thread(target=produce_to_cut_off_leader, daemon=True)
        raw_thread.start()
        new, new_epoch, leaderless = cluster.wait_new_leader("iso", 0, old, others)
        elected_at = cut_at + leaderless
        print(f"  cut off leader {old} (epoch {old_epoch}); {new} leads (epoch {new_epoch}) after {leaderless:.3f}s without a leader")
        assert new_epoch > old_epoch
        w.wait_acks(100, timeout=15, since=elected_at, target=("iso", 0))
        time.sleep(max(0.0, 5.0 - (time.monotonic() - elected_at)))
        stale = cluster.partition_view(old, "iso", 0)
        print(f"  the cut-off broker {old} says about iso-0: {stale}")
        healed_at = time.monotonic()
        gap = w.max_gap(("iso", 0), cut_at - 1, healed_at)
        single_gap = single.max_gap(("iso", 0), cut_at - 1, healed_at)
        single_during_cut = single.count(since=elected_at)
        print(
            f"  iso-0 under the cut (for {healed_at - cut_at:.1f}s): longest wait between acknowledgements "
            f"{gap:.3f}s for the producer of four partitions, {single_gap:.3f}s for the producer of iso-0 alone "
            f"({single_during_cut} acknowledged after the election)"
        )
        raw_thread.join(15)
        print(f"  acks=all produce (timeout 10 s) sent to the cut-off leader at the cut: answered {raw.get('answer')} "
              f"(error, base offset) after {raw.get('after', float('nan')):.3f}s")
        cluster.net.heal()
        # The cut-off broker rejoins and agrees on the leader.
        leader, epoch = cluster.leader("iso", 0, among=NODES, timeout=20)
        print(f"  healed: all three agree on leader {leader} (epoch {epoch}) after {time.monotonic() - healed_at:.3f}s")
        after_heal = time.monotonic()
        w.wait_acks(50, timeout=15, since=after_heal, target=("iso", 0))
        single.wait_acks(50, timeout=25, since=after_heal)
        time.sleep(2)
    finally:
        w.stop()
        single.stop()
    print("  four partitions: " + w.summary())
    print("  iso-0 alone: " + single.summary())
    assert not w.fatal and not single.fatal, f"producer fatal errors: {w.fatal} {single.fatal}"
    assert_no_problems(check_acked(w, "iso", 1) + check_acked(w, "iso3", 3) + check_acked(single, "iso", 1))
    wait_replicated(cluster, w, NODES)
    wait_replicated(cluster, single, NODES)
    # Checked last, so that everything above is checked whatever happens here.
    assert raw.get("answer", (None,))[0] == NOT_LEADER_OR_FOLLOWER and raw["after"] < leaderless + 3, (
        f"a write pending on the cut-off leader {old} was answered {raw.get('answer')} after "
        f"{raw.get('after', float('nan')):.3f}s; a new leader was elected after {leaderless:.3f}s, and the old one "
        f"should fail what it can no longer commit with NOT_LEADER_OR_FOLLOWER once it steps down"
    )
    assert single_during_cut > 0, (
        f"the producer of iso-0 alone got nothing acknowledged in the {healed_at - elected_at:.1f}s between the "
        f"election of {new} and the heal; what the cut-off broker {old} said about iso-0 then: {stale}"
    )


def test_a_retried_write_is_acknowledged_only_once_committed(cluster):
    """An idempotent producer's batch reaches a leader just cut off from its
    peers, and is sent again (a client's retry) while the first attempt
    waits: the leader finds the second a duplicate of an entry that no
    majority holds. The two others elect a new leader, which writes other
    records at the offsets that entry had; after healing, the old leader
    follows it and its high watermark passes those offsets. Neither attempt
    may be acknowledged, unless the record is in the log at the offset its
    answer gives."""
    cluster.create_topic("dup", 1, 3)
    old, _ = cluster.leader("dup", 0)
    others = [n for n in NODES if n != old]
    pid, epoch = init_producer_id_raw(cluster.port(old))
    assert produce_raw(cluster.port(old), "dup", 0, b"dup-0", producer=(pid, epoch, 0)) == (0, 0)
    cluster.net.isolate(old)
    answers = {}

    def send(attempt):
        try:
            answers[attempt] = produce_raw(
                cluster.port(old), "dup", 0, b"dup-1", producer=(pid, epoch, 1), timeout_ms=20_000
            )
        except OSError as e:
            answers[attempt] = repr(e)

    attempts = [threading.Thread(target=send, args=(a,), daemon=True) for a in ("first", "retry")]
    attempts[0].start()
    time.sleep(0.2)
    attempts[1].start()
    new, _, _ = cluster.wait_new_leader("dup", 0, old, others)
    for i in range(5):
        assert produce_raw(cluster.port(new), "dup", 0, f"other-{i}".encode())[0] == 0
    cluster.net.heal()
    for t in attempts:
        t.join(30)
    cluster.leader("dup", 0, among=NODES)
    log = {o: v for o, v, _ in read_partitions(cluster.bootstrap, "dup", 1)[0]}
    print(f"  answers to the write and its retry: {answers}; the log: {log}")
    assert set(answers) == {"first", "retry"}, answers
    for attempt, answer in answers.items():
        if isinstance(answer, tuple) and answer[0] == 0:
            assert log.get(answer[1]) == b"dup-1", (
                f"the {attempt} attempt was acknowledged at offset {answer[1]}, which holds {log.get(answer[1])}"
            )


def test_all_brokers_restart_at_once(cluster):
    """A known set acknowledged, then all three brokers killed at once under
    load and restarted together: a leader comes back, every acknowledged
    value (before, during and after the outage) is there once and in order,
    and a set produced after the restart is acknowledged in full."""
    cluster.create_topic("all", 1, 3)
    cluster.create_topic("all3", 3, 3)
    targets = [("all", 0)] + [("all3", p) for p in range(3)]
    w = Workload(cluster.bootstrap, targets)
    w.start()
    try:
        w.wait_acks(1000, timeout=20)
        killed_at = time.monotonic()
        cluster.kill9(*NODES)
        time.sleep(1)
        cluster.start(NODES)
        restarted_at = time.monotonic()
        leaders = {}
        for topic, p in targets:
            leaders[(topic, p)] = cluster.leader(topic, p, timeout=30)
        print(
            f"  all killed; restarted after {restarted_at - killed_at:.2f}s; leaders agreed "
            f"{time.monotonic() - restarted_at:.3f}s after the restart: {leaders}"
        )
        w.wait_acks(200, timeout=25, since=restarted_at)
        gap = w.max_gap(("all", 0), killed_at - 1, time.monotonic())
        print(f"  all-0: longest wait between acknowledgements around the outage {gap:.3f}s")
        time.sleep(1)
    finally:
        w.stop()
    print("  " + w.summary())
    assert not w.fatal, f"producer fatal errors: {w.fatal}"
    assert_no_problems(check_acked(w, "all", 1) + check_acked(w, "all3", 3))

    # A fresh producer after the restart: everything acknowledged and read back.
    after = Workload(cluster.bootstrap, targets, first_value=10_000_000)
    after.idempotent = w.idempotent
    after.p = after._producer(w.idempotent)
    for _ in range(2000):
        after._produce_one()
        after.p.poll(0)
    assert after.p.flush(30) == 0, after.summary()
    assert len(after.acks) == 2000, after.summary()
    assert_no_problems(check_acked(after, "all", 1) + check_acked(after, "all3", 3))
    wait_replicated(cluster, w, NODES)
    wait_replicated(cluster, after, NODES)


def test_min_insync_replicas_counts_reachable_replicas(cluster):
    """acks=all to a topic with min.insync.replicas=3 is taken while all
    three replicas are up, refused with NOT_ENOUGH_REPLICAS (nothing
    written) while one is down, and taken again once it is back; with
    min.insync.replicas=2 one broker down changes nothing."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for name, isr in (("isr3", "3"), ("isr2", "2")):
        topic = NewTopic(name, num_partitions=1, replication_factor=3, config={"min.insync.replicas": isr})
        admin.create_topics([topic], request_timeout=15)[name].result(timeout=30)
    leaders = {name: cluster.leader(name, 0)[0] for name in ("isr3", "isr2")}
    for name, leader in leaders.items():
        assert produce_raw(cluster.port(leader), name, 0, b"all up")[0] == 0
    # A broker that leads neither partition goes down.
    victim = next((n for n in NODES if n not in leaders.values()), None)
    if victim is None:
        pytest.skip(f"both partitions are led by different brokers {leaders}; no follower-only broker")
    cluster.kill9(victim)
    # The leader counts a replica out once it has not heard from it for an
    # election timeout: until then writes are still taken.
    deadline = time.monotonic() + 10
    attempt = 0
    while True:
        attempt += 1
        refused = f"refused while one is down #{attempt}".encode()
        err, _ = produce_raw(cluster.port(leaders["isr3"]), "isr3", 0, refused)
        if err == NOT_ENOUGH_REPLICAS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"  broker {victim} down: isr3 answered {err} after {10 - (deadline - time.monotonic()):.2f}s")
    assert err == NOT_ENOUGH_REPLICAS, f"acks=all with a replica down answered {err}"
    assert produce_raw(cluster.port(leaders["isr2"]), "isr2", 0, b"one down")[0] == 0
    cluster.start([victim])
    deadline = time.monotonic() + 15
    while produce_raw(cluster.port(leaders["isr3"]), "isr3", 0, b"all up again")[0] != 0:
        assert time.monotonic() < deadline, "isr3 refused writes after the broker came back"
        time.sleep(0.2)
    # A refused write was not written anywhere.
    for n in NODES:
        folder = cluster.brokers[n].data_dir
        holds = any(
            refused in f.read_bytes()
            for f in folder.rglob("*")
            if f.is_file() and "isr3" in str(f) and not f.name.endswith((".index", ".timeindex"))
        )
        assert not holds, f"broker {n} stored a write refused with NOT_ENOUGH_REPLICAS"


def test_other_clients_share_the_cluster(cluster):
    """kafka-python (idempotent, acks=all by default) produces to a
    replicated topic through any broker; a confluent-kafka consumer group
    reads everything once and commits; a second member of the same group
    finds the committed offsets through the group's coordinator (the leader
    of its replicated __consumer_offsets partition) and reads nothing again."""
    from kafka import KafkaProducer
    from confluent_kafka import Consumer

    cluster.create_topic("mixed", 3, 3)
    p = KafkaProducer(bootstrap_servers=cluster.bootstrap.split(","), acks="all", linger_ms=5)
    assert p.config["enable_idempotence"]
    futures = [p.send("mixed", key=str(i % 7).encode(), value=f"m{i}".encode()) for i in range(3000)]
    p.flush(30)
    p.close()
    assert all(f.succeeded() for f in futures)

    def consume(expect, seconds):
        c = Consumer({
            "bootstrap.servers": cluster.bootstrap, "group.id": "mixed-readers",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })
        c.subscribe(["mixed"])
        got = []
        deadline = time.monotonic() + seconds
        assigned_at = None
        quiet_from = None  # when the expected count was reached
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
            if assigned_at is None and c.assignment():
                assigned_at = time.monotonic()
            if assigned_at is not None and quiet_from is None and len(got) >= expect:
                quiet_from = time.monotonic()
            if quiet_from is not None and time.monotonic() > quiet_from + 3:
                break  # everything expected came, and nothing more for 3 s
        assert assigned_at is not None, "the consumer never got partitions"
        if got:
            c.commit(asynchronous=False)
        c.close()
        return got

    first = consume(3000, 40)
    assert sorted(first) == sorted(f"m{i}".encode() for i in range(3000))
    assert consume(0, 15) == [], "a committed group read the topic again"


def test_group_coordinator_moves_with_its_partition_leader(cluster):
    """A consumer group commits offsets; the broker coordinating it (the
    leader of the group's __consumer_offsets partition) is killed with -9;
    the group's partition gets a new leader, which becomes its coordinator
    with the committed offsets intact: a new member resumes exactly there,
    and the whole topic is read once across both members."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    cluster.create_topic("orders", 3, 3)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(3000):
        p.produce("orders", key=str(i % 11).encode(), value=f"o{i}".encode())
    assert p.flush(30) == 0

    def member():
        return Consumer({
            "bootstrap.servers": cluster.bootstrap, "group.id": "billing",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })

    first = member()
    first.subscribe(["orders"])
    seen = []
    deadline = time.monotonic() + 40
    while len(seen) < 1500 and time.monotonic() < deadline:
        m = first.poll(0.5)
        if m is not None and not m.error():
            seen.append(m.value())
    assert len(seen) >= 1500, f"the first member read {len(seen)}"
    first.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in first.committed([TopicPartition("orders", i) for i in range(3)], timeout=10)}
    first.close()

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    group = admin.describe_consumer_groups(["billing"], request_timeout=10)["billing"].result(timeout=15)
    coordinator = group.coordinator.id
    cluster.kill9(coordinator)
    print(f"  killed the coordinator {coordinator}; committed {committed}")

    second = member()
    # The committed offsets, as the new coordinator has them.
    deadline = time.monotonic() + 30
    while True:
        try:
            now = {tp.partition: tp.offset for tp in second.committed([TopicPartition("orders", i) for i in range(3)], timeout=5)}
            if now == committed:
                break
        except KafkaException as e:
            now = e.args[0].name()
        assert time.monotonic() < deadline, f"committed offsets after the failover: {now}, before: {committed}"
        time.sleep(0.5)
    second.subscribe(["orders"])
    rest = []
    deadline = time.monotonic() + 40
    quiet_from = None
    while time.monotonic() < deadline:
        m = second.poll(0.5)
        if m is not None and not m.error():
            rest.append(m.value())
        if quiet_from is None and len(rest) >= 3000 - len(seen):
            quiet_from = time.monotonic()
        if quiet_from is not None and time.monotonic() > quiet_from + 2:
            break
    second.close()
    # Everything the first member read was committed (its positions), so the
    # second must read exactly the rest: offsets count the Raft control
    # batches too, so records are compared, not offset sums.
    print(f"  first member read {len(seen)}, second {len(rest)}")
    assert sorted(seen + rest) == sorted(f"o{i}".encode() for i in range(3000)), (
        "the new member did not resume at the committed offsets "
        f"({len(seen)} + {len(rest)} records, {len(set(seen) & set(rest))} read twice)"
    )


def test_a_replica_that_could_not_open_is_opened_once_it_can(cluster):
    """A broker that cannot open one replica of a new topic (here a file
    sits where the partition's folder goes) leaves none of that attempt's
    replicas running, says so, tries again every second, and once the way
    is clear holds the topic and receives its records like the others."""
    node = 3
    blocker = cluster.brokers[node].data_dir / "stuck-1"
    blocker.write_text("in the way")
    admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
    admin.create_topics([NewTopic("stuck", 2, 3)])["stuck"].result(30)
    log = cluster.brokers[node].log_path
    deadline = time.time() + 30
    while log.read_text(errors="replace").count("could not open the topic's replicas") < 2:
        assert time.time() < deadline, "no failed (and retried) open in the log"
        time.sleep(0.2)
    blocker.unlink()
    for p in range(2):
        cluster.leader("stuck", p, timeout=30)
    marker = b"written-after-the-way-cleared"
    for p in range(2):
        # Leadership may still move to the preferred replica meanwhile.
        deadline = time.time() + 30
        while (code := produce_raw(cluster.port(cluster.leader("stuck", p)[0]), "stuck", p, marker)[0]) != 0:
            assert code == NOT_LEADER_OR_FOLLOWER and time.time() < deadline, f"produce: error {code}"
            time.sleep(0.2)
    deadline = time.time() + 30
    while True:
        held = {
            f.parent.name
            for f in cluster.brokers[node].data_dir.rglob("*.log")
            if f.parent.name.startswith("stuck-") and marker in f.read_bytes()
        }
        if held == {"stuck-0", "stuck-1"}:
            break
        assert time.time() < deadline, f"node {node} holds the record only in {held}"
        time.sleep(0.2)
