"""Transactions (KIP-98, KIP-447; transaction version 1: the clients send
AddPartitionsToTxn and AddOffsetsToTxn themselves) with real clients, each
test on a broker of its own:

- librdkafka (confluent-kafka): a committed, an aborted and another
  committed transaction over three partitions: read_committed reads exactly
  the committed records, read_uncommitted all of them; every transaction
  marker takes one offset; the last stable offset (ListOffsets
  read_committed) reaches the high watermark and a read_committed reader
  ends there;
- librdkafka consume-transform-produce in a consumer group
  (send_offsets_to_transaction with the consumer's group metadata), one batch
  aborted on purpose and re-read from the committed offsets: every input
  record is in the output exactly once, and the group's committed offsets are
  the input's end offsets;
- zombie fencing: a second producer with the same transactional.id fences
  the first, whose open transaction is aborted, never read_committed;
- a transaction left open past transaction.timeout.ms is aborted by the
  broker (its records never read_committed, readers go past them) and the
  producer learns it on commit;
- transaction.timeout.ms above transaction.max.timeout.ms:
  INVALID_TRANSACTION_TIMEOUT from init_transactions;
- an open transaction survives a clean restart and is committed after it; a
  transaction left open by a producer killed (-9) while the broker is
  stopped (SIGTERM) or killed (-9) is aborted after the restart once its
  timeout has passed;
- kafka-python, aiokafka, KafkaJS (tests/js/transactions.js) and the Java
  client (tests/java/src/TxnChecks.java): commit, abort, offsets sent to a
  transaction, read_committed consumers; Java also a consume-transform-produce
  loop and a fenced zombie.

Every wait is bounded: a broker without transactions fails these tests
within seconds, it does not hang them."""

import asyncio
import collections
import json
import select
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from conftest import GROUP_CONFIG, create_topic, running_broker
from java_support import run_java

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
JS = HERE.parent / "js"

# How long a client may take to find the transaction coordinator and get a
# producer id: a broker that cannot serve transactions fails the test then.
INIT_TIMEOUT = 15
# The broker aborts timed-out transactions every half second (Kafka: 10 s).
TXN_CLEANUP = '"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 500\n'


def broker_config(text):
    """The TOML lines the test's `broker` starts with (GROUP_CONFIG when the
    test does not say)."""

    def mark(fn):
        fn.broker_config = text
        return fn

    return mark


@pytest.fixture
def broker(request, tmp_path):
    # Named `broker` so that conftest's report hook prints its log on failure.
    with running_broker(tmp_path, getattr(request.function, "broker_config", GROUP_CONFIG)) as b:
        yield b


class Rec(NamedTuple):
    partition: int
    offset: int
    key: str
    value: str


def describe(err: KafkaError) -> str:
    return (
        f"{err.name()} (code {err.code()}, fatal={err.fatal()}, retriable={err.retriable()}, "
        f"abortable={err.txn_requires_abort()}): {err.str()}"
    )


def txn_producer(bootstrap: str, tid: str, **conf) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": tid,
            "linger.ms": 5,
            "reconnect.backoff.max.ms": 1000,
            **conf,
        }
    )


