"""One exactly-once consume-transform-produce worker of
test_cluster_transactions.py, run as its own process (the test kills
brokers, never a worker; it only stops the workers still running at the end).

The loop of a real application: a consumer in the group (read_committed,
no auto commit) and a transactional producer; per batch: begin, produce one
output record per input record, send the consumer's positions to the
transaction with the consumer's group metadata, commit. Every
`abort_every`-th transaction is aborted on purpose after its records were
acknowledged and its offsets sent (its records are tagged "abort").
After any abort the consumer is rewound to the group's committed offsets;
after a fatal error (fenced) the producer is made again (init_transactions)
and the consumer rewound; a commit that keeps failing with a retriable error
has an unknown outcome: the producer is made again, whose init_transactions
completes or aborts it at the coordinator, and the consumer rewound. A
transactional call still blocked GRACE s past its own timeout (API_TIMEOUT)
is wedged (see Wedged): the producer is abandoned, never touched again, and
a new one made, which fences it.

Input record: key "<p>-<seq>", value "in-<p>-<seq>", on input partition p.
Output record: key "<p>-<seq>", value "<p>-<seq>|<txn>|<k>/<n>|<tag>" on
output partition (p + seq) % out_partitions, so that every transaction
spans the output partitions (their leaders on different brokers); <txn> is
"w<worker>.<incarnation>.<number>", <k> the record's place in the
transaction of <n> records, <tag> "ok" or "abort" (aborted on purpose).

Prints one JSON object a line on stdout (fields "ev", "w" the worker, "t"
the wall clock): start; init (each producer incarnation); init_failed (then
exits 3: the first init_transactions did not complete in `init_timeout` s);
per transaction one of commit, abort (deliberate or after an error; never
committed) or unknown; error; wedged; rewind; consumer (made again); stale
(a batch that crossed a rebalance, dropped); done (with counts); crash.
Pacing: `pace` s of sleep after each commit, unless the file `fast_file`
exists. Stops when the group's committed offsets reach `need` (per input
partition: after the last input record) or at `deadline` (wall clock).

Usage: python txn_worker.py '<json config>' (see main); TXN_WORKER_DEBUG
and TXN_WORKER_CONSUMER_DEBUG in the environment set the producer's and the
consumer's librdkafka `debug` (e.g. "eos,protocol", "cgrp,protocol"; to
the worker's stderr)."""

import collections
import faulthandler
import json
import os
import signal
import sys
import threading
import time
import warnings

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

CFG = {}
COUNTS = collections.Counter()
ERRORS = collections.Counter()


def say(ev, **fields):
    print(json.dumps({"ev": ev, "w": CFG.get("worker"), "t": round(time.time(), 3), **fields}), flush=True)


def describe(err) -> str:
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError):
        err = err.args[0]
    if isinstance(err, KafkaError):
        return (
            f"{err.name()} (fatal={err.fatal()}, retriable={err.retriable()}, "
            f"abortable={err.txn_requires_abort()}): {err.str()}"
        )
    return repr(err)


