"""Acknowledged writes survive kill -9, and topics survive restarts."""

import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from conftest import create_topic, read_all


def produce_until_killed(broker, make_send, topic, run_for=1.5, max_messages=200_000):
    """Produces in the background, kills the broker with SIGKILL mid-stream,
    restarts it, and returns the set of acknowledged values."""
    acked = set()
    lock = threading.Lock()
    stop = threading.Event()

    def ack(value):
        with lock:
            acked.add(value)

    sender = threading.Thread(target=make_send(stop, ack), daemon=True)
    sender.start()
    time.sleep(run_for)
    broker.kill9()
    stop.set()
    sender.join(60)
    assert not sender.is_alive(), "producer thread did not stop"
    broker.start()
    return acked


def test_acks_all_survives_kill9_librdkafka(broker):
    topic = "durable-confluent"
    create_topic(broker.bootstrap, topic)

    def make_send(stop, ack):
        def run():
            p = Producer(
                {
                    "bootstrap.servers": broker.bootstrap,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 2,
                    "message.timeout.ms": 3000,
                }
            )

            def on_delivery(err, msg):
                if err is None:
                    ack(msg.value())

            i = 0
            while not stop.is_set() and i < 200_000:
                try:
                    p.produce(topic, key=str(i % 31).encode(), value=f"m-{i}".encode(), on_delivery=on_delivery)
                    i += 1
                except BufferError:
                    p.poll(0.01)
                p.poll(0)
            p.flush(5)

        return run

    acked = produce_until_killed(broker, make_send, topic)
    assert len(acked) > 100, "the producer got going before the kill"
    consumed = read_all(broker.bootstrap, topic, len(acked), timeout=30)
    values = [m["value"] for m in consumed]
    assert len(values) == len(set(values)), "a message was stored twice"
    missing = acked - set(values)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def test_idempotent_kafka_python_survives_kill9(broker):
    topic = "durable-kafka-python"
    create_topic(broker.bootstrap, topic)

    def make_send(stop, ack):
        def run():
            p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2, request_timeout_ms=3000,
                              delivery_timeout_ms=6000, retries=2)
            i = 0
            futures = []
            while not stop.is_set() and i < 200_000:
                value = f"m-{i}".encode()
                f = p.send(topic, key=str(i % 31).encode(), value=value)
                f.add_callback(lambda _meta, v=value: ack(v))
                futures.append(f)
                i += 1
                if i % 500 == 0:
                    time.sleep(0.001)
            try:
                p.close(timeout=5)
            except Exception:
                pass

        return run

    acked = produce_until_killed(broker, make_send, topic)
    assert len(acked) > 100
    consumed = read_all(broker.bootstrap, topic, len(acked), timeout=30)
    values = [m["value"] for m in consumed]
    assert len(values) == len(set(values)), "a message was stored twice"
    assert not (acked - set(values)), "acknowledged messages lost"


def test_topics_survive_clean_and_unclean_restarts(broker):
    create_topic(broker.bootstrap, "kept", partitions=5, config={"retention.ms": "3600000"})
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    before = admin.describe_topics(["kept"])[0]
    admin.close()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("kept", key=str(i).encode(), value=f"v-{i}".encode())
    assert p.flush(30) == 0
    count = 100
    marker = broker.data_dir / "kept-0" / "clean-shutdown"
    for restart in (broker.stop, broker.kill9):
        restart()
        # A clean stop leaves the marker that lets the next start skip
        # recovery; the first write after the start removes it, so a crash
        # after writes finds none.
        assert marker.exists() == (restart == broker.stop)
        broker.start()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        after = admin.describe_topics(["kept"])[0]
        admin.close()
        assert after["topic_id"] == before["topic_id"]
        assert len(after["partitions"]) == 5
        res = ConfigResource(ConfigResource.Type.TOPIC, "kept")
        # Keep the client alive until the answer is in: a dropped handle cancels it.
        config_admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        conf = config_admin.describe_configs([res])[res].result(timeout=20)
        assert conf["retention.ms"].value == "3600000", "topic configs persist"
        assert len(read_all(broker.bootstrap, "kept", count, partitions=5)) == count
        # Reading wrote nothing: an untouched log keeps its marker.
        assert marker.exists() == (restart == broker.stop)
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(count, count + 50):
            p.produce("kept", key=str(i).encode(), value=f"v-{i}".encode(), partition=i % 5)
        assert p.flush(30) == 0
        count += 50
        assert not marker.exists(), "the first write removes the marker"
    assert len(read_all(broker.bootstrap, "kept", count, partitions=5)) == count


def test_aiokafka_acks_all_survives_kill9(broker):
    import asyncio

    from aiokafka import AIOKafkaProducer

    topic = "durable-aiokafka"
    create_topic(broker.bootstrap, topic)
    acked = set()

    async def produce_then_kill():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=2, request_timeout_ms=3000)
        await p.start()
        pending = set()
        loop = asyncio.get_running_loop()
        killed_at = loop.time() + 1.5
        i = 0
        try:
            while loop.time() < killed_at and i < 200_000:
                value = f"m-{i}".encode()
                fut = await p.send(topic, key=str(i % 31).encode(), value=value)
                fut.add_done_callback(lambda f, v=value: acked.add(v) if not f.exception() else None)
                pending.add(fut)
                i += 1
            broker.kill9()
            await asyncio.wait(pending, timeout=10)
        finally:
            try:
                await asyncio.wait_for(p.stop(), 10)
            except Exception:
                pass

    asyncio.run(produce_then_kill())
    broker.start()
    assert len(acked) > 100
    consumed = read_all(broker.bootstrap, topic, len(acked), timeout=30)
    values = [m["value"] for m in consumed]
    assert len(values) == len(set(values)), "a message was stored twice"
    assert not (acked - set(values)), "acknowledged messages lost"


def test_kcat_and_kafkajs_acknowledged_writes_survive_kill9(broker):
    import json
    import shutil
    import subprocess
    from pathlib import Path

    create_topic(broker.bootstrap, "durable-kcat")
    lines = "".join(f"k{i % 13}:kcat-{i}\n" for i in range(2000))
    out = subprocess.run(
        ["kcat", "-P", "-b", broker.bootstrap, "-t", "durable-kcat", "-K:", "-X", "acks=all"],
        input=lines, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr  # kcat exits 0 only when every message was acknowledged
    js = Path(__file__).resolve().parents[1] / "js" / "produce.js"
    out = subprocess.run([shutil.which("node"), str(js), broker.bootstrap, "durable-kafkajs", "2000", "none"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["acked"]
    broker.kill9()
    broker.start()
    assert len(read_all(broker.bootstrap, "durable-kcat", 2000)) == 2000
    assert len(read_all(broker.bootstrap, "durable-kafkajs", 2000)) == 2000