def produce_values(p: Producer, topic: str, values, partitions: int):
    """Produces each value (key = value) to partition (number in the value) %
    partitions and waits for every acknowledgement."""
    errors = []
    for v in values:
        i = int(v.rsplit("-", 1)[1])
        p.produce(topic, key=v.encode(), value=v.encode(), partition=i % partitions,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(20) == 0, "records still undelivered after 20 s"
    assert not errors, f"delivery errors: {[describe(e) for e in errors[:5]]}"


def close_quietly(p: Producer):
    """Closes a producer that may have a fatal error (close() then cannot
    abort its transaction, and warns or raises)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            p.close()
        except KafkaException:
            pass


def run_txn(p: Producer, topic: str, values, partitions: int = 3, commit: bool = True):
    """One transaction of `values`, every record acknowledged before it is
    committed or aborted (so that aborted records are in the log)."""
    p.begin_transaction()
    produce_values(p, topic, values, partitions)
    if commit:
        p.commit_transaction(20)
    else:
        p.abort_transaction(20)
    return list(values)


def list_ends(admin: AdminClient, topic: str, partitions: int, committed: bool) -> dict:
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    req = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    futs = admin.list_offsets(req, isolation_level=level, request_timeout=10)
    return {tp.partition: f.result(timeout=15).offset for tp, f in futs.items()}


def ends_now(bootstrap: str, topic: str, partitions: int):
    """(last stable offsets, high watermarks) of the topic's partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return list_ends(admin, topic, partitions, committed=True), list_ends(admin, topic, partitions, committed=False)


def wait_stable(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0) -> dict:
    """Waits until no transaction is open on the topic: the last stable offset
    (ListOffsets read_committed) is the high watermark on every partition.
    Transaction markers are written after EndTxn is answered, so a reader
    that starts right after a commit must wait for them. Returns the ends."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + timeout
    while True:
        hw = list_ends(admin, topic, partitions, committed=False)
        lso = list_ends(admin, topic, partitions, committed=True)
        if lso == hw:
            return hw
        if time.time() > deadline:
            del admin  # not kept alive (and reconnecting) by the traceback
            raise AssertionError(
                f"{topic}: a transaction still open after {timeout}s: last stable offsets {lso}, high watermarks {hw}"
            )
        time.sleep(0.1)


def read_partitions(bootstrap: str, topic: str, ends: dict, isolation: str, timeout: float = 30.0):
    """Reads partitions `ends` of `topic` from offset 0 with librdkafka
    (assigned, no group) until each reports the end of the partition at its
    offset in `ends`. Returns the records and where each partition ended."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-tests-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    records, eof = [], {}
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and any(eof.get(p, -1) < end for p, end in ends.items()):
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof[m.partition()] = m.offset()
                        continue
                    raise AssertionError(f"{isolation} consumer: {describe(m.error())}")
                records.append(Rec(m.partition(), m.offset(), (m.key() or b"").decode(), m.value().decode()))
    finally:
        c.close()
    assert all(eof.get(p, -1) == end for p, end in ends.items()), (
        f"{isolation} reader of {topic} ended at {eof}, the partitions end at {ends}; read {len(records)} records"
    )
    return records, eof


def values_of(records):
    return [r.value for r in records]


def exactly(records, expected, what: str):
    """Every expected value read exactly once, nothing else."""
    counts = collections.Counter(values_of(records))
    twice = sorted(v for v, c in counts.items() if c > 1)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    assert not (twice or missing or extra), (
        f"{what}: {len(records)} records for {len(expected)} expected; read twice {twice[:10]}, "
        f"missing {missing[:10]} ({len(missing)}), not expected {extra[:10]} ({len(extra)})"
    )


def bounded(fn, timeout: float, what: str):
    """Runs a blocking client call that takes no timeout of its own in a
    thread; fails the test when it has not returned within `timeout`."""
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{what} did not return within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --- librdkafka -------------------------------------------------------------


def test_confluent_commit_abort_read_committed(broker):
    topic = "txn-basic"
    create_topic(broker.bootstrap, topic, 3)
    p = txn_producer(broker.bootstrap, "txn-basic")
    p.init_transactions(INIT_TIMEOUT)
    committed = run_txn(p, topic, [f"c-{i}" for i in range(30)])
    aborted = run_txn(p, topic, [f"a-{i}" for i in range(30)], commit=False)
    committed += run_txn(p, topic, [f"c-{i}" for i in range(30, 60)])
    p.close()

    ends = wait_stable(broker.bootstrap, topic, 3)
    # Per partition: 10 records and a marker, three times.
    assert ends == {0: 33, 1: 33, 2: 33}, ends
    rc, rc_end = read_partitions(broker.bootstrap, topic, ends, "read_committed")
    exactly(rc, committed, "read_committed")
    ru, _ = read_partitions(broker.bootstrap, topic, ends, "read_uncommitted")
    exactly(ru, committed + aborted, "read_uncommitted")
    for part in range(3):
        first, abort, second = range(0, 10), range(11, 21), range(22, 32)
        assert [r.offset for r in ru if r.partition == part] == [*first, *abort, *second], (
            f"partition {part}: the markers take offsets 10, 21 and 32"
        )
        assert [r.offset for r in rc if r.partition == part] == [*first, *second]
        assert [r.value for r in rc if r.partition == part] == [f"c-{i}" for i in range(60) if i % 3 == part]
    assert rc_end == ends, "a read_committed reader ends at the high watermark"


def test_confluent_consume_transform_produce(broker):
    """The exactly-once loop of a real application: consume a batch, produce
    its transformation and send the consumer's positions to the transaction,
    commit. The third batch is aborted (after its records were acknowledged,
    and with its offsets sent to the transaction) and the consumer rewound
    to the group's committed offsets, as applications do."""
    b = broker
    n, src, dst, group = 2000, "ctp-in", "ctp-out", "ctp-group"
    create_topic(b.bootstrap, src, 3)
    create_topic(b.bootstrap, dst, 3)
    plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(n):
        plain.produce(src, key=f"k{i}", value=f"v{i}", partition=i % 3)
    assert plain.flush(30) == 0
    src_ends = wait_stable(b.bootstrap, src, 3)
    assert sum(src_ends.values()) == n

    consumer = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([src])
    producer = txn_producer(b.bootstrap, "ctp-txn")
    producer.init_transactions(INIT_TIMEOUT)
    batches, consumed, consumed_before_abort, aborted, rewound_to = 0, 0, None, [], None
    done = False
    deadline = time.time() + 60
    try:
        while not done and time.time() < deadline:
            msgs = consumer.consume(num_messages=150, timeout=0.5)
            for m in msgs:
                if m.error():
                    raise AssertionError(f"input consumer: {describe(m.error())}")
            if msgs:
                batches += 1
                consumed += len(msgs)
                producer.begin_transaction()
                for m in msgs:
                    producer.produce(dst, key=m.key(), value=b"out-" + m.value())
                positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 20)
                if batches == 3:
                    assert producer.flush(20) == 0
                    aborted = [b"out-" + m.value() for m in msgs]
                    consumed_before_abort = consumed - len(msgs)
                    producer.abort_transaction(20)
                    committed = consumer.committed(consumer.assignment(), timeout=20)
                    rewound_to = {tp.partition: tp.offset for tp in committed}
                    for tp in committed:
                        consumer.seek(TopicPartition(src, tp.partition, tp.offset if tp.offset >= 0 else 0))
                    continue
                producer.commit_transaction(20)
            assignment = consumer.assignment()
            if len(assignment) == 3:
                done = {tp.partition: tp.offset for tp in consumer.position(assignment)} == src_ends
    finally:
        consumer.close()
        producer.close()
    assert done, f"the loop did not get through the input within 60 s ({batches} batches)"
    assert aborted, "a batch was aborted"
    # At the abort the group's offsets were those of the two committed
    # batches, not those sent to the aborted transaction.
    assert sum(max(o, 0) for o in rewound_to.values()) == consumed_before_abort, rewound_to

    dst_ends = wait_stable(b.bootstrap, dst, 3)
    expected = [f"out-v{i}" for i in range(n)]
    rc, _ = read_partitions(b.bootstrap, dst, dst_ends, "read_committed")
    exactly(rc, expected, "output read_committed")
    ru, _ = read_partitions(b.bootstrap, dst, dst_ends, "read_uncommitted")
    assert len(ru) == n + len(aborted), "read_uncommitted also reads the aborted batch"
    assert collections.Counter(values_of(ru)) - collections.Counter(expected) == collections.Counter(
        v.decode() for v in aborted
    )

    check = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = check.committed([TopicPartition(src, p) for p in range(3)], timeout=20)
    finally:
        check.close()
    assert {tp.partition: tp.offset for tp in got} == src_ends, "the group's offsets are the input's ends"


