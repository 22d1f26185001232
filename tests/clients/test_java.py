"""The official Java client (org.apache.kafka:kafka-clients 4.3.1): the
programs in tests/java/src, run by java_support.run_java, print one JSON
object a line, asserted on here.

- a producer with the defaults (idempotent, acks=all) and a classic group
  consumer: every record read back;
- KIP-848 consumers (group.protocol=consumer) joining a group one by one
  while records trickle in: each join makes the members before it revoke
  partitions, and none of them may be fenced (a failed commit, a lost
  assignment), so every record is read exactly once and the committed
  offsets end at the end offsets;
- Admin client: describeTopics by topic id, alterConsumerGroupOffsets of
  unknown topics and partitions, and what CreateTopicsResult tells of a new
  topic (on one broker, and RF 3 in a three-broker cluster);
- produce requests the broker refuses: a batch with a keyless record on a
  compacted topic (KIP-467: the keyless record named, the batch refused
  whole) and a record over max.message.bytes as sent, though it would fit
  once recompressed to the topic's compression.type.

Run with `pytest -s` to see the rebalance timeline of the KIP-848 test."""

import collections
import re
import time

import pytest

from cluster_support import NODES, Cluster
from conftest import create_topic
from java_support import run_java, start_java

pytestmark = pytest.mark.timeout(240)

# What the consumer logs when it is fenced ("transitioned from ... to FENCED",
# FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID), not the "isFenced: false" of every
# broker it prints.
FENCED_LOG = re.compile(r"(?<![A-Za-z])fenced(?![A-Za-z])|UNKNOWN_MEMBER_ID", re.IGNORECASE)


def client_errors(run):
    """The lines of GroupConsume reporting an exception from the client."""
    return [e for e in run.lines if str(e.get("event", "")).endswith("_error")]


def read_once_problems(run, n):
    """What is wrong with the records read, if anything: every record
    "k<i>"/"v<i>" (i < n) must be read exactly once, whoever read it."""
    records = run.events("record")
    counts = collections.Counter(e["value"] for e in records)
    twice = sorted((v for v, c in counts.items() if c > 1), key=lambda v: int(v[1:]))
    missing = sorted(set(f"v{i}" for i in range(n)) - set(counts), key=lambda v: int(v[1:]))
    problems = []
    if twice or missing:
        problems.append(
            f"{len(records)} records read for {n} produced: {len(twice)} read more than once "
            f"(first {twice[:10]}), {len(missing)} never read (first {missing[:10]})"
        )
    mismatched = [e for e in records if e["key"] != "k" + e["value"][1:]]
    if mismatched:
        problems.append(f"key and value do not match: {mismatched[:5]}")
    return problems


def committed_problems(run, n, partitions):
    """What is wrong with the committed offsets, if anything: they must be the
    end offsets of every partition, which add up to n."""
    offsets = {e["partition"]: e for e in run.events("offsets")}
    if sorted(offsets) != list(range(partitions)):
        return [f"offsets of partitions {sorted(offsets)} reported, not of 0..{partitions - 1}"]
    problems = []
    if sum(e["end"] for e in offsets.values()) != n:
        problems.append(f"end offsets add up to {sum(e['end'] for e in offsets.values())}, not {n}: {offsets}")
    behind = {p: (e["committed"], e["end"]) for p, e in offsets.items() if e["committed"] != e["end"]}
    if behind:
        problems.append(f"committed offsets not at the end offsets, {{partition: (committed, end)}}: {behind}")
    return problems


def test_java_producer_consumer_basic(group_broker):
    b = group_broker
    topic, n = "java-basic", 1000
    create_topic(b.bootstrap, topic, 3)

    prod = run_java("Produce", b.bootstrap, topic, n, timeout=90)
    assert prod.returncode == 0, prod.report()
    [produced] = prod.events("produced")
    assert produced["acked"] == n and produced["failed"] == 0, produced

    run = run_java("GroupConsume", b.bootstrap, topic, "java-basic-group", "classic", 1, 0, n, 60_000, timeout=120)
    assert not client_errors(run), run.report()
    assert run.returncode == 0, run.report()
    problems = read_once_problems(run, n) + committed_problems(run, n, 3)
    assert not problems, "\n".join(problems)
    # Closing the consumer closes its fetch session (epoch -1): answered as
    # Kafka does, the client finds nothing wrong with the answer.
    session_complaints = [l for l in run.stderr.splitlines() if re.search(r"invalid .*fetch response|extraIds|FETCH_SESSION", l)]
    assert not session_complaints, "\n".join(session_complaints[:10])


