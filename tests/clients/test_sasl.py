"""Real clients over SASL_PLAINTEXT with SCRAM-SHA-256, SCRAM-SHA-512 and
PLAIN: confluent-kafka (librdkafka), kafka-python (SaslAuthenticate, and
SaslHandshake v0's raw framing as a 0.10 client), aiokafka, kcat (librdkafka
2.0.2), KafkaJS and the Java client produce and consume with their own
users; a wrong password fails at once; a client that skips SASL on the SASL
port gets nothing but a closed connection; users are added offline with
`sluice scram add` before the start and through AlterUserScramCredentials
(confluent-kafka's and the Java admin clients) while running;
re-authentication (connections.max.reauth.ms) keeps a client going."""

import asyncio
import json
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import Broker, free_port

N = 300
JS = Path(__file__).resolve().parents[1] / "js"

# Users added offline before the first start: (user, password, mechanism).
OFFLINE = [
    ("alice", "alice-secret", "SCRAM-SHA-512"),
    ("alice", "alice-secret", "SCRAM-SHA-256"),
    ("bob", "bob-secret", "SCRAM-SHA-256"),
]


def sasl_config(b, extra=""):
    return (
        f'listeners = "PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}"\n'
        '"inter.broker.listener.name" = "PLAINTEXT"\n'
        '"num.partitions" = 3\n'
        '"group.initial.rebalance.delay.ms" = 0\n' + extra
    )


def start_sasl_broker(tmp_path, extra=""):
    b = Broker(tmp_path)
    b.sasl_port = free_port()
    b.sasl_bootstrap = f"127.0.0.1:{b.sasl_port}"
    b.config_path = tmp_path / "sluice.toml"
    b.config_path.write_text(sasl_config(b, extra))
    for user, password, mechanism in OFFLINE:
        out = subprocess.run(
            [b.bin, "--config", str(b.config_path), "scram", "add", "--data-dir", str(b.data_dir),
             "--user", user, "--password", password, "--mechanism", mechanism],
            capture_output=True, text=True, timeout=30,
        )
        if any(f"unknown field `{k}`" in out.stderr for k in ("listeners", "inter.broker.listener.name")):
            # The SASL_PLAINTEXT listener is configured with `listeners`;
            # a broker without that key cannot run these tests.
            pytest.skip("this broker has no `listeners` configuration yet")
        assert out.returncode == 0, out.stderr
    b.start()
    return b


@pytest.fixture
def sasl_broker(tmp_path):
    b = start_sasl_broker(tmp_path)
    try:
        yield b
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def rdkafka_conf(b, mechanism, user, password, **extra):
    return {
        "bootstrap.servers": b.sasl_bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        **extra,
    }


def produce_rdkafka(conf, topic, n=N, prefix="v"):
    from confluent_kafka import Producer

    errors = []
    p = Producer({**conf, "enable.idempotence": True, "error_cb": errors.append})
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"{prefix}{i}".encode())
    assert p.flush(30) == 0, errors
    return errors


def consume_rdkafka(conf, topic, n, partitions=3, timeout=30.0):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            assert not m.error(), m.error()
            out.append(m.value().decode())
    c.close()
    return out


def test_confluent_scram_512_and_plain(sasl_broker):
    b = sasl_broker
    topic = "sasl-confluent"
    produce_rdkafka(rdkafka_conf(b, "SCRAM-SHA-512", "alice", "alice-secret"), topic)
    got = consume_rdkafka(rdkafka_conf(b, "PLAIN", "bob", "bob-secret"), topic, N)
    assert sorted(got) == sorted(f"v{i}" for i in range(N))


def test_wrong_password_fails_at_once(sasl_broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    b = sasl_broker
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        errors = []
        admin = AdminClient(rdkafka_conf(b, mechanism, "alice", "wrong", error_cb=errors.append))
        started = time.time()
        while not errors and time.time() - started < 10:
            admin.poll(0.1)
        assert errors, f"{mechanism}: no error within 10 s"
        assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]
        assert "invalid credentials" in errors[0].str(), errors[0].str()
        assert time.time() - started < 5
    # An unknown user: the same answer.
    errors = []
    admin = AdminClient(rdkafka_conf(b, "SCRAM-SHA-512", "mallory", "x", error_cb=errors.append))
    started = time.time()
    while not errors and time.time() - started < 10:
        admin.poll(0.1)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION


