"""Structured logs: `--log-format json` (or SLUICE_LOG_FORMAT, or `log.format`
in the file) writes one JSON object per line with the fields of the text
format, and RUST_LOG filters either format."""

import json
import os
import subprocess

from confluent_kafka import Producer

from conftest import Broker


def log_lines(b: Broker):
    return [l for l in b.log_path.read_text(errors="replace").splitlines() if l.strip()]


def json_records(b: Broker):
    out = []
    for line in log_lines(b):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{b.log_tail()}")
    return out


def produce_to_internal_topic(b: Broker):
    """A produce the broker refuses with a warning inside the request span
    (api, client, peer from the span; topic from the handler)."""
    p = Producer({"bootstrap.servers": b.bootstrap, "client.id": "log-format-test", "message.send.max.retries": 0})
    errors = []
    p.produce("__consumer_offsets", b"v", partition=0, on_delivery=lambda err, _m: errors.append(err))
    p.flush(20)
    assert errors and errors[0] is not None, "the produce to an internal topic should fail"


def create_topic_twice(b: Broker):
    """The second CreateTopics is refused, logged with the reason as
    `detail` next to the line's own message."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("twice", num_partitions=1)])["twice"].result(timeout=20)
    try:
        admin.create_topics([NewTopic("twice", num_partitions=1)])["twice"].result(timeout=20)
    except Exception:
        pass
    else:
        raise AssertionError("the second creation should fail")


def run_stopped(b: Broker, action):
    """Starts the broker, runs `action`, stops it (SIGTERM): its log is then
    complete."""
    from confluent_kafka.admin import AdminClient

    b.start()
    try:
        # Serving requests: its SIGTERM handler is in place too.
        AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=20)
        action(b)
    finally:
        b.stop()


def test_json_lines_carry_level_message_and_request_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info,sluice::connection=debug")
    b = Broker(tmp_path, extra_args=["--log-format", "json"])
    run_stopped(b, lambda b: (produce_to_internal_topic(b), create_topic_twice(b)))
    records = json_records(b)
    assert records, "no log line at all"
    for r in records:
        assert r["level"] in ("ERROR", "WARN", "INFO", "DEBUG", "TRACE"), r
        assert isinstance(r.get("message"), str) and r["message"], r
        assert isinstance(r.get("timestamp"), str) and isinstance(r.get("target"), str), r
    assert any(r["message"] == "starting sluice" and "data_dir" in r for r in records), records[:5]
    # A debug line of the connection (the RUST_LOG directive for that target).
    assert any(r["level"] == "DEBUG" and r["target"] == "sluice::connection" and "peer" in r for r in records)
    refused = [r for r in records if r["message"] == "produce to an internal topic refused"]
    assert refused, f"no refusal line:\n{b.log_tail()}"
    r = refused[0]
    assert r["level"] == "WARN" and r["topic"] == "__consumer_offsets"
    span = r["span"]
    assert span["name"] == "request"
    assert span["api"] == "Produce"
    assert isinstance(span["v"], int) and isinstance(span["corr"], int)
    assert span["client"] == "log-format-test"
    assert span["peer"].startswith("127.0.0.1:")
    assert r["spans"][-1] == span
    # An event's fields never hide the line's message.
    dup = [r for r in records if r["message"] == "topic not created"]
    assert dup and dup[0]["topic"] == "twice" and "exists" in dup[0]["detail"], dup
    assert dup[0]["span"]["api"] == "CreateTopics"


def test_text_is_the_default_with_the_same_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info")
    monkeypatch.delenv("SLUICE_LOG_FORMAT", raising=False)
    b = Broker(tmp_path)
    run_stopped(b, produce_to_internal_topic)
    text = b.log_path.read_text(errors="replace")
    assert "\x1b[" not in text, "no color codes in a log file"
    line = next(l for l in text.splitlines() if "produce to an internal topic refused" in l)
    for field in ('request{api="Produce"', "corr=", 'client="log-format-test"', "peer=127.0.0.1:", "topic=__consumer_offsets"):
        assert field in line, (field, line)
    for l in log_lines(b):
        assert not l.startswith("{"), l


def test_env_variable_and_config_key_choose_json(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "info")
    monkeypatch.setenv("SLUICE_LOG_FORMAT", "json")
    (tmp_path / "env").mkdir()
    b = Broker(tmp_path / "env")
    run_stopped(b, lambda _b: None)
    assert any(r["message"] == "starting sluice" for r in json_records(b))

    monkeypatch.delenv("SLUICE_LOG_FORMAT")
    (tmp_path / "file").mkdir()
    b = Broker(tmp_path / "file", config='"log.format" = "json"\n')
    run_stopped(b, lambda _b: None)
    assert any(r["message"] == "starting sluice" for r in json_records(b))

    # The flag wins over the file.
    (tmp_path / "flag").mkdir()
    b = Broker(tmp_path / "flag", config='"log.format" = "json"\n', extra_args=["--log-format", "text"])
    run_stopped(b, lambda _b: None)
    assert "starting sluice" in b.log_path.read_text()
    assert not any(l.startswith("{") for l in log_lines(b))


def test_rust_log_filters_json_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "warn")
    b = Broker(tmp_path, extra_args=["--log-format", "json"])
    run_stopped(b, produce_to_internal_topic)
    records = json_records(b)
    assert all(r["level"] in ("WARN", "ERROR") for r in records), records
    assert not any(r["message"] == "starting sluice" for r in records)
    assert any(r["message"] == "produce to an internal topic refused" for r in records)

    # A directive for one target only: nothing from the others.
    (tmp_path / "only").mkdir()
    monkeypatch.setenv("RUST_LOG", "off,sluice::connection=debug")
    b = Broker(tmp_path / "only", extra_args=["--log-format", "json"])
    run_stopped(b, produce_to_internal_topic)
    records = json_records(b)
    assert records and all(r["target"] == "sluice::connection" for r in records), records


def test_bad_log_format_is_refused_with_exit_code_2(tmp_path):
    b = Broker(tmp_path)
    env = {**os.environ}
    env.pop("SLUICE_LOG_FORMAT", None)
    p = subprocess.run(
        [b.bin, "--data-dir", str(tmp_path / "d"), "--log-format", "xml"],
        capture_output=True, text=True, timeout=20, env=env,
    )
    assert p.returncode == 2, p
    assert "invalid value 'xml' for '--log-format" in p.stderr and "[possible values: text, json]" in p.stderr, p.stderr

    p = subprocess.run(
        [b.bin, "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=20, env={**env, "SLUICE_LOG_FORMAT": "yaml"},
    )
    assert p.returncode == 2, p
    assert "invalid value 'yaml'" in p.stderr, p.stderr

    cfg = tmp_path / "bad.toml"
    cfg.write_text('"log.format" = "xml"\n')
    p = subprocess.run(
        [b.bin, "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
        capture_output=True, text=True, timeout=20, env=env,
    )
    assert p.returncode == 2, p
    assert "invalid configuration in" in p.stderr and "xml" in p.stderr and "json" in p.stderr, p.stderr