def test_kip848_consumers_join_one_by_one_nobody_fenced(group_broker, tmp_path):
    b = group_broker
    topic, group, n, partitions = "java-kip848", "java-kip848-group", 3000, 6
    consumers, stagger_ms, rate = 3, 3000, 300  # the producer needs ~10 s: all three join meanwhile
    create_topic(b.bootstrap, topic, partitions)

    producer = start_java("Produce", b.bootstrap, topic, n, rate, log_path=tmp_path / "producer.log")
    try:
        run = run_java(
            "GroupConsume", b.bootstrap, topic, group, "consumer", consumers, stagger_ms, n, 60_000, timeout=150
        )
    finally:
        prod = producer.wait(timeout=90)

    print("\nrebalance timeline (ms, consumer, event, partitions, records seen by the group):")
    for e in run.lines:
        if e.get("event") in ("start", "assigned", "revoked", "lost", "closed") or "error" in e:
            print(f"  {e.get('t', ''):>6} c{e.get('consumer')} {e['event']:<13} {e.get('partitions', '')} "
                  f"{e.get('seen', '')} {e.get('error', '')} {e.get('message', '') or ''}")
    per_consumer = collections.Counter(e["consumer"] for e in run.events("record"))
    print(f"  records per consumer: {dict(sorted(per_consumer.items()))}")

    assert prod.returncode == 0, prod.report()
    [produced] = prod.events("produced")
    assert produced["acked"] == n, produced

    # Every problem found, reported together.
    problems = []
    if client_errors(run):
        problems.append("a consumer got an exception:\n" + "\n".join(map(str, client_errors(run))))
    if run.events("lost"):
        problems.append("a consumer lost its partitions (fenced): " + str(run.events("lost")))
    session_complaints = [l for l in run.stderr.splitlines() if re.search(r"invalid .*fetch response|extraIds|FETCH_SESSION", l)]
    if session_complaints:
        problems.append("the client found fetch responses invalid:\n" + "\n".join(session_complaints[:10]))
    fenced_log = [line for line in run.stderr.splitlines() if FENCED_LOG.search(line)]
    if fenced_log:
        problems.append("the client logged fencing:\n" + "\n".join(fenced_log[:20]))
    if len(run.events("start")) != consumers:
        problems.append(f"{len(run.events('start'))} of {consumers} consumers started before the end")
    if not [e for e in run.events("revoked") if e["partitions"] and e["seen"] < n]:
        problems.append("no consumer revoked partitions while records were coming: nothing was tested")
    problems += read_once_problems(run, n) + committed_problems(run, n, partitions)
    if run.events("done") and run.events("done")[0]["timed_out"]:
        problems.append("the group did not see every record within 60 s")
    assert not problems, "\n".join(problems) + "\n\n" + run.report()
    assert run.returncode == 0, run.report()


def outcomes(run, *steps):
    """{step: "ok" or the exception class's short name} of AdminChecks steps."""
    return {name: "ok" if run.step(name)["ok"] else run.step(name)["error"].rsplit(".", 1)[-1] for name in steps}


def test_describe_topics_by_id(broker):
    run = run_java("AdminChecks", "describe-by-id", broker.bootstrap, "java-by-id", timeout=90)
    assert run.returncode == 0, run.report()
    got = outcomes(run, "describe_by_name", "describe_by_id", "describe_unknown_id")
    assert got == {
        "describe_by_name": "ok",
        "describe_by_id": "ok",
        "describe_unknown_id": "UnknownTopicIdException",
    }, run.report()
    by_name = run.step("describe_by_name")
    assert by_name["partitions"] == 3
    assert by_name["topic_id"] not in ("null", "AAAAAAAAAAAAAAAAAAAAAA"), f"no topic id: {by_name}"
    by_id = run.step("describe_by_id")
    assert (by_id["name"], by_id["topic_id"], by_id["partitions"]) == ("java-by-id", by_name["topic_id"], 3), by_id


