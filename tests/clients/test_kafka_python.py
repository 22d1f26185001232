"""kafka-python 3.x: idempotent producer with acks=all by default."""

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from conftest import CODECS, N_MESSAGES, check_roundtrip, message


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_read_back(broker, codec):
    topic = f"kafka-python-{codec}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    p = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    assert p.config["enable_idempotence"], "kafka-python 3 is idempotent by default"
    futures = []
    for i in range(N_MESSAGES):
        key, value, headers, ts = message(i, codec)
        futures.append(p.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts))
    p.flush(60)
    metas = [f.get(timeout=30) for f in futures]
    p.close()

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    tps = [TopicPartition(topic, n) for n in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    consumed = [
        {
            "partition": r.partition,
            "offset": r.offset,
            "key": r.key,
            "value": r.value,
            "headers": list(r.headers),
            "timestamp": r.timestamp,
        }
        for r in c
    ]
    c.close()
    check_roundtrip(consumed, codec)
    assert sorted((m.partition, m.offset) for m in metas) == sorted(
        (m["partition"], m["offset"]) for m in consumed
    )


def _list_offsets_v0(bootstrap, topics):
    """One ListOffsets v0 request, encoded and decoded by kafka-python, sent
    on a socket of its own (so the version is exactly 0); `topics` is
    [(name, [(partition, timestamp, max_num_offsets)])]. Returns
    {(topic, partition): (error_code, offsets)} in the order answered."""
    import socket
    import struct

    from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse

    T = ListOffsetsRequest.ListOffsetsTopic
    P = T.ListOffsetsPartition
    req = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            T(name=name, partitions=[P(partition_index=i, timestamp=ts, max_num_offsets=n) for i, ts, n in parts])
            for name, parts in topics
        ],
    )
    req.with_header(correlation_id=7, client_id="v0-test")
    host, port = bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(req.encode(version=0, header=True, framed=True))
        f = s.makefile("rb")
        (size,) = struct.unpack(">i", f.read(4))
        resp = ListOffsetsResponse.decode(f.read(size), version=0, header=True)
    return {
        (t.name, p.partition_index): (p.error_code, list(p.old_style_offsets))
        for t in resp.topics
        for p in t.partitions
    }


def test_list_offsets_v0(broker):
    """ListOffsets v0 (removed in Kafka 4, still sent by old clients): the
    consumer's beginning/end offsets with api_version=(0, 9), which sends v0,
    and the offset lists of v0 by timestamp and max_num_offsets (segment base
    offsets and the log end, descending), with unknown topics and partitions
    answered UNKNOWN_TOPIC_OR_PARTITION (3)."""
    topic = "kafka-python-v0"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs={"segment.bytes": "300"})]
    )
    admin.close()
    # One batch a flush, each bigger than segment.bytes: segments 0, 1, 2,
    # their newest records at 1000, 2000, 3000; the log end is 3.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for ts in (1000, 2000, 3000):
        p.send(topic, value=b"x" * 400, partition=0, timestamp_ms=ts)
        p.flush(30)
    p.close()
    segments = sorted(f.name for f in (broker.data_dir / f"{topic}-0").glob("*.log"))
    assert [int(s.split(".")[0]) for s in segments] == [0, 1, 2]

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, api_version=(0, 9))
    tp = TopicPartition(topic, 0)
    assert c.beginning_offsets([tp]) == {tp: 0}
    assert c.end_offsets([tp]) == {tp: 3}
    c.close()

    LATEST, EARLIEST = -1, -2
    got = _list_offsets_v0(
        broker.bootstrap,
        [
            (topic, [(0, LATEST, 10)]),
            ("no-such-topic", [(0, EARLIEST, 1)]),
        ],
    )
    assert got == {(topic, 0): (0, [3, 2, 1, 0]), ("no-such-topic", 0): (3, [])}
    cases = [
        (LATEST, 1, [3]),
        (EARLIEST, 1, [0]),
        (EARLIEST, 5, [0]),
        (2500, 10, [1, 0]),
        (2000, 1, [1]),
        (500, 10, []),
        (LATEST, 0, []),
    ]
    for ts, n, want in cases:
        got = _list_offsets_v0(broker.bootstrap, [(topic, [(0, ts, n), (7, ts, n)])])
        assert got == {(topic, 0): (0, want), (topic, 7): (3, [])}, (ts, n)
