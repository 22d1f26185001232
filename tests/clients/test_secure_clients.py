"""Every client over TLS with its own user, against a broker that enforces
ACLs (Kafka's StandardAuthorizer): SASL_SSL with SCRAM-SHA-512, and mutual
TLS where the principal is the certificate's subject mapped by
`ssl.principal.mapping.rules`. confluent-kafka, kafka-python, aiokafka,
kcat (librdkafka 2.0.2), KafkaJS and the Java client each produce to their
topic, read it back (in a consumer group where the client has one) and are
refused a topic their user may not write. Each client's user (`<client>-svc`
over SASL, `User:<client>` over mTLS) holds WRITE and READ on topics
`<client>-*` and READ on groups `<client>-*`, nothing more; the Java client
manages its own ACLs with Admin.createAcls / describeAcls / deleteAcls.
Certificates are made for each run (never committed)."""

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Broker, free_port
from test_tls import issue_cert, make_pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

N = 200
JS = Path(__file__).resolve().parents[1] / "js"
CLIENTS = ["confluent", "kafka-python", "aiokafka", "kcat", "kafkajs", "java"]
TOPIC_AUTHORIZATION_FAILED = 29


def password(user):
    return f"{user}-secret"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                       NewTopic, ResourcePatternType, ResourceType)

    tmp = tmp_path_factory.mktemp("secure-clients")
    (tmp / "pki").mkdir()
    pki = make_pki(tmp / "pki")
    for c in CLIENTS:
        issue_cert(pki, c, f"/O=Example/OU=services/CN={c}")
    b = Broker(tmp)
    b.sasl_port, b.mtls_port, b.pki = free_port(), free_port(), pki
    b.config_path = tmp / "sluice.toml"
    b.config_path.write_text(
        f'listeners = "PLAINTEXT://127.0.0.1:{b.port},SASL_SSL://127.0.0.1:{b.sasl_port},'
        f'MTLS://127.0.0.1:{b.mtls_port}"\n'
        '"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL"\n'
        '"inter.broker.listener.name" = "PLAINTEXT"\n'
        f'"ssl.keystore.location" = "{pki / "broker-store.pem"}"\n'
        f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
        '"listener.name.mtls.ssl.client.auth" = "required"\n'
        '"listener.name.mtls.ssl.principal.mapping.rules" = "RULE:^CN=([^,]*),OU=services,.*$/$1/L,DEFAULT"\n'
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-512"\n'
        '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"\n'
        '"super.users" = "User:admin"\n'
        '"group.initial.rebalance.delay.ms" = 0\n'
    )
    for user in ["admin", *(f"{c}-svc" for c in CLIENTS)]:
        out = subprocess.run(
            [b.bin, "--config", str(b.config_path), "scram", "add", "--data-dir", str(b.data_dir),
             "--user", user, "--password", password(user), "--mechanism", "SCRAM-SHA-512"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
    b.start()
    try:
        admin = AdminClient(sasl_conf(b, "admin"))
        topics = [NewTopic(f"{c}-{mode}", 3, 1) for c in CLIENTS if c != "java" for mode in ("sasl", "mtls")]
        for f in admin.create_topics([*topics, NewTopic("secret", 1, 1)]).values():
            f.result(30)
        acls = []
        for c in CLIENTS:
            if c == "java":
                continue  # the Java client makes its own
            for principal in (f"User:{c}-svc", f"User:{c}"):
                for rtype, op in ((ResourceType.TOPIC, AclOperation.WRITE),
                                  (ResourceType.TOPIC, AclOperation.READ),
                                  (ResourceType.GROUP, AclOperation.READ)):
                    acls.append(AclBinding(rtype, f"{c}-", ResourcePatternType.PREFIXED, principal, "*",
                                           op, AclPermissionType.ALLOW))
        for f in admin.create_acls(acls).values():
            f.result(30)
        yield b
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def sasl_conf(b, user):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.sasl_port}",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(b.pki / "ca.pem"),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password(user),
    }


def mtls_conf(b, cert):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.mtls_port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(b.pki / "ca.pem"),
        "ssl.certificate.location": str(b.pki / f"{cert}.pem"),
        "ssl.key.location": str(b.pki / f"{cert}.key"),
    }


def values():
    return {f"v{i}" for i in range(N)}


