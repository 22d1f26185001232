"""librdkafka 2.16 through confluent-kafka."""

import pytest
from confluent_kafka import Producer

from conftest import CODECS, N_MESSAGES, check_roundtrip, create_topic, message, read_all


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_read_back(broker, codec):
    topic = f"confluent-{codec}"
    create_topic(broker.bootstrap, topic)
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": codec,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or (msg.partition(), msg.offset()))

    for i in range(N_MESSAGES):
        key, value, headers, ts = message(i, codec)
        p.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=on_delivery)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert errors == []
    assert len(delivered) == N_MESSAGES
    consumed = read_all(broker.bootstrap, topic, N_MESSAGES)
    check_roundtrip(consumed, codec)
    # The offsets the producer was told are the offsets the messages have.
    assert sorted(delivered) == sorted((m["partition"], m["offset"]) for m in consumed)
