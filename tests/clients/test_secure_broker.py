"""The README's "Secure a broker" setup, with real clients: a SASL_SSL
listener with SCRAM-SHA-512, users added offline with `sluice scram add`,
Kafka's StandardAuthorizer with an admin super user, and least-privilege
ACLs for a producer service (WRITE on `orders`) and a consumer service
(READ on `orders` and on group `billing`). The consumer service reads
`orders` but gets TOPIC_AUTHORIZATION_FAILED producing to it or reading
another topic; a wrong password fails at once; a plaintext client on the
TLS port gets nothing. Certificates are made per run (never committed)."""

import shutil
import subprocess
import time

import pytest

from conftest import Broker, free_port
from test_tls import make_pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

USERS = {"admin": "admin-secret", "orders-svc": "orders-secret", "billing-svc": "billing-secret"}


@pytest.fixture
def secure_broker(tmp_path):
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    b = Broker(tmp_path)
    b.secure_port = free_port()
    b.pki = pki
    b.config_path = tmp_path / "sluice.toml"
    # The README's configuration, plus a loopback PLAINTEXT listener the
    # harness uses to see the broker is up (ACLs leave it nothing else).
    b.config_path.write_text(
        f'listeners = "PLAINTEXT://127.0.0.1:{b.port},SASL_SSL://127.0.0.1:{b.secure_port}"\n'
        '"inter.broker.listener.name" = "PLAINTEXT"\n'
        f'"ssl.keystore.location" = "{pki / "broker-store.pem"}"\n'
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-512"\n'
        '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"\n'
        '"super.users" = "User:admin"\n'
        '"group.initial.rebalance.delay.ms" = 0\n'
    )
    for user, password in USERS.items():
        out = subprocess.run(
            [b.bin, "--config", str(b.config_path), "scram", "add", "--data-dir", str(b.data_dir),
             "--user", user, "--password", password, "--mechanism", "SCRAM-SHA-512"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
    b.start()
    try:
        yield b
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def conf(b, user, password=None):
    return {
        "bootstrap.servers": f"127.0.0.1:{b.secure_port}",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(b.pki / "ca.pem"),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password or USERS[user],
    }


def test_least_privilege_services_over_sasl_ssl(secure_broker):
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                       NewTopic, ResourcePatternType, ResourceType)

    b = secure_broker
    admin = AdminClient(conf(b, "admin"))
    for f in admin.create_topics([NewTopic("orders", 3, 1), NewTopic("payments", 1, 1)]).values():
        f.result(30)

    def allow(principal, rtype, name, op):
        return AclBinding(rtype, name, ResourcePatternType.LITERAL, f"User:{principal}", "*", op,
                          AclPermissionType.ALLOW)

    acls = [
        allow("orders-svc", ResourceType.TOPIC, "orders", AclOperation.WRITE),
        allow("billing-svc", ResourceType.TOPIC, "orders", AclOperation.READ),
        allow("billing-svc", ResourceType.GROUP, "billing", AclOperation.READ),
    ]
    for f in admin.create_acls(acls).values():
        f.result(30)

    # The producer service writes its topic.
    errors = []
    p = Producer({**conf(b, "orders-svc"), "error_cb": errors.append})
    for i in range(100):
        p.produce("orders", key=f"o{i}".encode(), value=f"order-{i}".encode())
    assert p.flush(30) == 0, errors

    # The consumer service reads it in its group and commits.
    c = Consumer({**conf(b, "billing-svc"), "group.id": "billing", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["orders"])
    got, deadline = [], time.time() + 60
    while len(got) < 100 and time.time() < deadline:
        for m in c.consume(num_messages=100, timeout=0.5):
            assert not m.error(), m.error()
            got.append(m.value().decode())
    assert sorted(got) == sorted(f"order-{i}" for i in range(100))
    c.commit(asynchronous=False)
    c.close()

    # ...but may not write it,
    failures = []
    p = Producer({**conf(b, "billing-svc"), "message.timeout.ms": 10000,
                  "on_delivery": lambda err, msg: failures.append(err)})
    p.produce("orders", value=b"forged")
    p.flush(15)
    assert failures and failures[0] is not None
    assert failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failures

    # ...nor read another topic.
    c = Consumer({**conf(b, "billing-svc"), "group.id": "billing", "enable.auto.commit": False})
    c.subscribe(["payments"])
    seen, deadline = None, time.time() + 20
    while seen is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error():
            seen = m.error().code()
    c.close()
    assert seen == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # The producer service does not even see the other topic.
    md = AdminClient(conf(b, "orders-svc")).list_topics(timeout=15)
    assert "orders" in md.topics and "payments" not in md.topics

    # A wrong password fails at once.
    errors = []
    guess = AdminClient({**conf(b, "billing-svc", "guess"), "error_cb": errors.append})
    started = time.time()
    while not errors and time.time() - started < 10:
        guess.poll(0.1)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert time.time() - started < 5


def test_a_plaintext_client_on_the_tls_port_gets_nothing(secure_broker):
    from kafka import KafkaProducer

    with pytest.raises(Exception, match="(?i)bootstrap"):
        KafkaProducer(bootstrap_servers=f"127.0.0.1:{secure_broker.secure_port}", bootstrap_timeout_ms=4000)
    assert "TLS handshake failed" in secure_broker.log_tail(200)