def test_offset_commit_unknown_topic(broker):
    run = run_java("AdminChecks", "offsets-unknown-topic", broker.bootstrap, "java-offsets", "g", timeout=90)
    assert run.returncode == 0, run.report()
    got = outcomes(run, "commit_unknown_topic", "commit_existing_partition", "commit_unknown_partition")
    listed = run.step("list_offsets")
    assert got == {
        "commit_unknown_topic": "UnknownTopicOrPartitionException",
        "commit_existing_partition": "ok",
        "commit_unknown_partition": "UnknownTopicOrPartitionException",
    }, run.report()
    assert listed["ok"] and listed["offsets"] == {"java-offsets-0": 5}, listed


def check_created(run, partitions, rf):
    assert run.returncode == 0, run.report()
    assert run.step("create")["ok"], run.report()
    assert run.step("num_partitions") == {"step": "num_partitions", "ok": True, "value": partitions}, run.report()
    assert run.step("replication_factor") == {"step": "replication_factor", "ok": True, "value": rf}, run.report()
    config = run.step("config")
    assert config["ok"], run.report()
    assert config["entries"].get("cleanup.policy", {}).get("value") == "compact", config


def test_create_topics_response(broker):
    run = run_java(
        "AdminChecks", "create-topic", broker.bootstrap, "java-created", 4, 1, "cleanup.policy=compact", timeout=90
    )
    check_created(run, 4, 1)
    topic_id = run.step("topic_id")
    assert topic_id["ok"] and topic_id["value"] not in ("null", "AAAAAAAAAAAAAAAAAAAAAA"), topic_id


def test_invalid_records_are_named_per_record(broker):
    topic = "java-compact-keyless"
    create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    run = run_java("ProduceChecks", "invalid-records", broker.bootstrap, topic, timeout=90)
    assert run.returncode == 0, run.report()

    records = run.step("mixed_batch")["records"]
    assert [r["index"] for r in records] == [0, 1, 2], run.report()
    keyed0, keyless, keyed2 = records
    # The record without a key is named, with the exception of the
    # partition's error code (INVALID_RECORD) and the broker's message for it.
    assert not keyless["ok"], run.report()
    assert keyless["error"] == "org.apache.kafka.common.InvalidRecordException", keyless
    assert "Compacted topic cannot accept message without key" in keyless["message"], keyless
    # The others fail too (the batch is refused whole), but the client tells
    # them apart: they were only in a batch with an invalid record.
    for r in (keyed0, keyed2):
        assert not r["ok"], f"a keyed record of the refused batch was written: {r}\n{run.report()}"
        assert "Compacted topic cannot accept message without key" not in (r["message"] or ""), r
        assert "part of a batch" in (r["message"] or ""), r
    after = run.step("after_mixed_batch")
    assert (after["end_offset"], after["read"]) == (0, 0), f"part of the refused batch was written: {after}"

    # A batch of keyed records only is taken.
    keyed = run.step("keyed_batch")["records"]
    assert [(r["ok"], r.get("offset")) for r in keyed] == [(True, 0), (True, 1), (True, 2)], run.report()
    after = run.step("after_keyed_batch")
    assert (after["end_offset"], after["read"]) == (3, 3), after
    assert [r["key"] for r in after["records"]] == ["k3", "k4", "k5"], after


def test_max_message_bytes_checked_before_recompression(broker):
    topic = "java-too-large"
    create_topic(broker.bootstrap, topic, 1, {"compression.type": "lz4", "max.message.bytes": "1000000"})
    run = run_java("ProduceChecks", "too-large", broker.bootstrap, topic, timeout=90)
    assert run.returncode == 0, run.report()

    # 1,200,000 bytes as sent (uncompressed) are over max.message.bytes, even
    # though lz4 would shrink them to a few kilobytes.
    [large] = run.step("large_record")["records"]
    assert not large["ok"], f"a record over max.message.bytes was taken: {large}"
    assert large["error"] == "org.apache.kafka.common.errors.RecordTooLargeException", large
    after = run.step("after_large_record")
    assert (after["end_offset"], after["read"]) == (0, 0), after

    [smaller] = run.step("smaller_record")["records"]
    assert (smaller["ok"], smaller.get("offset")) == (True, 0), run.report()
    after = run.step("after_smaller_record")
    assert (after["end_offset"], after["read"]) == (1, 1), after
    assert after["records"] == [{"offset": 0, "key": "small", "value_length": 500_000}], after


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        c.start()
        c.create_topic("cluster-ready-probe", 1, 3)  # retried until the quorum has formed
        yield c
    finally:
        c.shutdown()


