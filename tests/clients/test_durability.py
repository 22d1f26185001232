"""Acknowledged writes survive kill -9, and topics survive restarts."""

import threading
import time

from confluent_kafka import Producer
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
    for restart in (broker.stop, broker.kill9):
        restart()
        broker.start()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        after = admin.describe_topics(["kept"])[0]
        admin.close()
        assert after["topic_id"] == before["topic_id"]
        assert len(after["partitions"]) == 5
        assert len(read_all(broker.bootstrap, "kept", 100, partitions=5)) == 100
