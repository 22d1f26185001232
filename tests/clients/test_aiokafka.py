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


async def admin_answers(bootstrap):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic("aio-admin", 2, 1)])
        refused = await admin.create_topics([NewTopic("aio-admin", 2, 1)])
        topic = ConfigResource(ConfigResourceType.TOPIC, "aio-admin", {"retention.ms": "60000"})
        altered = await admin.alter_configs([topic])
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "aio-admin")], include_synonyms=False
        )
        with_synonyms = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "aio-admin")], include_synonyms=True
        )
    finally:
        await admin.close()
    return [r.to_object() for r in (created, refused)], [
        [r.to_object() for r in rs] for rs in (altered, described, with_synonyms)
    ]


def test_admin_error_messages_are_null_without_an_error(broker):
    """aiokafka reads the nullable error messages as Kafka sends them: null
    when there is no error (not ""), a message when there is one; synonyms
    only when asked for."""
    (created, refused), (altered, described, with_synonyms) = asyncio.run(
        admin_answers(broker.bootstrap)
    )
    ok = created["topic_errors"][0]
    assert (ok["error_code"], ok["error_message"]) == (0, None), created
    bad = refused["topic_errors"][0]
    assert bad["error_code"] == 36 and bad["error_message"], refused  # TOPIC_ALREADY_EXISTS
    for r in altered:
        for res in r["resources"]:
            assert (res["error_code"], res["error_message"]) == (0, None), altered
    res = described[0]["resources"][0]
    assert (res["error_code"], res["error_message"]) == (0, None), described
    entries = {c["config_names"]: c for c in res["config_entries"]}
    assert entries["retention.ms"]["config_value"] == "60000"
    assert all(not c.get("config_synonyms") for c in res["config_entries"]), "no synonyms unless asked"
    res = with_synonyms[0]["resources"][0]
    entries = {c["config_names"]: c for c in res["config_entries"]}
    assert [s["config_name"] for s in entries["retention.ms"]["config_synonyms"]][:1] == ["retention.ms"]


async def static_members(bootstrap, topic, group):
    """Static member "a" alone, then "b" joins; then "b" restarts within its
    session timeout. Returns the timeline of (seconds, member, event,
    partitions) and each member's final assignment."""
    from aiokafka.abc import ConsumerRebalanceListener

    t0 = time.time()
    log = []

    class Listener(ConsumerRebalanceListener):
        def __init__(self, name):
            self.name = name

        async def on_partitions_revoked(self, revoked):
            log.append((round(time.time() - t0, 2), self.name, "revoked", sorted(p.partition for p in revoked)))

        async def on_partitions_assigned(self, assigned):
            log.append((round(time.time() - t0, 2), self.name, "assigned", sorted(p.partition for p in assigned)))

    async def run(name, seconds):
        c = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            group_instance_id=name,
            session_timeout_ms=10000,
            heartbeat_interval_ms=300,
        )
        c.subscribe([topic], listener=Listener(name))
        await c.start()
        try:
            end = time.time() + seconds
            while time.time() < end:
                await c.getmany(timeout_ms=200)
            return sorted(p.partition for p in c.assignment())
        finally:
            # A static member's close leaves no LeaveGroup: its session holds
            # its place.
            await c.stop()

    a = asyncio.create_task(run("a", 16))
    await asyncio.sleep(4.5)
    await run("b", 4)
    restarted_at = round(time.time() - t0, 2)
    b = await run("b", 4)
    return log, await a, b, restarted_at


def test_static_members_get_their_share_and_restart_without_a_rebalance(broker):
    topic = "aio-static"
    create_topic(broker.bootstrap, topic, 2)
    log, final_a, final_b, restarted_at = asyncio.run(static_members(broker.bootstrap, topic, "aio-static-g"))
    timeline = "\n".join(map(str, log))
    # No partition is ever owned by both members (eager: revoke all, then assign).
    owned = {"a": set(), "b": set()}
    for _, who, event, parts in log:
        owned[who] = set(parts) if event == "assigned" else owned[who] - set(parts)
        assert not owned["a"] & owned["b"], f"both own {owned['a'] & owned['b']}:\n{timeline}"
    # Once b is in, a holds only its share.
    a_assignments = [parts for _, who, event, parts in log if who == "a" and event == "assigned"]
    assert a_assignments[0] == [0, 1], timeline
    assert len(a_assignments[-1]) == 1, timeline
    assert sorted(final_a + final_b) == [0, 1], (final_a, final_b, timeline)
    # b's restart within its session timeout moved nothing: a was not revoked.
    assert not [e for e in log if e[1] == "a" and e[0] >= restarted_at], timeline