def test_a_client_without_sasl_gets_a_closed_connection(sasl_broker):
    b = sasl_broker
    # Metadata v1 before any SaslHandshake.
    body = struct.pack(">hhih", 3, 1, 7, 4) + b"test" + struct.pack(">i", -1)
    with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        assert s.recv(4) == b""
    # librdkafka configured for PLAINTEXT on the SASL port sees no metadata.
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": b.sasl_bootstrap})
    with pytest.raises(Exception):
        admin.list_topics(timeout=3)


def test_kafka_python_scram_and_raw_v0_plain(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    b = sasl_broker
    topic = "sasl-kafka-python"
    common = dict(bootstrap_servers=b.sasl_bootstrap, security_protocol="SASL_PLAINTEXT")
    p = KafkaProducer(**common, sasl_mechanism="SCRAM-SHA-256",
                      sasl_plain_username="alice", sasl_plain_password="alice-secret")
    for i in range(N):
        p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3)
    p.flush(30)
    p.close()
    c = KafkaConsumer(**common, sasl_mechanism="PLAIN", sasl_plain_username="bob",
                      sasl_plain_password="bob-secret", enable_auto_commit=False,
                      consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, p) for p in range(3)])
    c.seek_to_beginning()
    got = [m.value.decode() for m in c]
    c.close()
    assert sorted(got) == sorted(f"v{i}" for i in range(N))
    # As a 0.10 client: SaslHandshake v0, then the raw PLAIN message (a 0.10
    # client's Fetch and Produce are older than Sluice serves: it asks for
    # metadata and offsets).
    old = KafkaConsumer(**common, sasl_mechanism="PLAIN", sasl_plain_username="bob",
                        sasl_plain_password="bob-secret", api_version=(0, 10, 2),
                        enable_auto_commit=False)
    assert topic in old.topics()
    ends = old.end_offsets([TopicPartition(topic, p) for p in range(3)])
    assert sum(ends.values()) == N
    old.close()
    # A wrong password fails (kafka-python retries until its bootstrap
    # timeout, each attempt refused).
    with pytest.raises(Exception):
        KafkaProducer(**common, sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                      sasl_plain_password="nope", bootstrap_timeout_ms=3000)
    assert "SASL authentication failed" in b.log_path.read_text(errors="replace")