def committed_total(b, group, topic):
    """The offsets `group` committed on `topic`, summed (asked as the admin)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(sasl_conf(b, "admin"))
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])
    result = admin.list_consumer_group_offsets([req])[group].result(30)
    return sum(max(tp.offset, 0) for tp in result.topic_partitions)


MODES = ["sasl", "mtls"]


def rdkafka_conf(b, client, mode):
    return sasl_conf(b, f"{client}-svc") if mode == "sasl" else mtls_conf(b, client)


@pytest.mark.parametrize("mode", MODES)
def test_confluent(broker, mode):
    from confluent_kafka import Consumer, KafkaError, Producer

    conf = rdkafka_conf(broker, "confluent", mode)
    topic = f"confluent-{mode}"
    p = Producer(conf)
    for i in range(N):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    failures = []
    p = Producer({**conf, "message.timeout.ms": 10000, "on_delivery": lambda err, msg: failures.append(err)})
    p.produce("secret", value=b"forged")
    p.flush(15)
    assert failures and failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failures

    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = set(), time.time() + 60
    while len(got) < N and time.time() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            assert not m.error(), m.error()
            got.add(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
    assert got == values()
    assert committed_total(broker, topic, topic) == N


@pytest.mark.parametrize("mode", MODES)
def test_kafka_python(broker, mode):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    b = broker
    topic = f"kafka-python-{mode}"
    if mode == "sasl":
        common = dict(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="kafka-python-svc",
                      sasl_plain_password=password("kafka-python-svc"))
    else:
        common = dict(bootstrap_servers=f"127.0.0.1:{b.mtls_port}", security_protocol="SSL",
                      ssl_certfile=str(b.pki / "kafka-python.pem"), ssl_keyfile=str(b.pki / "kafka-python.key"))
    common.update(ssl_cafile=str(b.pki / "ca.pem"), ssl_check_hostname=True)
    # kafka-python 3 is idempotent by default, like the Java client: WRITE on
    # a topic is what lets it get a producer id.
    p = KafkaProducer(**common, acks="all")
    for i in range(N):
        p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    p.flush(30)
    with pytest.raises(TopicAuthorizationFailedError):
        p.send("secret", value=b"forged").get(timeout=15)
    p.close()
    c = KafkaConsumer(topic, **common, group_id=topic, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=15000)
    got = set()
    for m in c:
        got.add(m.value.decode())
        if len(got) == N:
            break
    c.commit()
    c.close()
    assert got == values()
    assert committed_total(b, topic, topic) == N


@pytest.mark.parametrize("mode", MODES)
def test_aiokafka(broker, mode):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import TopicAuthorizationFailedError
    from aiokafka.helpers import create_ssl_context

    b = broker
    topic = f"aiokafka-{mode}"
    if mode == "sasl":
        common = dict(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="aiokafka-svc",
                      sasl_plain_password=password("aiokafka-svc"),
                      ssl_context=create_ssl_context(cafile=str(b.pki / "ca.pem")))
    else:
        common = dict(bootstrap_servers=f"127.0.0.1:{b.mtls_port}", security_protocol="SSL",
                      ssl_context=create_ssl_context(cafile=str(b.pki / "ca.pem"),
                                                     certfile=str(b.pki / "aiokafka.pem"),
                                                     keyfile=str(b.pki / "aiokafka.key")))

    async def run():
        p = AIOKafkaProducer(**common, acks="all", enable_idempotence=True)
        await p.start()
        try:
            for i in range(N):
                await p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
            await p.flush()
            refused = None
            try:
                await asyncio.wait_for(p.send_and_wait("secret", b"forged"), 20)
            except TopicAuthorizationFailedError as e:
                refused = e
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, **common, group_id=topic, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            got, deadline = set(), time.time() + 60
            while len(got) < N and time.time() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got |= {m.value.decode() for m in msgs}
            await c.commit()
        finally:
            await c.stop()
        return got, refused

    got, refused = asyncio.run(run())
    assert got == values()
    assert refused is not None
    assert committed_total(b, topic, topic) == N


@pytest.mark.parametrize("mode", MODES)
def test_kcat(broker, mode):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed")
    topic = f"kcat-{mode}"
    args = [kcat]
    for k, v in rdkafka_conf(broker, "kcat", mode).items():
        args += ["-b", v] if k == "bootstrap.servers" else ["-X", f"{k}={v}"]
    lines = "".join(f"v{i}\n" for i in range(N))
    out = subprocess.run([*args, "-P", "-t", topic, "-X", "acks=all"], input=lines,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # In a group (-G): kcat commits what it read when it stops.
    out = subprocess.run([*args, "-G", topic, "-X", "auto.offset.reset=earliest", "-c", str(N), "-q", topic],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == values()
    out = subprocess.run([*args, "-P", "-t", "secret", "-X", "message.timeout.ms=10000"], input="forged\n",
                         capture_output=True, text=True, timeout=60)
    assert "authorization failed" in out.stderr.lower(), out.stderr


@pytest.mark.parametrize("mode", MODES)
def test_kafkajs(broker, mode):
    node = shutil.which("node")
    assert node, "node is required for the KafkaJS tests"
    b = broker
    topic = f"kafkajs-{mode}"
    if mode == "sasl":
        bootstrap, user = f"127.0.0.1:{b.sasl_port}", "kafkajs-svc"
    else:
        bootstrap, user = f"127.0.0.1:{b.mtls_port}", "kafkajs"
    out = subprocess.run([node, str(JS / "secure.js"), bootstrap, mode, str(b.pki), user, password(user),
                          topic, topic, "secret", str(N)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["consumed"] == N, result
    assert result["committed"] == N, result
    assert result["forbidden"] == "TOPIC_AUTHORIZATION_FAILED", result


def test_java_client_and_admin_acls(broker):
    from java_support import run_java

    b = broker
    run = run_java("SecureChecks", f"127.0.0.1:{b.sasl_port}", f"127.0.0.1:{b.mtls_port}", b.pki, N)
    assert run.returncode == 0, run.report()
    assert run.step("acls")["described"] == 6, run.report()
    for mode in MODES:
        assert run.step(f"{mode}-produce")["acked"] == N, run.report()
        consumed = run.step(f"{mode}-consume")
        assert consumed["count"] == N and consumed["committed"] == N, run.report()
    assert run.step("denied")["error"] == "TopicAuthorizationException", run.report()
    deleted = run.step("delete-acls")
    assert deleted["deleted"] == 3, run.report()
    # Without an ACL left, the idempotent producer may be refused its
    # producer id (no WRITE on any topic) before its metadata is refused.
    assert deleted["after"] in ("TopicAuthorizationException", "ClusterAuthorizationException"), run.report()
