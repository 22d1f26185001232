"""The container image (Dockerfile) and the compose cluster (deploy/).

What needs no container engine always runs: the image's health check script
against a stand-in admin listener, the compose brokers' configuration files
against the real binary, and the compose and Prometheus files' consistency.
Building and running the image needs a working docker or podman (a CLI
whose daemon answers): without one that test is skipped, saying why;
scripts/test.sh prints which happened.

SLUICE_CONTAINER_ENGINE=docker|podman picks the engine; =none skips the
image test even when an engine works. The image build has its own time
limit, SLUICE_CONTAINER_BUILD_TIMEOUT seconds (default 3600).
"""

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, Broker, free_port

DEPLOY = ROOT / "deploy"
HEALTHCHECK = DEPLOY / "healthcheck.sh"


def container_engine():
    """(engine, None) for a docker or podman that answers, else (None, why)."""
    wanted = os.environ.get("SLUICE_CONTAINER_ENGINE", "")
    if wanted == "none":
        return None, "SLUICE_CONTAINER_ENGINE=none"
    why = []
    for name in [wanted] if wanted else ["docker", "podman"]:
        path = shutil.which(name)
        if not path:
            why.append(f"no {name} command")
            continue
        try:
            p = subprocess.run([path, "info"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            why.append(f"{name} info failed: {e}")
            continue
        if p.returncode == 0:
            return path, None
        last = (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[-1]
        why.append(f"{name} does not work here ({last})")
    return None, "; ".join(why)


# ---------------------------------------------------------------------------
# The health check script, against a stand-in admin listener.


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/health" else 404
        body = b"ok\n" if code == 200 else b"not ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(status):
    handler = type("H", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _check(*args, env=None):
    return subprocess.run(
        ["bash", str(HEALTHCHECK), *args],
        capture_output=True, text=True, timeout=20, env={**os.environ, **(env or {})},
    )


def test_healthcheck_passes_only_on_http_200():
    ok, failing = _serve(200), _serve(503)
    try:
        port = ok.server_address[1]
        assert _check(f"127.0.0.1:{port}").returncode == 0
        # As in the image: the address of SLUICE_ADMIN_LISTEN, every interface
        # asked on loopback.
        p = _check(env={"SLUICE_ADMIN_LISTEN": f"0.0.0.0:{port}"})
        assert p.returncode == 0, p.stderr
        p = _check(f"0.0.0.0:{failing.server_address[1]}")
        assert p.returncode == 1 and "503" in p.stderr, p
        p = _check(f"127.0.0.1:{free_port()}")
        assert p.returncode == 1 and "nothing listens" in p.stderr, p
    finally:
        ok.shutdown()
        failing.shutdown()


def test_healthcheck_gives_up_on_a_silent_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t0 = time.time()
        p = _check(f"127.0.0.1:{s.getsockname()[1]}")
        assert p.returncode == 1 and "answered 'nothing'" in p.stderr, p
        assert time.time() - t0 < 10


# ---------------------------------------------------------------------------
# The compose cluster's files.


def test_compose_brokers_configs_are_accepted(tmp_path):
    """Each deploy/config/broker-N.toml starts a broker: the same file with
    its listeners moved to free loopback ports (the compose addresses do not
    exist here) gets as far as listening for clients, with no configuration
    error."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["RUST_LOG"] = "info"
    for n in (1, 2, 3):
        text = (DEPLOY / "config" / f"broker-{n}.toml").read_text()
        assert f'"node.id" = {n}' in text
        ext = re.search(r"EXTERNAL://0\.0\.0\.0:(\d+)", text).group(1)
        assert f"EXTERNAL://localhost:{ext}" in text, "EXTERNAL advertises the published host port"
        assert f"INTERNAL://broker{n}:9092" in text
        ports = [free_port(), free_port()]
        local = (
            text.replace("0.0.0.0:9092", f"127.0.0.1:{ports[0]}")
            .replace(f"0.0.0.0:{ext}", f"127.0.0.1:{ports[1]}")
            .replace('"internal.listen" = "0.0.0.0:9093"', f'"internal.listen" = "127.0.0.1:{free_port()}"')
        )
        assert not any("0.0.0.0" in l for l in local.splitlines() if not l.startswith("#"))
        cfg = tmp_path / f"broker-{n}.toml"
        cfg.write_text(local)
        log = tmp_path / f"broker-{n}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [Broker(tmp_path).bin, "--config", str(cfg), "--data-dir", str(tmp_path / f"d{n}")],
                stdout=out, stderr=out, env=env,
            )
        try:
            # Both client listeners are bound once the configuration is
            # loaded (the broker then waits for its quorum, in vain here).
            deadline = time.time() + 15
            waiting = list(ports)
            while waiting and time.time() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5).close()
                    waiting.pop(0)
                except OSError:
                    time.sleep(0.1)
            assert proc.poll() is None, f"broker-{n}.toml refused ({proc.returncode}):\n{log.read_text()}"
            assert not waiting, f"ports {waiting} not bound:\n{log.read_text()}"
        finally:
            proc.kill()
            proc.wait(10)


def test_compose_runs_three_brokers_and_prometheus_scrapes_them():
    compose = (DEPLOY / "docker-compose.yml").read_text()
    prom = (DEPLOY / "prometheus.yml").read_text()
    voters = None
    for n in (1, 2, 3):
        cfg = (DEPLOY / "config" / f"broker-{n}.toml").read_text()
        v = re.search(r'"controller.quorum.voters" = "([^"]+)"', cfg).group(1)
        assert voters in (None, v), "every broker has the same voters"
        voters = v
        # Its voter address is its static address on the compose network.
        ip = dict(item.split("@") for item in v.split(","))[str(n)].rsplit(":", 1)[0]
        assert re.search(rf"broker{n}:\n(.*\n)*?\s+ipv4_address: {re.escape(ip)}\n", compose), (n, ip)
        assert f"SLUICE_CONFIG: /etc/sluice/broker-{n}.toml" in compose
        assert f"broker{n}-data:/var/lib/sluice" in compose
        ext = re.search(r"EXTERNAL://0\.0\.0\.0:(\d+)", cfg).group(1)
        assert f'"{ext}:{ext}"' in compose, "the EXTERNAL port is published as is"
        assert f"broker{n}:9644" in prom
    assert "prom/prometheus" in compose and "./prometheus.yml:/etc/prometheus/prometheus.yml" in compose
    assert "metrics_path: /metrics" in prom


def test_dockerfile_shape():
    """What the issue asks of the image, as written in the Dockerfile (the
    image test below checks it for real when an engine is there)."""
    d = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", d, re.M)) == 2, "multi-stage"
    assert re.search(r"^USER sluice", d, re.M), "non-root"
    assert re.search(r"^VOLUME /var/lib/sluice", d, re.M)
    assert re.search(r"^EXPOSE 9092 9644", d, re.M)
    assert "SLUICE_ADMIN_LISTEN=0.0.0.0:9644" in d
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"/usr/local/bin/sluice-healthcheck\"\]", d, re.M)
    assert "COPY deploy/healthcheck.sh /usr/local/bin/sluice-healthcheck" in d
    ignore = (ROOT / ".dockerignore").read_text().split()
    for path in ("target", ".venv", "**/node_modules", "tests/java/lib"):
        assert path in ignore, path


# ---------------------------------------------------------------------------
# The image itself, when a container engine works here.


def _run(engine, *args, timeout=120, check=True):
    p = subprocess.run([engine, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{Path(engine).name} {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def test_image_builds_runs_as_non_root_answers_and_is_healthy():
    engine, why = container_engine()
    if engine is None:
        pytest.skip(f"container test skipped: no working docker or podman ({why})")
    tag = f"sluice-test:{uuid.uuid4().hex[:8]}"
    build_timeout = int(os.environ.get("SLUICE_CONTAINER_BUILD_TIMEOUT", "3600"))
    _run(engine, "build", "-t", tag, str(ROOT), timeout=build_timeout)
    name = f"sluice-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        _run(engine, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9092",
             "-e", f"SLUICE_ADVERTISED_LISTENER=127.0.0.1:{port}", tag)
        uid = _run(engine, "exec", name, "id", "-u").stdout.strip()
        assert uid != "0", "the broker runs as a non-root user"
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        md = admin.list_topics(timeout=30)
        assert md.brokers, "the broker in the container answers Metadata"
        # The data volume is writable by that user.
        _run(engine, "exec", name, "sh", "-c", "touch /var/lib/sluice/.w && rm /var/lib/sluice/.w")
        # The health check of the image, as the engine runs it.
        _run(engine, "exec", name, "/usr/local/bin/sluice-healthcheck")
        deadline = time.time() + 90
        status = ""
        while time.time() < deadline:
            p = _run(engine, "inspect", "--format", "{{.State.Health.Status}}", name, check=False)
            status = p.stdout.strip()
            if status == "healthy":
                break
            time.sleep(2)
        assert status == "healthy", f"health: {status}\n{_run(engine, 'logs', name, check=False).stderr}"
    finally:
        _run(engine, "rm", "-f", "-v", name, check=False)
        _run(engine, "rmi", "-f", tag, check=False)
