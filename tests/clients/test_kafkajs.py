"""KafkaJS 2.2 (non-flexible versions only: Metadata ≤ 6, Produce ≤ 7).

KafkaJS produces; librdkafka reads back, because KafkaJS can only consume
through a consumer group. KafkaJS has no zstd codec of its own (its zstd plugin
is a native module), so it is tested with none, gzip, snappy and lz4."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import N_MESSAGES, check_roundtrip, read_all

JS = Path(__file__).resolve().parents[1] / "js"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_produce_and_read_back(broker, codec):
    node = shutil.which("node")
    assert node, "node is required for the KafkaJS tests"
    topic = f"kafkajs-{codec}"
    out = subprocess.run(
        [node, str(JS / "produce.js"), broker.bootstrap, topic, str(N_MESSAGES), codec],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    acked = json.loads(out.stdout.strip().splitlines()[-1])["acked"]
    assert len(acked) > 0
    consumed = read_all(broker.bootstrap, topic, N_MESSAGES)
    check_roundtrip(consumed, codec)
