"""Real clients over TLS: a broker with a PLAINTEXT listener, an SSL
listener and a second SSL listener ("MTLS") that requires client
certificates, its principal from the certificate's subject mapped by
ssl.principal.mapping.rules. confluent-kafka (librdkafka), kafka-python and
kcat (librdkafka 2.0.2) produce and consume over SSL and mTLS; a client
without a certificate, or with one from an unknown CA, is refused on the
mTLS listener. Certificates are made by the openssl command line for each
test run (never committed)."""

import shutil
import subprocess
import time
import uuid

import pytest

from conftest import Broker, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

N = 500


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue_cert(d, name, subj, ca="ca", ext="extendedKeyUsage=clientAuth\n"):
    """A key and certificate `name`.key/.pem in d, signed by `ca`, and
    `name`-store.pem: the key and certificate in one file (a PEM keystore)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subj, cwd=d)
    (d / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext", cwd=d)
    (d / f"{name}-store.pem").write_text((d / f"{name}.key").read_text() + (d / f"{name}.pem").read_text())


def make_pki(d):
    """CA, a broker certificate for localhost/127.0.0.1, client certificates
    for alice (trusted CA) and mallory (another CA). Files in d."""
    for ca in ("ca", "evil-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN={ca}", cwd=d)
    issue_cert(d, "broker", "/CN=broker",
               ext="subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    issue_cert(d, "alice", "/O=Example/OU=billing/CN=Alice")
    issue_cert(d, "mallory", "/O=Example/OU=billing/CN=Mallory", ca="evil-ca")
    return d


@pytest.fixture
def tls_broker(tmp_path):
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    b = Broker(tmp_path)
    b.ssl_port = free_port()
    b.mtls_port = free_port()
    b.pki = pki
    b.config_path = tmp_path / "sluice.toml"
    b.config_path.write_text(
        f'listeners = "PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{b.ssl_port},'
        f'MTLS://127.0.0.1:{b.mtls_port}"\n'
        '"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL"\n'
        '"inter.broker.listener.name" = "PLAINTEXT"\n'
        '"ssl.keystore.type" = "PEM"\n'
        f'"ssl.keystore.location" = "{pki / "broker-store.pem"}"\n'
        '"ssl.truststore.type" = "PEM"\n'
        f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
        '"listener.name.mtls.ssl.client.auth" = "required"\n'
        '"listener.name.mtls.ssl.principal.mapping.rules" = "RULE:^CN=([^,]*),OU=billing,.*$/$1/L"\n'
        '"num.partitions" = 3\n'
        '"group.initial.rebalance.delay.ms" = 0\n'
    )
    b.start()
    try:
        yield b
    finally:
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


def rdkafka_conf(b, port, cert=None):
    conf = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(b.pki / "ca.pem"),
        "ssl.endpoint.identification.algorithm": "https",
    }
    if cert:
        conf["ssl.certificate.location"] = str(b.pki / f"{cert}.pem")
        conf["ssl.key.location"] = str(b.pki / f"{cert}.key")
    return conf


def confluent_roundtrip(conf, topic):
    from confluent_kafka import Consumer, Producer

    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    for i in range(N):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = set()
    deadline = time.time() + 60
    while len(got) < N and time.time() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            assert not m.error(), m.error()
            got.add(m.value().decode())
    c.close()
    assert got == {f"v{i}" for i in range(N)}


def test_confluent_over_ssl_and_metadata_names_the_ssl_listener(tls_broker):
    from confluent_kafka.admin import AdminClient

    b = tls_broker
    conf = rdkafka_conf(b, b.ssl_port)
    md = AdminClient(conf).list_topics(timeout=20)
    assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.ssl_port)]
    confluent_roundtrip(conf, "ssl-confluent")


def test_confluent_over_mtls(tls_broker):
    b = tls_broker
    confluent_roundtrip(rdkafka_conf(b, b.mtls_port, cert="alice"), "mtls-confluent")


@pytest.mark.parametrize("cert", [None, "mallory"])
def test_mtls_refuses_clients_without_a_trusted_certificate(tls_broker, cert):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    b = tls_broker
    admin = AdminClient({**rdkafka_conf(b, b.mtls_port, cert=cert), "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    assert "TLS handshake failed" in b.log_tail(200)


def kafka_python_roundtrip(b, port, topic, cert=None):
    from kafka import KafkaConsumer, KafkaProducer

    ssl = dict(
        bootstrap_servers=f"127.0.0.1:{port}",
        security_protocol="SSL",
        ssl_cafile=str(b.pki / "ca.pem"),
        ssl_check_hostname=True,
    )
    if cert:
        ssl.update(ssl_certfile=str(b.pki / f"{cert}.pem"), ssl_keyfile=str(b.pki / f"{cert}.key"))
    p = KafkaProducer(**ssl)
    for i in range(N):
        p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, group_id=f"g-{topic}", auto_offset_reset="earliest",
                      consumer_timeout_ms=15000, **ssl)
    got = set()
    for m in c:
        got.add(m.value.decode())
        if len(got) == N:
            break
    c.close()
    assert got == {f"v{i}" for i in range(N)}


def test_kafka_python_over_ssl(tls_broker):
    kafka_python_roundtrip(tls_broker, tls_broker.ssl_port, "ssl-kafka-python")


def test_kafka_python_over_mtls(tls_broker):
    kafka_python_roundtrip(tls_broker, tls_broker.mtls_port, "mtls-kafka-python", cert="alice")


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_over_mtls(tls_broker):
    b = tls_broker
    topic = f"kcat-{uuid.uuid4().hex[:6]}"
    common = ["-b", f"127.0.0.1:{b.mtls_port}", "-X", "security.protocol=ssl",
              "-X", f"ssl.ca.location={b.pki / 'ca.pem'}",
              "-X", f"ssl.certificate.location={b.pki / 'alice.pem'}",
              "-X", f"ssl.key.location={b.pki / 'alice.key'}"]
    lines = "".join(f"v{i}\n" for i in range(N))
    prod = subprocess.run(["kcat", "-P", "-t", topic, *common, "-X", "acks=all"],
                          input=lines, capture_output=True, text=True, timeout=60)
    assert prod.returncode == 0, prod.stderr
    cons = subprocess.run(["kcat", "-C", "-t", topic, "-o", "beginning", "-e", "-q", *common],
                          capture_output=True, text=True, timeout=60)
    assert cons.returncode == 0, cons.stderr
    assert sorted(cons.stdout.split()) == sorted(f"v{i}" for i in range(N))


def test_plaintext_client_on_the_tls_port_gets_a_closed_connection(tls_broker):
    from kafka import KafkaProducer

    b = tls_broker
    with pytest.raises(Exception, match="(?i)bootstrap"):
        KafkaProducer(bootstrap_servers=f"127.0.0.1:{b.ssl_port}", bootstrap_timeout_ms=4000)
    assert "TLS handshake failed" in b.log_tail(200)