def test_confluent_zombie_is_fenced(broker):
    topic = "txn-zombie"
    create_topic(broker.bootstrap, topic, 3)
    zombie = txn_producer(broker.bootstrap, "zombie")
    zombie.init_transactions(INIT_TIMEOUT)
    zombie.begin_transaction()
    zombie_values = [f"z1-{i}" for i in range(12)]
    produce_values(zombie, topic, zombie_values, 3)

    # The second producer's InitProducerId bumps the epoch and aborts the
    # zombie's open transaction.
    successor = txn_producer(broker.bootstrap, "zombie")
    successor.init_transactions(INIT_TIMEOUT)

    # The zombie goes on: its next produce gets INVALID_PRODUCER_EPOCH from
    # the partition (its epoch is older than the abort marker's), which
    # librdkafka turns into the fatal _FENCED, and so its commit fails. (On
    # Kafka 4.3: "Producer attempted an operation with an old epoch ...:
    # transactional producer fenced by newer producer instance (_FENCED)".)
    zombie.produce(topic, key=b"z1-late", value=b"z1-late", partition=0)
    with pytest.raises(KafkaException) as commit_failed:
        zombie.commit_transaction(20)
    err = commit_failed.value.args[0]
    print(f"\nzombie commit: {describe(err)}")
    assert err.fatal() and err.code() == KafkaError._FENCED, describe(err)
    # Fatal is final: not even an abort goes through.
    with pytest.raises(KafkaException):
        zombie.abort_transaction(5)
    close_quietly(zombie)

    successor.begin_transaction()
    successor_values = [f"z2-{i}" for i in range(12)]
    produce_values(successor, topic, successor_values, 3)
    successor.commit_transaction(20)
    successor.close()

    ends = wait_stable(broker.bootstrap, topic, 3)
    rc, _ = read_partitions(broker.bootstrap, topic, ends, "read_committed")
    exactly(rc, successor_values, "read_committed")
    ru, _ = read_partitions(broker.bootstrap, topic, ends, "read_uncommitted")
    assert set(zombie_values) <= set(values_of(ru)), "the zombie's acknowledged records are in the log"
    assert "z1-late" not in values_of(rc)


