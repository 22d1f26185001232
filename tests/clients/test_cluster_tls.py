"""Three brokers whose internal listeners (Raft and the brokers' own Kafka
requests) run mutual TLS: `inter.broker.listener.name` names an SSL
listener, so every broker presents its certificate to the others and
requires theirs, checked against the trust store. Clients use the PLAINTEXT
listener. A topic with replication factor 3 is produced and consumed with
confluent-kafka, its leader is killed and a new one elected, and what was
acknowledged is all there; a plaintext Raft hello, and a TLS client whose
certificate comes from another CA, are closed by the internal listener.

The proxies in front of the internal listeners forward TLS bytes they
cannot read: every connection counts as from an unknown sender (cutting a
node then only cuts the connections to it). Certificates are made by the
openssl command line for each run (never committed)."""

import re
import shutil
import socket
import ssl
import struct
import time

import pytest
from confluent_kafka import Consumer, Producer

from cluster_support import Cluster
from test_tls import issue_cert, openssl

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI"),
]

N = 300


def make_pki(d):
    """A CA and a broker certificate it signs (127.0.0.1 and localhost, for
    server and client authentication), and an intruder's certificate from
    another CA."""
    for ca in ("ca", "evil-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN={ca}", cwd=d)
    ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    issue_cert(d, "broker", "/CN=broker", ext=ext)
    issue_cert(d, "intruder", "/CN=intruder", ca="evil-ca", ext=ext)
    return d


@pytest.fixture
def tls_cluster(tmp_path):
    pki = make_pki(_mkdir(tmp_path / "pki"))
    config = (
        # --listen sets the PLAINTEXT listener's address; the SSL one takes
        # any free port (only the internal listener uses its settings here).
        'listeners = "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"\n'
        '"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,SSL:SSL"\n'
        '"inter.broker.listener.name" = "SSL"\n'
        '"ssl.keystore.type" = "PEM"\n'
        f'"ssl.keystore.location" = "{pki / "broker-store.pem"}"\n'
        '"ssl.truststore.type" = "PEM"\n'
        f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
    )
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    c = Cluster(nodes, config=config)
    c.pki = pki
    try:
        try:
            c.start()
            c.create_topic("cluster-ready-probe", 1, 3)
        except BaseException:
            for n, b in c.brokers.items():
                print(f"--- broker {n} log (tail) ---\n{b.log_tail()}")
            raise
        yield c
        crashed = c.crashed()
        assert not crashed, f"brokers exited on their own: {crashed}"
    finally:
        c.shutdown()


def _mkdir(p):
    p.mkdir()
    return p


def produce(bootstrap, topic, values):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000})
    failed = []
    for v in values:
        p.produce(topic, value=v.encode(), on_delivery=lambda err, msg: err and failed.append(err))
    assert p.flush(40) == 0
    assert not failed, failed[:5]


def consume(bootstrap, topic, want, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(set(got)) < len(want) and time.time() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            if m.error():
                continue
            got.append(m.value().decode())
    c.close()
    assert set(got) == set(want), f"missing {len(set(want) - set(got))}"


def internal_port(c, node):
    return c.proxies[node].target_port


def closed(sock, within=5.0):
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(256):
                return True
    except (ConnectionError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


def test_replication_and_failover_over_inter_broker_mutual_tls(tls_cluster):
    c = tls_cluster
    for n, b in c.brokers.items():
        log = re.sub(r"\x1b\[[0-9;]*m", "", b.log_path.read_text(errors="replace"))
        assert "mutual_tls=true" in log, f"node {n} did not start its internal listener with mutual TLS"
    topic = "orders"
    c.create_topic(topic, partitions=3, rf=3)
    first = [f"a{i}" for i in range(N)]
    produce(c.bootstrap, topic, first)
    consume(c.bootstrap, topic, first, "g1")

    # Every connection between brokers went through TLS: no proxy saw a
    # hello in clear.
    assert c.net.unknown_hellos > 0
    assert not c.net.kafka_links

    leader, _ = c.leader(topic, 0)
    c.kill9(leader)
    rest = [n for n in c.ids if n != leader]
    new, _, waited = c.wait_new_leader(topic, 0, leader, rest)
    print(f"\nleader {leader} killed; {new} leads after {waited:.2f}s")
    survivors = ",".join(c.brokers[n].bootstrap for n in rest)
    second = [f"b{i}" for i in range(N)]
    produce(survivors, topic, second)
    consume(survivors, topic, first + second, "g2")


def test_internal_listener_refuses_plaintext_and_other_cas(tls_cluster):
    c = tls_cluster
    port = internal_port(c, 1)
    # A Raft hello in clear from a would-be node 9, then a frame.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"SLRT" + struct.pack(">HQ", 1, 9) + struct.pack(">II", 4, 0))
    assert closed(s)
    s.close()
    # TLS with a certificate of another CA.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(c.pki / "ca.pem")
    ctx.load_cert_chain(c.pki / "intruder.pem", c.pki / "intruder.key")
    raw = socket.create_connection(("127.0.0.1", port))
    try:
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        t.sendall(b"SLRT" + struct.pack(">HQ", 1, 9))
        assert closed(t)
    except (ssl.SSLError, ConnectionError):
        pass
    # Without a certificate.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(c.pki / "ca.pem")
    raw = socket.create_connection(("127.0.0.1", port))
    try:
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        t.sendall(b"SLKF" + struct.pack(">HQ", 1, 9))
        assert closed(t)
    except (ssl.SSLError, ConnectionError):
        pass
    time.sleep(0.5)
    assert "TLS handshake failed" in c.brokers[1].log_tail(400)
    # The cluster goes on.
    produce(c.bootstrap, "after-intruders", ["x"])
