"""Debian's kcat 1.7.1 with librdkafka 2.0.2: an old client that mis-reads
optional tagged fields, so it checks that responses carry none."""

import subprocess

import pytest

from conftest import CODECS, create_topic

N = 3000


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume(broker, codec):
    topic = f"kcat-{codec}"
    create_topic(broker.bootstrap, topic)
    lines = "".join(f"key-{i % 97}:value-{i}\n" for i in range(N))
    prod = subprocess.run(
        ["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-z", codec,
         "-H", f"codec={codec}", "-X", "acks=all"],
        input=lines, capture_output=True, text=True, timeout=120,
    )
    assert prod.returncode == 0, prod.stderr
    cons = subprocess.run(
        ["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
         "-f", "%p\t%o\t%k\t%s\t%h\n"],
        capture_output=True, text=True, timeout=120,
    )
    assert cons.returncode == 0, cons.stderr
    rows = [line.split("\t") for line in cons.stdout.splitlines() if line]
    assert len(rows) == N
    seen = set()
    last_offset = {}
    for p, o, k, v, h in rows:
        i = int(v.split("-")[1])
        assert i not in seen
        seen.add(i)
        assert k == f"key-{i % 97}"
        assert h == f"codec={codec}"
        assert int(o) > last_offset.get(p, -1), "offsets increase within a partition"
        last_offset[p] = int(o)
    assert seen == set(range(N))


def test_metadata_listing(broker):
    create_topic(broker.bootstrap, "listed", partitions=4)
    out = subprocess.run(["kcat", "-L", "-b", broker.bootstrap, "-t", "listed"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert 'topic "listed" with 4 partitions' in out.stdout