@broker_config(TXN_CLEANUP)
def test_confluent_transaction_timeout_aborts(broker):
    """A transaction open longer than its transaction.timeout.ms (3 s) is
    aborted by the broker; the producer finds out when it commits."""
    topic = "txn-timeout"
    create_topic(broker.bootstrap, topic, 1)
    p = txn_producer(broker.bootstrap, "slowpoke", **{"transaction.timeout.ms": 3000})
    p.init_transactions(INIT_TIMEOUT)
    begun = time.time()
    p.begin_transaction()
    timed_out = [f"t-{i}" for i in range(10)]
    produce_values(p, topic, timed_out, 1)
    # Open: the last stable offset is held at the transaction's first record.
    assert ends_now(broker.bootstrap, topic, 1) == ({0: 0}, {0: 10})
    # The abort marker moves it to the end (after 3 s, before ~3 s + a few
    # cleanup rounds).
    ends = wait_stable(broker.bootstrap, topic, 1, timeout=15)
    aborted_after = time.time() - begun
    assert ends == {0: 11}, "ten records and the abort marker"
    assert 2.9 <= aborted_after <= 8.0, f"aborted {aborted_after:.1f} s after the transaction began"

    # The broker bumped the producer's epoch when it aborted (KIP-360), so
    # the EndTxn of the old epoch is answered PRODUCER_FENCED, which
    # librdkafka makes the fatal _FENCED (as on Kafka 4.3: "Failed to end
    # transaction: Local: This instance has been fenced by a newer
    # instance").
    with pytest.raises(KafkaException) as commit_failed:
        p.commit_transaction(20)
    err = commit_failed.value.args[0]
    print(f"\ncommit after the timeout: {describe(err)}")
    assert err.fatal() and err.code() == KafkaError._FENCED, describe(err)
    close_quietly(p)
    # What an application does then: a new producer with the same
    # transactional.id, which works.
    again = txn_producer(broker.bootstrap, "slowpoke", **{"transaction.timeout.ms": 3000})
    again.init_transactions(INIT_TIMEOUT)
    retried = run_txn(again, topic, ["t-retry-0"], partitions=1)
    again.close()

    other = txn_producer(broker.bootstrap, "punctual")
    other.init_transactions(INIT_TIMEOUT)
    after = run_txn(other, topic, ["after-0"], partitions=1)
    other.close()
    ends = wait_stable(broker.bootstrap, topic, 1)
    rc, rc_end = read_partitions(broker.bootstrap, topic, ends, "read_committed")
    exactly(rc, retried + after, "read_committed")
    assert rc_end == ends
    ru, _ = read_partitions(broker.bootstrap, topic, ends, "read_uncommitted")
    assert values_of(ru)[:10] == timed_out


