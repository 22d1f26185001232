"""Fixtures for client tests: the real `sluice` binary on a free loopback port
with its own data folder, and helpers shared by the per-client tests."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N_MESSAGES = 10_000
BASE_TS = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir: Path, config: str = "", extra_args=()):
        self.extra_args = list(extra_args)
        self.bin = os.environ.get("SLUICE_BIN", str(ROOT / "target/release/sluice"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.admin_port = free_port()
        self.data_dir = data_dir / "data"
        self.log_path = data_dir / "broker.log"
        self.config_path = None
        # Runs in the child before exec (e.g. to lower its resource limits).
        self.preexec_fn = None
        if config:
            self.config_path = data_dir / "sluice.toml"
            self.config_path.write_text(config)
        self.proc = None

    def start(self, timeout: float = 20.0):
        self.launch()
        self.wait_listening(timeout)

    def launch(self):
        """Starts the process without waiting for it to listen."""
        log = open(self.log_path, "ab")
        args = [self.bin, "--listen", self.bootstrap, "--data-dir", str(self.data_dir)]
        # Each broker its own admin listener (tests run side by side).
        if not any(a.startswith("--admin-listen") for a in self.extra_args):
            args += ["--admin-listen", f"127.0.0.1:{self.admin_port}"]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        args += self.extra_args
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            preexec_fn=self.preexec_fn,
        )
        log.close()

    def wait_listening(self, timeout: float = 20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"broker did not listen within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
            assert self.proc.returncode == 0, f"unclean exit {self.proc.returncode}:\n{self.log_tail()}"

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_broker(tmp_path, config: str = ""):
    """A started broker with `config` (TOML lines), killed when the block ends."""
    b = Broker(tmp_path, config)
    b.start()
    try:
        yield b
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path) as b:
        yield b


# Consumer-group tests start several consumers at once; a shorter initial
# rebalance delay than Kafka's 3 s keeps them quick while still gathering
# members that start together into one rebalance.
GROUP_CONFIG = (
    '"group.initial.rebalance.delay.ms" = 1500\n'
    '"group.consumer.heartbeat.interval.ms" = 500\n'
    '"group.consumer.session.timeout.ms" = 6000\n'
)


@pytest.fixture
def group_broker(tmp_path):
    with running_broker(tmp_path, GROUP_CONFIG) as b:
        yield b


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    funcargs = item.funcargs if hasattr(item, "funcargs") else {}
    b = funcargs.get("broker") or funcargs.get("group_broker")
    if rep.failed and isinstance(b, Broker):
        rep.sections.append(("broker log (tail)", b.log_tail()))
    # Fixtures running several brokers expose them as `.brokers` {node id: Broker}.
    many = getattr(funcargs.get("cluster"), "brokers", None)
    if rep.failed and isinstance(many, dict):
        for node, nb in sorted(many.items()):
            rep.sections.append((f"broker {node} log (tail)", nb.log_tail()))


def create_topic(bootstrap: str, topic: str, partitions: int = 3, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, config=config or {})])
    fut[topic].result(timeout=20)


def message(i: int, codec: str):
    """The i-th test message: (key, value, headers, timestamp)."""
    return (
        f"key-{i % 97}".encode(),
        f"value-{i}".encode(),
        [("i", str(i).encode()), ("codec", codec.encode())],
        BASE_TS + i,
    )


def read_all(bootstrap: str, topic: str, expected: int, partitions: int = 3, timeout: float = 60.0):
    """Reads every partition from offset 0 with librdkafka (partitions assigned,
    no consumer group) up to the high watermark each had when reading began,
    and at least `expected` messages, or until the deadline. (A count alone is
    not enough: stored but unacknowledged messages on one partition would
    make up for acknowledged ones not yet read on another.)"""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "sluice-tests-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    next_offset = {p: 0 for p in range(partitions)}
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout

    def done():
        return len(out) >= expected and all(next_offset[p] >= highs[p] for p in highs)

    try:
        while not done() and time.time() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                next_offset[m.partition()] = m.offset() + 1
                out.append(
                    {
                        "partition": m.partition(),
                        "offset": m.offset(),
                        "key": m.key(),
                        "value": m.value(),
                        "headers": [(k, v) for k, v in (m.headers() or [])],
                        "timestamp": m.timestamp()[1],
                    }
                )
    finally:
        c.close()
    return out


def check_roundtrip(consumed, codec: str, n: int = N_MESSAGES, check_headers=True, check_ts=True):
    """Every produced message read back exactly once, intact, and in produce
    order within its partition (one key always lands in one partition)."""
    assert len(consumed) == n, f"read {len(consumed)} of {n}"
    seen = {}
    for m in consumed:
        i = int(m["value"].decode().split("-")[1])
        assert i not in seen, f"message {i} read twice"
        seen[i] = m
        key, value, headers, ts = message(i, codec)
        assert m["key"] == key
        assert m["value"] == value
        if check_headers:
            assert m["headers"] == headers
        if check_ts:
            assert m["timestamp"] == ts
    assert sorted(seen) == list(range(n))
    by_partition = {}
    for m in sorted(consumed, key=lambda m: (m["partition"], m["offset"])):
        by_partition.setdefault(m["partition"], []).append(int(m["value"].decode().split("-")[1]))
    for p, ids in by_partition.items():
        assert ids == sorted(ids), f"partition {p} out of produce order"
    keys_to_partition = {}
    for m in consumed:
        assert keys_to_partition.setdefault(m["key"], m["partition"]) == m["partition"]


def have_kcat() -> bool:
    return shutil.which("kcat") is not None