def test_create_topics_response_cluster_rf3(cluster):
    started = time.monotonic()
    run = run_java(
        "AdminChecks", "create-topic", cluster.bootstrap, "java-created-rf3", 2, 3, "cleanup.policy=compact",
        timeout=90,
    )
    print(f"\ncreateTopics RF 3 answered after {time.monotonic() - started:.2f}s")
    check_created(run, 2, 3)


def test_describe_features(broker):
    """describeFeatures shows what Sluice honours: KIP-848 groups
    (group.version 1), transactions with the epoch bumped per transaction
    (transaction.version 2, KIP-890), and the metadata.version its APIs
    match."""
    run = run_java("AdminChecks", "features", broker.bootstrap, timeout=60)
    assert run.returncode == 0, run.report()
    [f] = run.lines
    assert f["ok"], f
    assert f["supported"]["group.version"] == [0, 1], f
    assert f["supported"]["transaction.version"] == [0, 2], f
    assert f["finalized"].get("group.version") == 1, f
    assert f["finalized"].get("metadata.version") == 27, f
    assert f["finalized"].get("transaction.version") == 2, f


def test_describe_log_dirs(broker):
    """describeLogDirs: the broker's one data directory, its disk's sizes, and
    every partition held there with its size on disk."""
    from confluent_kafka import Producer

    create_topic(broker.bootstrap, "java-log-dirs", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce("java-log-dirs", value=b"x" * 1000, partition=0)
    assert p.flush(30) == 0
    run = run_java("AdminChecks", "log-dirs", broker.bootstrap, 1, timeout=60)
    assert run.returncode == 0, run.report()
    [step] = run.lines
    assert step["ok"], step
    [(path, d)] = step["dirs"].items()
    assert path.endswith("data"), path
    assert d["error"] == "null" and d["total"] >= d["usable"] > 0, d
    size0, lag0 = d["replicas"]["java-log-dirs-0"]
    size1, _ = d["replicas"]["java-log-dirs-1"]
    assert size0 >= 100_000 and lag0 == 0 and size1 == 0, d


def batch_headers(partition_dir):
    """(base offset, producer id, producer epoch, base sequence, record
    count, max timestamp) of every batch in a partition's segment files, read
    from the disk: what the producer wrote, independently of the broker's
    answers."""
    import struct

    out = []
    for seg in sorted(partition_dir.glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, pos)
            max_ts, pid, epoch, seq, count = struct.unpack_from(">qqhii", data, pos + 35)
            out.append((base, pid, epoch, seq, count, max_ts))
            pos += 12 + length
    return out


def test_describe_producers(broker):
    """describeProducers after an idempotent producer (the Java default)
    sent 7 records, one batch each: its producer id and epoch as written in
    the log, last sequence 6, the last record's timestamp, no transaction
    (coordinator epoch and txn start offset absent); asked of the leader
    found by metadata and of broker 1 by id. The state, last timestamp
    included, is the same after a restart. (Unknown partitions are answered
    UNKNOWN_TOPIC_OR_PARTITION, which the Java client retries until its
    timeout as with Kafka: tests/roundtrip.rs checks the code.)"""
    topic = "java-producers"
    run = run_java("AdminChecks", "producers", broker.bootstrap, topic, 7, 1, 1, timeout=90)
    assert run.returncode == 0, run.report()
    headers = batch_headers(broker.data_dir / f"{topic}-0")
    assert len(headers) == 7, headers
    pid, epoch = headers[0][1], headers[0][2]
    assert pid >= 0 and [h[3] for h in headers] == list(range(7)), headers
    # Record i at T + i, T a whole second of now (an idempotent producer's
    # state expires producer.id.expiration.ms after its last timestamp).
    base = headers[0][5]
    assert base % 1000 == 0 and abs(base - time.time() * 1000) < 600_000, headers
    assert [h[5] for h in headers] == [base + i for i in range(7)], headers
    expected = [[pid, epoch, 6, base + 6, -1, -1]]
    assert run.step("producers")["producers"] == expected, run.report()
    assert run.step("producers at 1")["producers"] == expected, run.report()

    broker.stop()
    broker.start()
    again = run_java("AdminChecks", "producers", broker.bootstrap, topic, 0, 1, timeout=90)
    assert again.returncode == 0, again.report()
    assert again.step("producers")["producers"] == expected, again.report()


def test_describe_producers_cluster(cluster):
    """describeProducers on a replication-factor-3 partition: the leader
    answers (asked through metadata, and by id), the followers answer
    NOT_LEADER_OR_FOLLOWER (NotLeaderOrFollowerException when asked by id);
    after the leader is killed, the new leader rebuilds the producer state
    from its log and reports the same producer."""
    from confluent_kafka import Producer

    topic = "java-producers-rf3"
    run = run_java("AdminChecks", "producers", cluster.bootstrap, topic, 5, 3, *NODES, timeout=90)
    assert run.returncode == 0, run.report()
    leader, _ = cluster.leader(topic, 0)
    got = run.step("producers")["producers"]
    [[pid, _, last_seq, ts, coordinator_epoch, txn_start]] = got
    assert pid >= 0 and (last_seq, ts % 1000, coordinator_epoch, txn_start) == (4, 4, -1, -1), got
    assert abs(ts - time.time() * 1000) < 600_000, got
    for n in NODES:
        step = run.step(f"producers at {n}")
        if n == leader:
            assert step["ok"] and step["producers"] == got, run.report()
        else:
            assert not step["ok"] and step["error"].endswith("NotLeaderOrFollowerException"), run.report()

    target = next(n for n in NODES if n != leader)
    p = Producer({"bootstrap.servers": cluster.bootstrap})

    def write():
        # Not idempotent (librdkafka's default): no producer state of its own.
        for _ in range(3):
            p.produce(topic, value=b"plain", partition=0)
        assert p.flush(30) == 0

    cluster.make_leader(topic, 0, target, write)
    live = ",".join(cluster.brokers[n].bootstrap for n in cluster.live())
    again = cluster.while_leading(
        topic, 0, target, lambda: run_java("AdminChecks", "producers", live, topic, 0, 3, target, timeout=90)
    )
    assert again is not None, "leadership moved during the check"
    assert again.step(f"producers at {target}")["producers"] == got, again.report()


def test_describe_metadata_quorum(broker):
    """describeMetadataQuorum on one broker: a quorum of one, this broker
    leading at epoch 0 with no metadata log, its client listener as its
    node's endpoint."""
    before = int(time.time() * 1000)
    run = run_java("AdminChecks", "quorum", broker.bootstrap, timeout=60)
    assert run.returncode == 0, run.report()
    q = run.step("quorum")
    assert q["ok"], run.report()
    assert (q["leader"], q["epoch"], q["high_watermark"], q["observers"]) == (1, 0, 0, []), q
    [[node, leo, fetched, caught_up]] = q["voters"]
    assert (node, leo) == (1, 0) and fetched == caught_up and fetched >= before, q
    assert q["nodes"] == {"1": [["PLAINTEXT", "127.0.0.1", broker.port]]}, q


def test_describe_metadata_quorum_cluster(cluster):
    """describeMetadataQuorum asked of each of three brokers (the Java client
    sends it to any broker; those that do not lead the controller quorum
    forward it to the one that does, as Kafka brokers forward it to the
    active controller): every answer is the leader's view — the same leader
    and epoch, the three voters with the log end offsets the leader's Raft
    progress holds and recent fetch and caught-up times, no observers, and
    each voter's controller listener (its controller.quorum.voters
    address)."""
    answers = {}
    for n in NODES:
        before = int(time.time() * 1000)
        run = run_java("AdminChecks", "quorum", cluster.brokers[n].bootstrap, timeout=60)
        assert run.returncode == 0, run.report()
        q = run.step("quorum")
        assert q["ok"], run.report()
        print(f"\nbroker {n} answered: {q}")
        answers[n] = q
        assert q["leader"] in NODES and q["epoch"] >= 1 and q["high_watermark"] > 0, q
        assert q["observers"] == [], q
        assert [v[0] for v in q["voters"]] == list(NODES), q
        for node, leo, fetched, caught_up in q["voters"]:
            # The leader's own log end is at or past the high watermark; a
            # follower's was heard within the last few seconds.
            assert leo > 0 and fetched >= before - 5000 and caught_up >= before - 5000, q
            if node == q["leader"]:
                assert leo >= q["high_watermark"], q
        assert q["nodes"] == {
            str(i): [["CONTROLLER", "127.0.0.1", cluster.proxies[i].port]] for i in NODES
        }, q
    assert len({(q["leader"], q["epoch"]) for q in answers.values()}) == 1, answers

    # A request another broker forwarded (its client id says so) is never
    # forwarded again: a broker that does not lead answers
    # NOT_LEADER_OR_FOLLOWER (6), naming the leader, as a Kafka controller does.
    leader = answers[NODES[0]]["leader"]
    for n in NODES:
        p = _describe_quorum(cluster.port(n), client_id="sluice-forwarded-describe-quorum-9")
        if n == leader:
            assert (p.error_code, p.leader_id, len(p.current_voters)) == (0, leader, 3), p
        else:
            assert (p.error_code, p.leader_id, p.current_voters) == (6, leader, []), p


def _describe_quorum(port, client_id, version=2):
    """DescribeQuorum of __cluster_metadata-0 sent to one broker by
    kafka-python's protocol classes: the partition of the answer."""
    import socket
    import struct

    from kafka.protocol.admin.cluster import DescribeQuorumRequest, DescribeQuorumResponse

    T = DescribeQuorumRequest.TopicData
    req = DescribeQuorumRequest(
        topics=[T(topic_name="__cluster_metadata", partitions=[T.PartitionData(partition_index=0)])]
    )
    req.with_header(correlation_id=5, client_id=client_id)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req.encode(version=version, header=True, framed=True))
        f = s.makefile("rb")
        (size,) = struct.unpack(">i", f.read(4))
        resp = DescribeQuorumResponse.decode(f.read(size), version=version, header=True)
    assert resp.error_code == 0, resp
    [topic] = resp.topics
    [partition] = topic.partitions
    return partition