@broker_config('"transaction.max.timeout.ms" = 10000\n')
def test_confluent_transaction_timeout_above_the_max(broker):
    p = txn_producer(broker.bootstrap, "too-patient", **{"transaction.timeout.ms": 20000})
    with pytest.raises(KafkaException) as refused:
        p.init_transactions(INIT_TIMEOUT)
    err = refused.value.args[0]
    close_quietly(p)
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, describe(err)
    assert err.fatal(), describe(err)
    print(f"\ninit_transactions: {describe(err)}")
    # At the max it is fine.
    create_topic(broker.bootstrap, "txn-max", 1)
    q = txn_producer(broker.bootstrap, "patient-enough", **{"transaction.timeout.ms": 10000})
    q.init_transactions(INIT_TIMEOUT)
    run_txn(q, "txn-max", ["m-0"], partitions=1)
    q.close()


def test_confluent_open_transaction_survives_clean_restart(broker):
    topic = "txn-restart"
    create_topic(broker.bootstrap, topic, 3)
    p = txn_producer(broker.bootstrap, "restart")
    p.init_transactions(INIT_TIMEOUT)
    first = run_txn(p, topic, [f"r1-{i}" for i in range(15)])
    p.begin_transaction()
    second = [f"r2-{i}" for i in range(15)]
    produce_values(p, topic, second, 3)
    broker.stop()
    broker.start()
    # The same producer commits the transaction it began before the restart.
    p.commit_transaction(30)
    third = run_txn(p, topic, [f"r3-{i}" for i in range(15)])
    p.close()
    ends = wait_stable(broker.bootstrap, topic, 3)
    assert ends == {0: 18, 1: 18, 2: 18}, "5 records and a marker per transaction and partition"
    rc, _ = read_partitions(broker.bootstrap, topic, ends, "read_committed")
    exactly(rc, first + second + third, "read_committed")


