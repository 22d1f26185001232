"""Sarama 1.22 (Go), Debian's golang-github-shopify-sarama-dev, configured as
Kafka 2.2.0 (its newest version constant): it sends CreateTopics v2, Metadata
v5, Produce v3, ListOffsets v1 and Fetch v4, and no ApiVersions request.

tests/go/sarama_roundtrip creates the topic with Sarama's ClusterAdmin,
produces keyed messages with headers through a SyncProducer (acks=all), reads
every partition back from the oldest offset with a plain Consumer (no group)
and checks them itself; this test asserts on the JSON line it prints.

zstd is not tested: Kafka refuses zstd batches in Produce below v7 and in Fetch
below v10, and Sarama 1.22 sends Produce v3 and Fetch v4 whatever the codec.

tests/go/sarama_offsets asks for a partition's oldest and newest offsets with
Sarama configured as Kafka 0.10.0, which sends ListOffsets v0."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

GO_DIR = Path(__file__).resolve().parents[1] / "go"
GOPATH = "/usr/share/gocode"
SARAMA = Path(GOPATH) / "src/github.com/Shopify/sarama"
N = 2000
PARTITIONS = 3


def go_program(name):
    """tests/go/NAME built into tests/go/bin/NAME (again when its source is
    newer)."""
    src = GO_DIR / name / "main.go"
    binary = GO_DIR / "bin" / name
    go = shutil.which("go")
    if not go or not SARAMA.is_dir():
        if os.geteuid() != 0:
            pytest.skip("Go and Sarama are missing and this is not root: "
                        "apt-get install golang-go golang-github-shopify-sarama-dev")
        pytest.fail("Go or Sarama is missing: scripts/test.sh installs them "
                    "(apt-get install golang-go golang-github-shopify-sarama-dev)")
    if not binary.exists() or src.stat().st_mtime > binary.stat().st_mtime:
        binary.parent.mkdir(exist_ok=True)
        tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
        out = subprocess.run(
            [go, "build", "-o", str(tmp), f"./{name}"],
            cwd=GO_DIR,
            env={**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH},
            capture_output=True, text=True, timeout=600,
        )
        assert out.returncode == 0, f"go build failed:\n{out.stderr}"
        os.replace(tmp, binary)
    return binary


@pytest.fixture(scope="module")
def sarama_bin():
    return go_program("sarama_roundtrip")


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_sync_produce_and_consume(sarama_bin, broker, codec):
    topic = f"sarama-{codec}"
    out = subprocess.run(
        [str(sarama_bin), "-bootstrap", broker.bootstrap, "-topic", topic, "-n", str(N),
         "-partitions", str(PARTITIONS), "-codec", codec],
        capture_output=True, text=True, timeout=180,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output (exit {out.returncode}):\n{out.stderr}"
    rep = json.loads(lines[-1])
    assert out.returncode == 0, f"{rep}\n{out.stderr}"
    assert rep.get("error") is None
    assert rep["mismatches"] == []
    assert rep["version"] == "2.2.0"
    assert rep["created"] is True
    assert rep["partitions"] == PARTITIONS
    assert rep["produced"] == N
    assert rep["consumed"] == N
    # Every partition got messages, and its high water mark is what was read.
    assert sorted(rep["per_partition"]) == [str(p) for p in range(PARTITIONS)]
    assert all(c > 0 for c in rep["per_partition"].values())
    assert {p: int(c) for p, c in rep["per_partition"].items()} == rep["high_water"]


def test_list_offsets_v0(broker):
    """Sarama as Kafka 0.10.0 asks for offsets with ListOffsets v0 (one
    offset each, from the old offsets list): oldest 0 and newest 4 after four
    records."""
    from confluent_kafka import Producer

    from conftest import create_topic

    binary = go_program("sarama_offsets")
    create_topic(broker.bootstrap, "sarama-v0", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for _ in range(4):
        p.produce("sarama-v0", value=b"x", partition=0)
    assert p.flush(30) == 0
    out = subprocess.run(
        [str(binary), "-bootstrap", broker.bootstrap, "-topic", "sarama-v0"],
        capture_output=True, text=True, timeout=60,
    )
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, f"{rep}\n{out.stderr}"
    assert rep == {"version": "0.10.0.0", "oldest": 0, "newest": 4}, rep