def test_elect_leaders_on_one_broker(broker):
    """electLeaders(PREFERRED): the one broker already leads every partition
    (ELECTION_NOT_NEEDED); a partition that does not exist is named."""
    create_topic(broker.bootstrap, "java-elect", 2)
    run = run_java("AdminChecks", "elect", broker.bootstrap, "java-elect", 0, 1, 5, timeout=60)
    assert run.returncode == 0, run.report()
    got = {s["step"]: s.get("error", "ok").rsplit(".", 1)[-1] for s in run.lines}
    assert got == {
        "elect java-elect-0": "ElectionNotNeededException",
        "elect java-elect-1": "ElectionNotNeededException",
        "elect java-elect-5": "UnknownTopicOrPartitionException",
    }, run.report()


def test_list_config_resources(broker):
    """listConfigResources: topics, the broker, and groups, including one
    that has a config but no members yet (KIP-1142)."""
    run = run_java("AdminChecks", "list-config-resources", broker.bootstrap, "java-listed", "java-configured-group",
                   timeout=60)
    assert run.returncode == 0, run.report()
    steps = {s["step"]: s for s in run.lines}
    assert steps["all"]["ok"] and steps["groups"]["ok"], run.report()
    everything = steps["all"]["resources"]
    assert "TOPIC:java-listed" in everything, everything
    assert "BROKER:1" in everything, everything
    assert "GROUP:java-configured-group" in everything, everything
    assert steps["groups"]["resources"] == ["GROUP:java-configured-group"], steps["groups"]