@broker_config(TXN_CLEANUP)
@pytest.mark.parametrize("restart", ["stop", "kill9"])
def test_open_transaction_of_a_dead_producer_aborted_after_restart(broker, restart):
    """The producer is killed (-9) with a transaction open and acknowledged,
    and the broker is stopped (SIGTERM) or killed (-9) with it; after the
    restart the broker aborts the transaction once its timeout (3 s) has
    passed: its records are in the log, never read_committed, and the
    committed transaction before it is. (Apache Kafka 4.3.1 on one KRaft
    node passes the SIGTERM case; after kill -9 its coordinator completes
    the abort, but no marker reaches the partitions and the last stable
    offset stays put: a hanging transaction, which Sluice should not copy.)"""
    topic = "txn-crash"
    create_topic(broker.bootstrap, topic, 3)
    victim = subprocess.Popen(
        [sys.executable, str(HERE / "txn_victim.py"), broker.bootstrap, topic, "3", "victim", "3000", "k", "15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([victim.stdout], [], [], INIT_TIMEOUT + 30)
        line = victim.stdout.readline() if ready else ""
        assert line.startswith("{"), f"the producer did not get its transaction open: {line!r}"
        state = json.loads(line)
        assert state.get("open"), state
        getattr(broker, restart)()
    finally:
        victim.kill()
        victim.wait(10)
    broker.start()
    ends = wait_stable(broker.bootstrap, topic, 3, timeout=30)
    assert ends == {0: 12, 1: 12, 2: 12}, "per partition: 5 committed, a marker, 5 aborted, a marker"
    rc, _ = read_partitions(broker.bootstrap, topic, ends, "read_committed")
    exactly(rc, state["committed"], "read_committed")
    ru, _ = read_partitions(broker.bootstrap, topic, ends, "read_uncommitted")
    exactly(ru, state["committed"] + state["pending"], "read_uncommitted (acknowledged records survive kill -9)")


# --- kafka-python -----------------------------------------------------------


def kp_read(bootstrap, topic, ends, isolation, timeout=30.0):
    """Reads partitions `ends` of `topic` from the beginning with
    kafka-python until its position reaches each end."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                      request_timeout_ms=10000)
    tps = [KTP(topic, p) for p in ends]
    records = []
    try:
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.time() + timeout
        positions = {}
        while time.time() < deadline:
            positions = {tp.partition: c.position(tp, timeout_ms=10000) for tp in tps}
            if all(positions[p] >= end for p, end in ends.items()):
                break
            for recs in c.poll(timeout_ms=500).values():
                records += [Rec(r.partition, r.offset, (r.key or b"").decode(), r.value.decode()) for r in recs]
    finally:
        c.close()
    assert positions == ends, f"kafka-python {isolation} reader stopped at {positions}, the ends are {ends}"
    return records


def test_kafka_python_transactions(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    b = broker
    topic, src, dst, group = "kp-txn", "kp-in", "kp-out", "kp-group"
    for t in (topic, src, dst):
        create_topic(b.bootstrap, t, 3)
    p = KafkaProducer(bootstrap_servers=b.bootstrap, transactional_id="kp-txn", max_block_ms=INIT_TIMEOUT * 1000,
                      request_timeout_ms=10000, linger_ms=5)
    try:
        bounded(p.init_transactions, INIT_TIMEOUT + 5, "init_transactions")

        def txn(values, commit):
            p.begin_transaction()
            futures = [p.send(topic, key=v.encode(), value=v.encode(), partition=int(v.split("-")[1]) % 3)
                       for v in values]
            p.flush(timeout=20)
            for f in futures:
                f.get(timeout=1)
            bounded(p.commit_transaction if commit else p.abort_transaction, 20, "commit/abort")
            return values

        committed = txn([f"c-{i}" for i in range(30)], True)
        aborted = txn([f"a-{i}" for i in range(30)], False)
        committed += txn([f"c-{i}" for i in range(30, 60)], True)

        # Consume-transform-produce with the offsets in the transaction.
        plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        for i in range(300):
            plain.produce(src, value=f"v{i}", partition=i % 3)
        assert plain.flush(20) == 0
        src_ends = wait_stable(b.bootstrap, src, 3)
        c = KafkaConsumer(src, bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False,
                          isolation_level="read_committed", auto_offset_reset="earliest",
                          session_timeout_ms=6000, heartbeat_interval_ms=500, request_timeout_ms=10000)
        try:
            deadline = time.time() + 40
            positions = {}
            while positions != src_ends and time.time() < deadline:
                batch = c.poll(timeout_ms=500, max_records=100)
                if batch:
                    p.begin_transaction()
                    for recs in batch.values():
                        for r in recs:
                            p.send(dst, value=b"out-" + r.value)
                    offsets = {tp: OffsetAndMetadata(c.position(tp), "", -1) for tp in c.assignment()}
                    bounded(lambda: p.send_offsets_to_transaction(offsets, c.group_metadata()), 20,
                            "send_offsets_to_transaction")
                    bounded(p.commit_transaction, 20, "commit_transaction")
                if len(c.assignment()) == 3:
                    positions = {tp.partition: c.position(tp) for tp in c.assignment()}
        finally:
            c.close()
        assert positions == src_ends, f"the loop stopped at {positions}, the input ends at {src_ends}"
    finally:
        p.close(timeout=10)

    ends = wait_stable(b.bootstrap, topic, 3)
    assert ends == {0: 33, 1: 33, 2: 33}
    exactly(kp_read(b.bootstrap, topic, ends, "read_committed"), committed, "kafka-python read_committed")
    exactly(kp_read(b.bootstrap, topic, ends, "read_uncommitted"), committed + aborted,
            "kafka-python read_uncommitted")
    dst_ends = wait_stable(b.bootstrap, dst, 3)
    exactly(kp_read(b.bootstrap, dst, dst_ends, "read_committed"), [f"out-v{i}" for i in range(300)],
            "kafka-python output")
    check = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        got = {p: check.committed(KTP(src, p)) for p in range(3)}
    finally:
        check.close()
    assert got == src_ends, "the group's offsets are the input's ends"


# --- aiokafka ---------------------------------------------------------------


async def aiokafka_transactions(bootstrap, topic, src, group):
    from aiokafka import AIOKafkaProducer
    from aiokafka import TopicPartition as ATP

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio-txn", request_timeout_ms=10000,
                         linger_ms=5)
    await asyncio.wait_for(p.start(), INIT_TIMEOUT + 5)
    try:

        async def sends(values):
            futures = [await p.send(topic, key=v.encode(), value=v.encode(), partition=int(v.split("-")[1]) % 3)
                       for v in values]
            await asyncio.gather(*futures)
            return values

        committed = []
        async with p.transaction():
            committed += await sends([f"c-{i}" for i in range(30)])
            await p.send_offsets_to_transaction({ATP(src, 0): 7, ATP(src, 1): 11}, group)
        await p.begin_transaction()
        aborted = await sends([f"a-{i}" for i in range(30)])
        await p.abort_transaction()
        with pytest.raises(RuntimeError):
            async with p.transaction():  # an exception in the block aborts the transaction
                await sends([f"x-{i}" for i in range(3)])
                raise RuntimeError("abort")
        async with p.transaction():
            committed += await sends([f"c-{i}" for i in range(30, 60)])
    finally:
        await asyncio.wait_for(p.stop(), 20)
    return committed, aborted + [f"x-{i}" for i in range(3)]


async def aiokafka_read(bootstrap, topic, ends, isolation, timeout=30.0):
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False)
    await c.start()
    records, positions = [], {}
    try:
        tps = [ATP(topic, p) for p in ends]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.time() + timeout
        while time.time() < deadline:
            positions = {tp.partition: await c.position(tp) for tp in tps}
            if all(positions[p] >= end for p, end in ends.items()):
                break
            for recs in (await c.getmany(timeout_ms=500)).values():
                records += [Rec(r.partition, r.offset, (r.key or b"").decode(), r.value.decode()) for r in recs]
    finally:
        await c.stop()
    assert positions == ends, f"aiokafka {isolation} reader stopped at {positions}, the ends are {ends}"
    return records


async def aiokafka_committed(bootstrap, src, group):
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {p: await c.committed(ATP(src, p)) for p in range(3)}
    finally:
        await c.stop()


def test_aiokafka_transactions(broker):
    b = broker
    topic, src, group = "aio-txn", "aio-in", "aio-group"
    create_topic(b.bootstrap, topic, 3)
    create_topic(b.bootstrap, src, 3)
    committed, aborted = asyncio.run(asyncio.wait_for(aiokafka_transactions(b.bootstrap, topic, src, group), 90))
    ends = wait_stable(b.bootstrap, topic, 3)
    # Per partition: 10 committed, 10 aborted, 1 aborted, 10 committed; four markers.
    assert ends == {0: 35, 1: 35, 2: 35}, ends
    rc = asyncio.run(asyncio.wait_for(aiokafka_read(b.bootstrap, topic, ends, "read_committed"), 60))
    exactly(rc, committed, "aiokafka read_committed")
    ru = asyncio.run(asyncio.wait_for(aiokafka_read(b.bootstrap, topic, ends, "read_uncommitted"), 60))
    exactly(ru, committed + aborted, "aiokafka read_uncommitted")
    got = asyncio.run(asyncio.wait_for(aiokafka_committed(b.bootstrap, src, group), 60))
    assert got == {0: 7, 1: 11, 2: None}, "the offsets sent to the committed transaction"


# --- KafkaJS ----------------------------------------------------------------


def test_kafkajs_transactions(broker):
    node = shutil.which("node")
    assert node, "node is required for the KafkaJS tests"
    b = broker
    topic, src, group = "js-txn", "js-in", "js-txn-group"
    create_topic(b.bootstrap, src, 3)
    try:
        out = subprocess.run(
            [node, str(JS / "transactions.js"), b.bootstrap, topic, src, group],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"transactions.js did not end within 120 s: {e.stderr}")
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    report = f"exit {out.returncode}\nstdout: {out.stdout[-3000:]}\nstderr: {out.stderr[-3000:]}"
    assert out.returncode == 0, report
    result = lines[-1]
    committed = [f"c-{i}" for i in range(60)]
    aborted = [f"a-{i}" for i in range(30)]
    assert collections.Counter(result["read"]) == collections.Counter(committed), report
    assert result["offsets"] == {"0": "42", "1": "17", "2": "-1"}, report

    ends = wait_stable(b.bootstrap, topic, 3)
    assert ends == {0: 33, 1: 33, 2: 33}, ends
    rc, _ = read_partitions(b.bootstrap, topic, ends, "read_committed")
    exactly(rc, committed, "read_committed (librdkafka)")
    ru, _ = read_partitions(b.bootstrap, topic, ends, "read_uncommitted")
    exactly(ru, committed + aborted, "read_uncommitted (librdkafka)")


# --- Java -------------------------------------------------------------------


def java_records(run, step):
    return [Rec(r["partition"], r["offset"], r["key"], r["value"]) for r in run.step(step)["records"]]


def test_java_commit_abort_read_committed(broker):
    topic = "java-txn"
    create_topic(broker.bootstrap, topic, 3)
    run = run_java("TxnChecks", "basic", broker.bootstrap, topic, timeout=120)
    assert run.returncode == 0, run.report()
    committed = [f"c-{i}" for i in range(60)]
    aborted = [f"a-{i}" for i in range(30)]
    assert run.step("ends")["ends"] == {"0": 33, "1": 33, "2": 33}, run.report()
    rc = java_records(run, "read_committed")
    exactly(rc, committed, "Java read_committed")
    assert run.step("read_committed")["positions"] == {"0": 33, "1": 33, "2": 33}
    exactly(java_records(run, "read_uncommitted"), committed + aborted, "Java read_uncommitted")
    for part in range(3):
        assert [r.offset for r in rc if r.partition == part] == [*range(0, 10), *range(22, 32)]


def test_java_consume_transform_produce(broker):
    b = broker
    n, src, dst, group = 2000, "java-ctp-in", "java-ctp-out", "java-ctp-group"
    create_topic(b.bootstrap, src, 3)
    create_topic(b.bootstrap, dst, 3)
    plain = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(n):
        plain.produce(src, key=f"k{i}", value=f"v{i}", partition=i % 3)
    assert plain.flush(30) == 0
    src_ends = wait_stable(b.bootstrap, src, 3)

    run = run_java("TxnChecks", "ctp", b.bootstrap, src, dst, group, timeout=150)
    assert run.returncode == 0, run.report()
    loop = run.step("loop")
    assert loop["done"], run.report()
    assert loop["aborted"] > 0, run.report()
    # At the abort the group's offsets were those of the committed batches.
    assert sum(loop["rewound_to"].values()) == loop["consumed_before_abort"], run.report()
    exactly(java_records(run, "read_committed"), [f"out-v{i}" for i in range(n)], "Java output read_committed")
    assert run.step("read_uncommitted")["read"] == n + loop["aborted"], run.report()
    assert run.step("group_offsets")["offsets"] == {str(p): o for p, o in src_ends.items()}, run.report()
    # The same seen by librdkafka.
    dst_ends = wait_stable(b.bootstrap, dst, 3)
    rc, _ = read_partitions(b.bootstrap, dst, dst_ends, "read_committed")
    exactly(rc, [f"out-v{i}" for i in range(n)], "output read_committed (librdkafka)")


def test_java_zombie_is_fenced(broker):
    topic = "java-zombie"
    create_topic(broker.bootstrap, topic, 3)
    run = run_java("TxnChecks", "zombie", broker.bootstrap, topic, timeout=120)
    assert run.returncode == 0, run.report()
    fenced = run.step("zombie_commit")
    assert not fenced["ok"], run.report()
    assert fenced["error"] in (
        "org.apache.kafka.common.errors.ProducerFencedException",
        "org.apache.kafka.common.errors.InvalidProducerEpochException",
    ), run.report()
    print(f"\nzombie commit: {fenced}")
    exactly(java_records(run, "read_committed"), [f"z2-{i}" for i in range(12)], "Java read_committed")
    assert {f"z1-{i}" for i in range(12)} <= set(values_of(java_records(run, "read_uncommitted")))
