"""aiokafka 0.14 (asyncio; ApiVersions v0, Produce ≤ 8, Fetch ≤ 11)."""

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from conftest import CODECS, N_MESSAGES, check_roundtrip, create_topic, message


async def produce_and_consume(bootstrap, topic, codec):
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        acks="all",
        linger_ms=5,
    )
    await p.start()
    try:
        futures = []
        for i in range(N_MESSAGES):
            key, value, headers, ts = message(i, codec)
            futures.append(await p.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts))
        metas = await asyncio.gather(*futures)
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    consumed = []
    try:
        tps = [TopicPartition(topic, n) for n in range(3)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.time() + 60
        while len(consumed) < N_MESSAGES and time.time() < deadline:
            batches = await c.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                consumed.extend(
                    {
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key,
                        "value": r.value,
                        "headers": list(r.headers),
                        "timestamp": r.timestamp,
                    }
                    for r in records
                )
    finally:
        await c.stop()
    return metas, consumed


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_read_back(broker, codec):
    topic = f"aiokafka-{codec}"
    create_topic(broker.bootstrap, topic)
    metas, consumed = asyncio.run(produce_and_consume(broker.bootstrap, topic, codec))
    check_roundtrip(consumed, codec)
    assert sorted((m.partition, m.offset) for m in metas) == sorted(
        (m["partition"], m["offset"]) for m in consumed
    )
