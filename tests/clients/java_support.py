"""Runs the Java test programs of tests/java/src (the official Java client,
kafka-clients) and parses what they print: one JSON object a line on stdout.
scripts/test.sh fetches the jars into tests/java/lib and compiles the
programs into tests/java/classes; a test is skipped only when there is no
`java` at all, and fails when the jars or classes are missing."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import ROOT

JAVA_DIR = ROOT / "tests" / "java"
CLASSES = JAVA_DIR / "classes"
LIB = JAVA_DIR / "lib"

# Few GC threads on a 2-core machine; the client's log (slf4j-simple, stderr)
# with times, without the configuration dumps of every client it starts.
JVM_OPTS = [
    "-XX:+UseSerialGC",
    "-Xmx512m",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.utils.AppInfoParser=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.metrics=warn",
]


def java_command(main_class: str, *args) -> list:
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed")
    if not (CLASSES / f"{main_class}.class").exists() or not list(LIB.glob("kafka-clients-*.jar")):
        pytest.fail(
            f"the Java test programs are not built ({CLASSES}/{main_class}.class, {LIB}/kafka-clients-*.jar): "
            "run scripts/test.sh, which fetches the jars and compiles them"
        )
    classpath = f"{CLASSES}{os.pathsep}{LIB}/*"
    return [java, *JVM_OPTS, "-cp", classpath, main_class, *(str(a) for a in args)]


class JavaRun(NamedTuple):
    returncode: int
    lines: list  # the JSON objects printed on stdout, in order
    stdout: str
    stderr: str

    def events(self, name):
        return [e for e in self.lines if e.get("event") == name]

    def step(self, name):
        """The line of the AdminChecks step `name`."""
        found = [e for e in self.lines if e.get("step") == name]
        assert found, f"no step {name!r} in the output:\n{self.report()}"
        return found[-1]

    def report(self, stderr_lines: int = 60) -> str:
        """The exit code, the output lines other than records, and the end of
        the client's log: for assertion messages."""
        shown = [json.dumps(e) for e in self.lines if e.get("event") != "record"]
        tail = "\n".join(self.stderr.splitlines()[-stderr_lines:])
        return f"exit code {self.returncode}\n--- stdout (records left out) ---\n" + "\n".join(shown) + (
            f"\n--- stderr (last {stderr_lines} lines) ---\n{tail}"
        )


def _parse(returncode, stdout, stderr) -> JavaRun:
    lines = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return JavaRun(returncode, lines, stdout, stderr)


def run_java(main_class: str, *args, timeout: float = 120) -> JavaRun:
    """Runs `java -cp tests/java/classes:tests/java/lib/* main_class args` to
    its end (killed after `timeout` seconds, which fails the test)."""
    cmd = java_command(main_class, *args)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=JAVA_DIR)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        run = _parse(-1, text(e.stdout), text(e.stderr))
        pytest.fail(f"{main_class} did not end within {timeout}s\n{run.report()}")
    return _parse(out.returncode, out.stdout, out.stderr)


class JavaProcess:
    """A Java program running in the background (see `start_java`)."""

    def __init__(self, main_class, cmd, log_path: Path):
        self.main_class = main_class
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=JAVA_DIR)

    def wait(self, timeout: float = 120) -> JavaRun:
        try:
            stdout, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.main_class} did not end within {timeout}s; its log: {self.log_path}")
        self._log.close()
        return _parse(self.proc.returncode, stdout, self.log_path.read_text(errors="replace"))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def start_java(main_class: str, *args, log_path: Path) -> JavaProcess:
    """Starts a Java program in the background, its stderr to `log_path`
    (stdout is read by `wait()`, so it should print little)."""
    return JavaProcess(main_class, java_command(main_class, *args), log_path)


class InteractiveJava:
    """A Java program driven step by step: it prints one JSON object a line
    on stdout (`expect` waits for one with a given "event") and reads
    commands a line at a time on stdin (`send`). Its stderr goes to a
    temporary file shown when an expectation fails."""

    def __init__(self, main_class, cmd):
        import queue
        import tempfile
        import threading

        self.main_class = main_class
        self._err = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=JAVA_DIR
        )
        self._lines = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    self._lines.put(json.loads(line))
            self._lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def expect(self, event, timeout):
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = "timeout"
            if line is None or line == "timeout":
                self._err.flush()
                tail = "\n".join(open(self._err.name, errors="replace").read().splitlines()[-40:])
                pytest.fail(f"{self.main_class}: no {event!r} line ({line or 'exited'}); its log:\n{tail}")
            if line.get("event") == event:
                return line

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()
        os.unlink(self._err.name)


def run_java_interactive(main_class: str, *args) -> InteractiveJava:
    return InteractiveJava(main_class, java_command(main_class, *args))
