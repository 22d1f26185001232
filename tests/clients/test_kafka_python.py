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
