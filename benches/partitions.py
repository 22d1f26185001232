#!/usr/bin/env python3
"""Many partitions on one broker: what they cost.

    .venv/bin/python benches/partitions.py [counts...]   (default 1000 10000 20000)

For each count: starts a fresh `sluice` broker (release build) with the
open-file soft limit at Debian's default of 1024 (the hard limit as the
machine has it), creates one topic of that many partitions with one
CreateTopics request, writes one record to every partition (confluent-kafka
producer), then reports:

- creation time (the CreateTopics round trip);
- resident memory (VmRSS), open files (/proc/PID/fd) and memory maps
  (/proc/PID/maps) once idle;
- idle CPU: the broker's CPU time (/proc/PID/stat) over 10 s with no client;
- restart: SIGTERM to exit (stop), then start until a client's Metadata
  request sees every partition (start), and the records read back from a
  sample of partitions after it.

Needs `cargo build --release` and the venv `scripts/test.sh` makes (.venv).
Progress goes to stderr; the table to stdout.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target/release/sluice"))
SOFT_LIMIT = 1024
TICKS = os.sysconf("SC_CLK_TCK")


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def low_soft_limit():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SOFT_LIMIT, hard), hard))


def start(data, port, log):
    proc = subprocess.Popen(
        [BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
        preexec_fn=low_soft_limit,
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited: see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("broker did not start")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_all_partitions(boot, topic, n):
    admin = AdminClient({"bootstrap.servers": boot})
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            md = admin.list_topics(topic, timeout=30)
            t = md.topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == n:
                return
        except Exception:  # the broker may still be starting
            pass
        time.sleep(0.1)
    raise SystemExit("metadata never showed every partition")


def run(n):
    with tempfile.TemporaryDirectory() as work:
        data, log = Path(work) / "data", Path(work) / "broker.log"
        port = free_port()
        boot = f"127.0.0.1:{port}"
        proc = start(data, port, log)
        say(f"{n} partitions: creating")
        admin = AdminClient({"bootstrap.servers": boot, "socket.timeout.ms": 300000})
        t0 = time.time()
        fut = admin.create_topics(
            [NewTopic("many", n, 1)], operation_timeout=300, request_timeout=300
        )["many"]
        fut.result()
        created = time.time() - t0

        say(f"{n} partitions: one record to each")
        p = Producer({"bootstrap.servers": boot, "linger.ms": 50})
        for i in range(n):
            while True:
                try:
                    p.produce("many", value=b"v%d" % i, partition=i)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        left = p.flush(120)
        if left:
            raise SystemExit(f"{left} records not delivered")

        say(f"{n} partitions: idle for 10 s")
        time.sleep(2)
        c0 = cpu_seconds(proc.pid)
        time.sleep(10)
        idle_cpu = (cpu_seconds(proc.pid) - c0) / 10 * 100
        rss = rss_mib(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        maps = sum(1 for _ in open(f"/proc/{proc.pid}/maps"))
        limit = next(
            line.split()[3]
            for line in Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
            if line.startswith("Max open files")
        )

        say(f"{n} partitions: restart")
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        stopped = time.time() - t0
        t0 = time.time()
        proc = start(data, port, log)
        wait_all_partitions(boot, "many", n)
        started = time.time() - t0
        rss_after = rss_mib(proc.pid)
        fds_after = len(os.listdir(f"/proc/{proc.pid}/fd"))

        # The records are all there: a sample read back after the restart.
        sample = sorted({0, n // 3, n // 2, n - 1})
        cons = Consumer(
            {"bootstrap.servers": boot, "group.id": "bench", "enable.auto.commit": False}
        )
        cons.assign([TopicPartition("many", i, 0) for i in sample])
        got = {}
        deadline = time.time() + 30
        while len(got) < len(sample) and time.time() < deadline:
            m = cons.poll(1)
            if m is not None and not m.error():
                got[m.partition()] = m.value()
        cons.close()
        ok = all(got.get(i) == b"v%d" % i for i in sample)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        return {
            "partitions": n,
            "create_s": created,
            "rss_mib": rss,
            "open_files": fds,
            "maps": maps,
            "limit": limit,
            "idle_cpu_pct": idle_cpu,
            "stop_s": stopped,
            "start_s": started,
            "rss_after_restart_mib": rss_after,
            "open_files_after_restart": fds_after,
            "records_back": ok,
        }


def main():
    counts = [int(a) for a in sys.argv[1:]] or [1000, 10000, 20000]
    rows = [run(n) for n in counts]
    print(
        "| partitions | create (s) | RSS idle (MiB) | open files | maps | open-file limit "
        "(started at 1024) | idle CPU (% of a core) | stop (s) | start (s) | "
        "RSS / open files after restart | records read back |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['partitions']} | {r['create_s']:.1f} | {r['rss_mib']:.0f} | "
            f"{r['open_files']} | {r['maps']} | {r['limit']} | {r['idle_cpu_pct']:.1f} | "
            f"{r['stop_s']:.1f} | {r['start_s']:.1f} | "
            f"{r['rss_after_restart_mib']:.0f} / {r['open_files_after_restart']} | "
            f"{'yes' if r['records_back'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