def test_aiokafka_scram_512(sasl_broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    b = sasl_broker
    topic = "sasl-aiokafka"
    common = dict(bootstrap_servers=b.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                  sasl_plain_password="alice-secret")

    async def run():
        p = AIOKafkaProducer(**common)
        await p.start()
        try:
            for i in range(N):
                await p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3)
            await p.flush()
        finally:
            await p.stop()
        c = AIOKafkaConsumer(**common, enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([TopicPartition(topic, p) for p in range(3)])
            await c.seek_to_beginning()
            got = []
            deadline = time.time() + 30
            while len(got) < N and time.time() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for msgs in batches.values():
                    got += [m.value.decode() for m in msgs]
            return got
        finally:
            await c.stop()

    got = asyncio.run(run())
    assert sorted(got) == sorted(f"v{i}" for i in range(N))


def test_kcat_scram_and_plain(sasl_broker):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed")
    b = sasl_broker
    topic = "sasl-kcat"

    def args(mechanism, user, password):
        return [kcat, "-b", b.sasl_bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={user}",
                "-X", f"sasl.password={password}"]

    lines = "".join(f"v{i}\n" for i in range(N))
    out = subprocess.run(args("SCRAM-SHA-512", "alice", "alice-secret") + ["-P", "-t", topic],
                         input=lines, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(args("PLAIN", "bob", "bob-secret") + ["-C", "-t", topic, "-e", "-q", "-o", "beginning"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(f"v{i}" for i in range(N))
    out = subprocess.run(args("SCRAM-SHA-256", "bob", "wrong") + ["-L"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "Authentication failed" in out.stderr or "authentication" in out.stderr.lower(), out.stderr


def test_kafkajs_scram_and_plain(sasl_broker):
    node = shutil.which("node")
    assert node, "node is required for the KafkaJS tests"
    b = sasl_broker
    topic = "sasl-kafkajs"
    out = subprocess.run([node, str(JS / "sasl.js"), b.sasl_bootstrap, topic, str(N)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["produced"] == N
    assert result["wrong_password"] == "KafkaJSSASLAuthenticationError", result
    got = consume_rdkafka(rdkafka_conf(b, "SCRAM-SHA-256", "alice", "alice-secret"), topic, N)
    assert sorted(got) == sorted(f"v{i}" for i in range(N))


def test_scram_admin_api_with_confluent(sasl_broker):
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    b = sasl_broker
    admin = AdminClient(rdkafka_conf(b, "SCRAM-SHA-512", "alice", "alice-secret"))
    described = admin.describe_user_scram_credentials(["alice", "bob"])
    got = {u: f.result() for u, f in described.items()}
    assert sorted((i.mechanism, i.iterations) for i in got["alice"].scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 4096)]
    # A new user through the API, who then logs in; bob's credential removed.
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("carol", info, b"carol-secret"),
        UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256),
    ])
    for f in futs.values():
        f.result()
    topic = "sasl-carol"
    produce_rdkafka(rdkafka_conf(b, "SCRAM-SHA-512", "carol", "carol-secret"), topic, 10)
    assert len(consume_rdkafka(rdkafka_conf(b, "PLAIN", "carol", "carol-secret"), topic, 10)) == 10
    described = admin.describe_user_scram_credentials(["bob"])
    with pytest.raises(Exception) as e:
        described["bob"].result()
    assert "RESOURCE_NOT_FOUND" in str(e.value) or "does not exist" in str(e.value.args[0]).lower() \
        or "DoesNotExist" in str(e.value), e.value
    # Too few iterations: UNACCEPTABLE_CREDENTIAL.
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw"),
    ])
    with pytest.raises(Exception) as e:
        futs["dave"].result()
    assert "UNACCEPTABLE_CREDENTIAL" in str(e.value) or "Too few iterations" in str(e.value), e.value


def test_reauthentication_keeps_clients_going(tmp_path):
    b = start_sasl_broker(tmp_path, '"connections.max.reauth.ms" = 2000\n')
    try:
        from confluent_kafka import Producer

        topic = "sasl-reauth"
        errors = []
        p = Producer({**rdkafka_conf(b, "SCRAM-SHA-512", "alice", "alice-secret"),
                      "error_cb": errors.append})
        # Across several session lifetimes, one message at a time.
        deadline = time.time() + 7
        sent = 0
        while time.time() < deadline:
            p.produce(topic, value=f"v{sent}".encode())
            sent += 1
            assert p.flush(10) == 0
            time.sleep(0.2)
        assert sent > 20
        got = consume_rdkafka(rdkafka_conf(b, "SCRAM-SHA-512", "alice", "alice-secret"), topic, sent)
        assert len(got) == sent
        # librdkafka re-authenticated rather than being cut off.
        log = b.log_path.read_text(errors="replace")
        assert "SASL session expired" not in log, b.log_tail()
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def test_java_client_and_admin(sasl_broker):
    from java_support import run_java

    b = sasl_broker
    run = run_java("SaslChecks", b.sasl_bootstrap, "sasl-java", N)
    assert run.returncode == 0, run.report()
    assert run.step("produce")["acked"] == N, run.report()
    assert run.step("consume")["count"] == N, run.report()
    assert run.step("describe")["mechanisms"] == {"SCRAM-SHA-256": 4096, "SCRAM-SHA-512": 4096}
    assert run.step("alter")["ok"], run.report()
    assert "sasl-java" in run.step("carol")["topics"], run.report()
    wrong = run.step("wrong")
    assert wrong["error"] == "SaslAuthenticationException", run.report()
    assert wrong["ms"] < 5000, run.report()
