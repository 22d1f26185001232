"""The admin listener with real tools: a real Prometheus (Debian's package,
started here on loopback) scrapes `/metrics` while confluent-kafka produces
and a consumer group commits part of it, and PromQL finds Kafka's series
(`kafka_server_brokertopicmetrics_*persec`, the controller and replica
manager gauges) and the group's lag (`kafka_consumergroup_lag`) with the
values the test produced and consumed. `/health` and `/ready` answer 200,
unknown paths 404, other methods 405; a thousand concurrent scrapes, and
idle connections that never send a request, neither fail nor hold up the
Kafka listener."""

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import create_topic, free_port, running_broker

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
N = 2000
CONSUMED = 1200
VALUE = 100


def http(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path, '"group.initial.rebalance.delay.ms" = 0\n') as b:
        yield b


class Prometheus:
    def __init__(self, tmp_path, target_port):
        self.port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: sluice\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if http(self.port, "/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not start")

    def query(self, promql):
        status, _, body = http(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, body
        return [(r["metric"], float(r["value"][1])) for r in json.loads(body)["data"]["result"]]

    def value_when(self, promql, ok, timeout=30):
        """The query's single value, once `ok(value)` holds (Prometheus scrapes every second)."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            result = self.query(promql)
            if len(result) == 1:
                last = result[0][1]
                if ok(last):
                    return last
            time.sleep(0.5)
        raise AssertionError(f"{promql}: last value {last}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="scripts/test.sh installs Debian's prometheus")
def test_prometheus_sees_kafka_series_and_group_lag(broker, tmp_path):
    prom = Prometheus(tmp_path, broker.admin_port)
    try:
        assert prom.value_when('up{job="sluice"}', lambda v: v == 1) == 1
        conf = {"bootstrap.servers": broker.bootstrap}
        admin = AdminClient(conf)
        for f in admin.create_topics([NewTopic("metered", 3, 1)]).values():
            f.result(30)
        # A first scrape with nothing produced yet: the counter starts at 0.
        prom.value_when('kafka_server_brokertopicmetrics_messagesinpersec{topic="metered"}', lambda v: v == 0)

        p = Producer({**conf, "linger.ms": 5})
        for i in range(N):
            p.produce("metered", key=f"k{i}".encode(), value=b"x" * VALUE)
        assert p.flush(30) == 0

        # A group reads CONSUMED records and commits exactly those.
        c = Consumer({**conf, "group.id": "lagging", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["metered"])
        last, got, deadline = {}, 0, time.time() + 60
        while got < CONSUMED and time.time() < deadline:
            for m in c.consume(num_messages=CONSUMED - got, timeout=0.5):
                assert not m.error(), m.error()
                last[m.partition()] = m.offset()
                got += 1
        assert got == CONSUMED
        # Every partition committed (offset 0 where nothing was read).
        c.commit(offsets=[TopicPartition("metered", p, last.get(p, -1) + 1) for p in range(3)],
                 asynchronous=False)
        c.close()

        messages = prom.value_when('kafka_server_brokertopicmetrics_messagesinpersec{topic="metered"}',
                                   lambda v: v == N)
        assert messages == N
        # Bytes in: the batches as sent, payload plus Kafka's record and
        # batch framing (a few dozen bytes a record at most).
        bytes_in = prom.value_when('kafka_server_brokertopicmetrics_bytesinpersec{topic="metered"}',
                                   lambda v: v >= N * VALUE)
        assert N * VALUE < bytes_in < N * (VALUE + 40)
        # The rate over the run: what was produced, from zero.
        grown = prom.value_when(
            'max_over_time(kafka_server_brokertopicmetrics_bytesinpersec{topic="metered"}[5m])'
            ' - min_over_time(kafka_server_brokertopicmetrics_bytesinpersec{topic="metered"}[5m])',
            lambda v: v == bytes_in)
        assert grown == bytes_in
        assert prom.value_when('rate(kafka_server_brokertopicmetrics_bytesinpersec{topic="metered"}[1m])',
                               lambda v: v > 0) > 0
        # The log holds exactly what came in.
        assert prom.value_when('sum(kafka_log_log_size{topic="metered"})', lambda v: v == bytes_in) == bytes_in
        # The total has every topic in it.
        assert prom.value_when('kafka_server_brokertopicmetrics_messagesinpersec{topic=""}',
                               lambda v: v >= N) >= N
        # Bytes out: at least what the group read.
        assert prom.value_when('kafka_server_brokertopicmetrics_bytesoutpersec{topic="metered"}',
                               lambda v: v >= CONSUMED * VALUE) >= CONSUMED * VALUE

        # The group's lag, computed on the broker.
        lag = prom.value_when('sum(kafka_consumergroup_lag{consumergroup="lagging",topic="metered"})',
                              lambda v: v == N - CONSUMED)
        assert lag == N - CONSUMED
        assert prom.value_when('sluice_consumergroup_lag{consumergroup="lagging"}',
                               lambda v: v == N - CONSUMED) == N - CONSUMED
        assert prom.value_when('sluice_consumergroup_max_lag{consumergroup="lagging"}', lambda v: v > 0) <= N - CONSUMED

        # Kafka's broker gauges, as dashboards chart them.
        assert prom.value_when("kafka_controller_kafkacontroller_activecontrollercount", lambda v: v == 1) == 1
        assert prom.value_when("kafka_server_replicamanager_underreplicatedpartitions", lambda v: v == 0) == 0
        assert prom.value_when('sum(kafka_network_requestmetrics_requests_total{request="Produce"})',
                               lambda v: v >= 1) >= 1
        assert prom.value_when('sum(sluice_request_duration_seconds_count{request="Fetch"})', lambda v: v >= 1) >= 1
        assert prom.value_when('sum(sluice_request_stage_duration_seconds_count{request="Produce",stage="local"})',
                               lambda v: v >= 1) >= 1
        assert prom.value_when("process_resident_memory_bytes", lambda v: v > 0) > 0

        # docs/monitoring: the alert rules load, and every dashboard query
        # is valid PromQL over these series (and finds data where the run
        # made some).
        out = subprocess.run(["promtool", "check", "rules", str(MONITORING / "alerts.yml")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
        empty = []
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if not prom.query(target["expr"]):
                    empty.append(panel["title"])
        assert set(empty) <= {"Rejected bytes / s", "Offline partitions", "Errors / s per API and error",
                              "Raft commit p99", "Produce p99 per stage", "p99 request latency per API",
                              "fsync p99", "CPU"}, empty
    finally:
        prom.stop()


def test_every_series_has_help_and_errors_are_counted(broker):
    # An error to count: a fetch of a partition that does not exist.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
    c.assign([TopicPartition("missing-topic", 0, 0)])
    c.poll(2)
    c.close()
    status, headers, text = http(broker.admin_port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    types = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    assert types and types == helps
    for name in ["kafka_server_brokertopicmetrics_messagesinpersec", "kafka_server_brokertopicmetrics_bytesinpersec",
                 "kafka_server_brokertopicmetrics_bytesoutpersec",
                 "kafka_controller_kafkacontroller_activecontrollercount",
                 "kafka_server_replicamanager_underreplicatedpartitions", "sluice_fsync_duration_seconds"]:
        assert name in types, name
    errors = [line for line in text.splitlines() if line.startswith("kafka_network_requestmetrics_errors_total")]
    assert any('error="UNKNOWN_TOPIC_OR_PARTITION"' in line for line in errors), errors


def test_topic_labels_can_be_switched_off(tmp_path):
    with running_broker(tmp_path, '"metrics.topic.labels.enable" = false\n') as b:
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(10):
            p.produce("quiet", value=f"v{i}".encode())
        assert p.flush(30) == 0
        series = scrape(b.admin_port)
        assert series["kafka_server_brokertopicmetrics_messagesinpersec"] == 10
        labelled = [s for s in series if 'topic="' in s or 'partition="' in s]
        assert labelled == []


def test_retention_cleaner_and_listener_counters(tmp_path):
    config = '"log.retention.check.interval.ms" = 200\n"log.cleaner.backoff.ms" = 200\n'
    with running_broker(tmp_path, config) as b:
        small = {"segment.bytes": "16384"}
        create_topic(b.bootstrap, "expiring", 1, {**small, "retention.ms": "1000"})
        create_topic(b.bootstrap, "compacted", 1,
                     {**small, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        # Many small batches, so both logs roll many 16 KiB segments.
        for i in range(2000):
            p.produce("expiring", value=b"x" * VALUE)
            p.produce("compacted", key=f"k{i % 10}".encode(), value=b"y" * VALUE)
            if i % 50 == 49:
                assert p.flush(30) == 0
        # The producer is still connected: one connection at least, and
        # every byte it sent counted on the listener.
        series = scrape(b.admin_port)
        assert series['sluice_connections{listener="PLAINTEXT"}'] >= 1
        assert series['sluice_network_received_bytes_total{listener="PLAINTEXT"}'] > 2 * 2000 * VALUE
        assert series['sluice_network_sent_bytes_total{listener="PLAINTEXT"}'] > 0
        # Old segments of "expiring" go; the cleaner rewrites "compacted".
        wait_for("retention deleted segments",
                 lambda: scrape(b.admin_port).get("sluice_retention_deleted_segments_total", 0) >= 1)
        wait_for("the cleaner compacted",
                 lambda: scrape(b.admin_port).get("sluice_cleaner_passes_total", 0) >= 1)
        series = scrape(b.admin_port)
        assert series["sluice_retention_reclaimed_bytes_total"] > 0
        assert series["sluice_cleaner_reclaimed_bytes_total"] > 0
        assert series["sluice_retention_passes_total"] >= 1


def test_health_ready_and_bad_requests(broker):
    port = broker.admin_port
    assert http(port, "/health")[0] == 200
    assert http(port, "/ready")[0] == 200
    assert http(port, "/nope")[0] == 404
    status, headers, _ = http(port, "/metrics", method="POST")
    assert status == 405 and "GET" in headers["Allow"]
    # Garbage gets 400 and a closed connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")


def test_a_thousand_scrapes_and_idle_connections_do_not_hold_up_kafka(broker):
    port = broker.admin_port
    # Connections that never send a request.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    results, lock = [], threading.Lock()

    def scrape():
        try:
            status = http(port, "/metrics")[0]
        except OSError as e:
            status = repr(e)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=scrape) for _ in range(1000)]
    for t in threads:
        t.start()
    # Meanwhile the Kafka listener serves a producer.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce("busy", value=f"v{i}".encode())
    assert p.flush(30) == 0
    for t in threads:
        t.join(60)
    for s in idle:
        s.close()
    assert len(results) == 1000
    assert all(r == 200 for r in results), {r for r in results if r != 200}


def scrape(port):
    """`/metrics` as {series with labels: value} (comments left out)."""
    out = {}
    for line in http(port, "/metrics")[2].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.mark.timeout(150)
def test_in_a_cluster_one_controller_and_health_follows_the_quorum(tmp_path):
    from cluster_support import Cluster

    c = Cluster(tmp_path)
    c.start()
    try:
        c.create_topic("replicated", partitions=3, rf=3)
        ports = {n: b.admin_port for n, b in c.brokers.items()}
        active = "kafka_controller_kafkacontroller_activecontrollercount"
        under = "kafka_server_replicamanager_underreplicatedpartitions"
        wait_for("one active controller",
                 lambda: sum(scrape(p).get(active, 0) for p in ports.values()) == 1)
        wait_for("every broker healthy and ready",
                 lambda: all(http(p, "/health")[0] == 200 and http(p, "/ready")[0] == 200 for p in ports.values()))
        wait_for("every partition replicated",
                 lambda: sum(scrape(p).get(under, -1) for p in ports.values()) == 0)
        assert sum(scrape(p)["kafka_server_replicamanager_leadercount"] for p in ports.values()) >= 3
        # Each replica saw its group's first leader.
        assert sum(scrape(p)["sluice_raft_leader_changes_total"] for p in ports.values()) >= 9

        # Cut off from the others, broker 3 says so on /health; the leaders
        # among the others count its replicas out of reach.
        c.net.isolate(3)
        wait_for("broker 3 unhealthy", lambda: http(ports[3], "/health")[0] == 503)
        assert "cut off" in http(ports[3], "/health")[2]
        assert http(ports[3], "/ready")[0] == 503
        assert all(http(ports[n], "/health")[0] == 200 for n in (1, 2))
        wait_for("under-replicated partitions on the majority side",
                 lambda: sum(scrape(ports[n]).get(under, 0) for n in (1, 2)) >= 1)
        c.net.heal()
        wait_for("broker 3 healthy again", lambda: http(ports[3], "/health")[0] == 200)
        wait_for("replicated again", lambda: sum(scrape(p).get(under, -1) for p in ports.values()) == 0)
    finally:
        c.shutdown()