def kerr(e):
    """The KafkaError of an exception, or None."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


def error(where, e, **fields):
    k = kerr(e)
    ERRORS[f"{where}:{k.name() if k else type(e).__name__}"] += 1
    say("error", where=where, error=describe(e), **fields)


def bounded(fn, timeout, what):
    """Runs a call that takes no timeout of its own (close) in a thread; gives
    up on it (leaving the thread) after `timeout` s."""
    done = threading.Event()

    def run():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn()
        except Exception as e:  # noqa: BLE001 - only reported
            say("error", where=what, error=describe(e))
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout):
        say("error", where=what, error=f"did not return within {timeout}s")


class Wedged(Exception):
    """A client call that did not return within its own timeout and a grace
    period: librdkafka's send_offsets_to_transaction can wait forever for a
    group coordinator whose broker went away (librdkafka issues #5456: the
    timeout of coordinator requests is never checked, and #5511)."""


def guarded(fn, timeout, what):
    """fn() in a thread; raises Wedged when it has not returned within
    `timeout` s (the thread is left behind, blocked in the client)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Wedged(f"{what} did not return within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


API_TIMEOUT = 10  # s, of each transactional call (flush, send offsets, commit, abort)
GRACE = 5  # s past a call's own timeout before it counts as wedged


class Worker:
    def __init__(self, cfg):
        self.cfg = cfg
        self.w = cfg["worker"]
        self.tid = cfg["transactional_id"]
        self.inc = 0  # producer incarnation
        self.txn_no = 0
        self.producer = None
        self.consumer = None
        self.delivery_errors = []
        self.last_done_check = 0.0
        self.abandoned = []  # wedged producers: never closed nor freed (either would block)

    # -- clients ---------------------------------------------------------

    def make_producer(self, first, abandon=False):
        """A new transactional producer, init_transactions done: True, or
        False when it could not be done before the deadline (for the first,
        within init_timeout). `abandon`: the current one is wedged in a call."""
        if self.producer is not None:
            old = self.producer
            self.producer = None
            if abandon:
                self.abandoned.append(old)
                COUNTS["producers_abandoned"] += 1
            else:
                bounded(old.close, 10, "producer.close")
        self.inc += 1
        conf = {
            "bootstrap.servers": self.cfg["bootstrap"],
            "transactional.id": self.tid,
            "transaction.timeout.ms": self.cfg["txn_timeout_ms"],
            "linger.ms": 5,
            "request.timeout.ms": 5000,
            "socket.connection.setup.timeout.ms": 5000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "topic.metadata.refresh.fast.interval.ms": 100,
            "error_cb": self.on_client_error,
        }
        if os.environ.get("TXN_WORKER_DEBUG"):
            conf["debug"] = os.environ["TXN_WORKER_DEBUG"]  # librdkafka's, e.g. "eos,protocol": to stderr
        started = time.time()
        p = Producer(conf)
        attempts = 0
        while True:
            attempts += 1
            budget = self.cfg["init_timeout"] - (time.time() - started) if first else self.left()
            if budget <= 0:
                if first:
                    say("init_failed", incarnation=self.inc, took=round(time.time() - started, 3), attempts=attempts,
                        error="no time left")
                return False
            try:
                wait = max(min(budget, 30), 1)
                guarded(lambda: p.init_transactions(wait), wait + GRACE, "init_transactions")
                break
            except Wedged as e:
                error("init_transactions", e, incarnation=self.inc, attempt=attempts)
                self.abandoned.append(p)
                COUNTS["producers_abandoned"] += 1
                if first:
                    say("init_failed", incarnation=self.inc, took=round(time.time() - started, 3),
                        attempts=attempts, error=str(e))
                    return False
                self.inc += 1
                p = Producer(conf)
            except KafkaException as e:
                k = kerr(e)
                error("init_transactions", e, incarnation=self.inc, attempt=attempts)
                if first and (time.time() - started >= self.cfg["init_timeout"] - 0.5 or (k and k.fatal())):
                    say("init_failed", incarnation=self.inc, took=round(time.time() - started, 3),
                        attempts=attempts, error=describe(e))
                    bounded(p.close, 5, "producer.close")
                    return False
                if k is not None and k.fatal():
                    bounded(p.close, 5, "producer.close")
                    self.inc += 1
                    p = Producer(conf)
                time.sleep(0.2)
        self.producer = p
        say("init", incarnation=self.inc, took=round(time.time() - started, 3), attempts=attempts)
        if not first:
            COUNTS["producers_remade"] += 1
        return True

    def make_consumer(self):
        if self.consumer is not None:
            old = self.consumer
            self.consumer = None
            bounded(old.close, 15, "consumer.close")
            COUNTS["consumers_remade"] += 1
            say("consumer", why="made again")
        debug = {"debug": os.environ["TXN_WORKER_CONSUMER_DEBUG"]} if os.environ.get("TXN_WORKER_CONSUMER_DEBUG") else {}
        c = Consumer(
            {
                **debug,
                "bootstrap.servers": self.cfg["bootstrap"],
                "group.id": self.cfg["group"],
                "client.id": f"txn-worker-{self.w}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 60000,
                "fetch.wait.max.ms": 100,
                "socket.connection.setup.timeout.ms": 5000,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "retry.backoff.ms": 50,
                "topic.metadata.refresh.fast.interval.ms": 100,
            }
        )
        c.subscribe([self.cfg["input"]])
        self.consumer = c

    # -- helpers ---------------------------------------------------------

    def left(self):
        return self.cfg["deadline"] - time.time()

    def rewind(self, why):
        """Seeks every assigned partition to the group's committed offset
        (the beginning when none); makes the consumer again when that fails
        (a new member starts at the committed offsets)."""
        parts = self.consumer.assignment()
        if not parts:
            say("rewind", why=why, to={})
            return
        for attempt in range(3):
            try:
                committed = self.consumer.committed(parts, timeout=10)
                bad = [tp for tp in committed if tp.error is not None]
                if bad:
                    raise KafkaException(bad[0].error)
                to = {}
                for tp in committed:
                    offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                    to[tp.partition] = tp.offset
                COUNTS["rewinds"] += 1
                say("rewind", why=why, to=to)
                return
            except KafkaException as e:
                error("rewind", e, attempt=attempt)
                if self.left() < 0:
                    break
                time.sleep(0.5)
        self.make_consumer()

    @staticmethod
    def on_client_error(err):
        ERRORS[f"producer_cb:{err.name()}"] += 1

    def on_delivery(self, err, msg):
        if err is not None:
            self.delivery_errors.append(err)

    def produce(self, topic, partition, key, value):
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, partition=partition, on_delivery=self.on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)

    def finished(self):
        """Whether the group's committed offsets reach `need` (checked at most
        once a second)."""
        if time.time() - self.last_done_check < 1.0:
            return False
        self.last_done_check = time.time()
        tps = [TopicPartition(self.cfg["input"], int(p)) for p in self.cfg["need"]]
        try:
            got = self.consumer.committed(tps, timeout=5)
        except KafkaException as e:
            error("committed", e)
            return False
        have = {tp.partition: tp.offset for tp in got if tp.error is None}
        return all(have.get(int(p), -1) >= n for p, n in self.cfg["need"].items())

    def pause(self):
        if self.cfg["pace"] > 0 and not os.path.exists(self.cfg["fast_file"]):
            time.sleep(self.cfg["pace"])

    # -- one transaction -------------------------------------------------

    def transaction(self, msgs):
        """Processes one batch in one transaction."""
        assigned = {tp.partition for tp in self.consumer.assignment()}
        if any(m.partition() not in assigned for m in msgs):
            # A rebalance was served during consume(): the batch holds
            # records of partitions no longer ours.
            COUNTS["stale_batches"] += 1
            say("stale", partitions=sorted({m.partition() for m in msgs}), assigned=sorted(assigned))
            self.rewind("stale batch")
            return
        self.txn_no += 1
        txn = f"w{self.w}.{self.inc}.{self.txn_no}"
        deliberate = self.cfg["abort_every"] > 0 and self.txn_no % self.cfg["abort_every"] == 0
        tag = "abort" if deliberate else "ok"
        n = len(msgs)
        ranges = {}
        for m in msgs:
            key = m.key().decode()
            p, seq = (int(x) for x in key.split("-"))
            lo, hi = ranges.get(p, (seq, seq))
            ranges[p] = (min(lo, seq), max(hi, seq))
        info = {"txn": txn, "records": n, "ranges": {str(p): r for p, r in ranges.items()}}
        commit_sent = False
        began = time.time()
        self.delivery_errors = []
        try:
            self.producer.begin_transaction()
            for k, m in enumerate(msgs):
                key = m.key().decode()
                p, seq = (int(x) for x in key.split("-"))
                out = (p + seq) % self.cfg["out_partitions"]
                self.produce(self.cfg["output"], out, key.encode(), f"{key}|{txn}|{k}/{n}|{tag}".encode())
            positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
            info["offsets"] = {str(tp.partition): tp.offset for tp in positions}
            if deliberate:
                left = guarded(lambda: self.producer.flush(API_TIMEOUT), API_TIMEOUT + GRACE, "flush")
                info["acked"] = n - left - len(self.delivery_errors)
                info["delivery_errors"] = [e.name() for e in self.delivery_errors[:3]]
            group_metadata = self.consumer.consumer_group_metadata()
            guarded(lambda: self.producer.send_offsets_to_transaction(positions, group_metadata, API_TIMEOUT),
                    API_TIMEOUT + GRACE, "send_offsets_to_transaction")
            if deliberate:
                guarded(lambda: self.producer.abort_transaction(API_TIMEOUT), API_TIMEOUT + GRACE, "abort_transaction")
                COUNTS["aborted_deliberately"] += 1
                say("abort", deliberate=True, took=round(time.time() - began, 3), **info)
                self.rewind("deliberate abort")
                return
            commit_sent = True
            self.commit(info, began)
        except (KafkaException, Wedged) as e:
            self.failed(e, info, began, commit_sent, deliberate)

    def commit(self, info, began):
        """commit_transaction, retried while the error is retriable; raises
        what is not."""
        for attempt in range(4):
            try:
                guarded(lambda: self.producer.commit_transaction(API_TIMEOUT), API_TIMEOUT + GRACE,
                        "commit_transaction")
                COUNTS["committed"] += 1
                COUNTS["records_committed"] += info["records"]
                say("commit", took=round(time.time() - began, 3), attempts=attempt + 1, **info)
                self.pause()
                return
            except KafkaException as e:
                k = kerr(e)
                if k is None or not k.retriable() or k.fatal() or k.txn_requires_abort() or self.left() < 0:
                    raise
                error("commit_transaction", e, txn=info["txn"], attempt=attempt)
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit_transaction kept failing", retriable=True))

    def failed(self, e, info, began, commit_sent, deliberate):
        k = kerr(e)
        error("transaction", e, txn=info["txn"], commit_sent=commit_sent)
        if k is not None and k.txn_requires_abort() and not k.fatal():
            for attempt in range(3):
                try:
                    guarded(lambda: self.producer.abort_transaction(API_TIMEOUT), API_TIMEOUT + GRACE,
                            "abort_transaction")
                    COUNTS["aborted_on_error"] += 1
                    say("abort", deliberate=deliberate, reason=k.name(), commit_sent=commit_sent,
                        took=round(time.time() - began, 3), **info)
                    self.rewind("abort after error")
                    return
                except (KafkaException, Wedged) as e2:
                    error("abort_transaction", e2, txn=info["txn"], attempt=attempt)
                    k2 = kerr(e2)
                    if isinstance(e2, Wedged):
                        e = e2
                        break
                    if k2 is None or not k2.retriable() or k2.fatal():
                        break
        # Fatal (fenced), or neither commit nor abort goes through: a new
        # producer's init_transactions settles the transaction at the
        # coordinator (a commit already decided is completed, anything else
        # aborted). Without a commit sent it cannot have committed.
        if commit_sent:
            COUNTS["unknown_outcome"] += 1
            say("unknown", reason=describe(e), took=round(time.time() - began, 3), **info)
        else:
            COUNTS["aborted_on_error"] += 1
            say("abort", deliberate=deliberate, reason=k.name() if k else repr(e), commit_sent=False,
                by_new_producer=True, took=round(time.time() - began, 3), **info)
        wedged = isinstance(e, Wedged)
        if wedged:
            COUNTS["wedged_calls"] += 1
            say("wedged", error=str(e), txn=info["txn"])
        if not self.make_producer(first=False, abandon=wedged):
            return
        self.rewind("new producer")

    # -- the loop --------------------------------------------------------

    def run(self):
        say("start", pid=os.getpid(), transactional_id=self.tid)
        if not self.make_producer(first=True):
            return 3
        self.make_consumer()
        reason = "deadline"
        while self.left() > 0:
            if self.producer is None and not self.make_producer(first=False):
                break
            try:
                msgs = self.consumer.consume(num_messages=self.cfg["batch"], timeout=0.5)
            except (KafkaException, RuntimeError) as e:
                error("consume", e)
                self.make_consumer()
                continue
            good = []
            for m in msgs:
                if m.error():
                    ERRORS[f"consume:{m.error().name()}"] += 1
                    if m.error().fatal():
                        error("consume", KafkaException(m.error()))
                        self.make_consumer()
                        good = []
                        break
                    continue
                good.append(m)
            if good:
                self.transaction(good)
            elif self.finished():
                reason = "finished"
                break
        try:
            final = self.consumer.committed(
                [TopicPartition(self.cfg["input"], int(p)) for p in self.cfg["need"]], timeout=5)
            final = {tp.partition: tp.offset for tp in final}
        except KafkaException as e:
            final = describe(e)
        say("done", reason=reason, committed=final, counts=dict(COUNTS), errors=dict(ERRORS))
        bounded(self.consumer.close, 15, "consumer.close")
        if self.producer is not None:
            bounded(self.producer.close, 10, "producer.close")
        sys.stdout.flush()
        if self.abandoned:
            # A wedged producer's destructor would wait for its blocked call.
            os._exit(0)
        return 0


def main():
    # The test sends SIGUSR1 to a worker it is about to stop: where it was
    # stuck goes to its stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    CFG.update(json.loads(sys.argv[1]))
    sys.exit(Worker(CFG).run())


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - reported to the test
        say("crash", error=repr(e))
        raise
