#!/usr/bin/env python3
"""Many partitions on one broker, or on a three-broker cluster: what they cost.

    .venv/bin/python benches/partitions.py [--brokers 3] [counts...]
                                            (default 1000 10000 20000)

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

With `--brokers 3`, three brokers on loopback form a cluster (each its own
folder, client port and internal port), the topic has replication factor 3
(every broker holds a replica of every partition), the producer uses
acks=all, and the figures are per broker (RSS, open files, maps, idle CPU:
the three brokers' mean, and their sum for the CPU) with stop and start for
the whole cluster.

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

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
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


def launch(data, port, log, extra=()):
    return subprocess.Popen(
        [BIN, "--listen", f"127.0.0.1:{port}", "--data-dir", str(data), "--admin-listen", "", *extra],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
        preexec_fn=low_soft_limit,
    )


def wait_listening(proc, port, log):
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited: see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("broker did not start")


class Brokers:
    """One broker, or `count` brokers forming a cluster, each with its own
    folder, log and ports under `work`."""

    def __init__(self, work, count):
        self.ids = list(range(1, count + 1))
        self.ports = {i: free_port() for i in self.ids}
        self.data = {i: Path(work) / f"data-{i}" for i in self.ids}
        self.logs = {i: Path(work) / f"broker-{i}.log" for i in self.ids}
        self.extra = {i: [] for i in self.ids}
        if count > 1:
            internal = {i: free_port() for i in self.ids}
            voters = ",".join(f"{i}@127.0.0.1:{internal[i]}" for i in self.ids)
            for i in self.ids:
                self.extra[i] = [
                    "--node-id", str(i),
                    "--controller-voters", voters,
                    "--internal-listen", f"127.0.0.1:{internal[i]}",
                ]
        self.procs = {}
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def start(self):
        # Together: a lone node of a cluster waits for its quorum.
        for i in self.ids:
            self.procs[i] = launch(self.data[i], self.ports[i], self.logs[i], self.extra[i])
        for i in self.ids:
            wait_listening(self.procs[i], self.ports[i], self.logs[i])

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            p.wait(timeout=600)

    def pids(self):
        return [p.pid for p in self.procs.values()]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_all_partitions(boot, topic, n):
    """Until a client's Metadata shows every partition with a leader."""
    admin = AdminClient({"bootstrap.servers": boot})
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            md = admin.list_topics(topic, timeout=30)
            t = md.topics.get(topic)
            if (
                t is not None
                and t.error is None
                and len(t.partitions) == n
                and all(p.leader >= 0 and p.error is None for p in t.partitions.values())
            ):
                return
        except Exception:  # the broker may still be starting
            pass
        time.sleep(0.1)
    raise SystemExit("metadata never showed every partition with a leader")


def mean(xs):
    return sum(xs) / len(xs)


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def run(n, count):
    with tempfile.TemporaryDirectory() as work:
        brokers = Brokers(work, count)
        try:
            return measure(n, count, brokers)
        finally:
            for p in brokers.procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()


def measure(n, count, brokers):
    """Creates, fills, idles, restarts; the figures of one row."""
    boot = brokers.bootstrap
    brokers.start()
    rf = 3 if count > 1 else 1
    say(f"{n} partitions × RF {rf} on {count} broker(s): creating")
    admin = AdminClient({"bootstrap.servers": boot, "socket.timeout.ms": 300000})
    while True:
        t0 = time.time()
        fut = admin.create_topics(
            [NewTopic("many", n, rf)], operation_timeout=300, request_timeout=300
        )["many"]
        try:
            fut.result()
            break
        except KafkaException as e:
            # Until every broker of a fresh cluster has registered.
            if e.args[0].code() != KafkaError.INVALID_REPLICATION_FACTOR:
                raise
            time.sleep(0.2)
    wait_all_partitions(boot, "many", n)
    created = time.time() - t0

    say(f"{n} partitions: one record to each")
    p = Producer({"bootstrap.servers": boot, "linger.ms": 50, "acks": "all"})
    for i in range(n):
        while True:
            try:
                p.produce("many", value=b"v%d" % i, partition=i)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(300)
    if left:
        raise SystemExit(f"{left} records not delivered")

    say(f"{n} partitions: idle for 10 s (after 5 s to settle)")
    time.sleep(5)
    pids = brokers.pids()
    c0 = [cpu_seconds(pid) for pid in pids]
    time.sleep(10)
    cpu = [(cpu_seconds(pid) - c) / 10 * 100 for pid, c in zip(pids, c0)]
    rss = mean([rss_mib(pid) for pid in pids])
    fds = mean([open_files(pid) for pid in pids])
    maps = mean([sum(1 for _ in open(f"/proc/{pid}/maps")) for pid in pids])
    limit = next(
        line.split()[3]
        for line in Path(f"/proc/{pids[0]}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )

    say(f"{n} partitions: restart")
    t0 = time.time()
    brokers.stop()
    stopped = time.time() - t0
    t0 = time.time()
    brokers.start()
    wait_all_partitions(boot, "many", n)
    started = time.time() - t0
    pids = brokers.pids()
    rss_after = mean([rss_mib(pid) for pid in pids])
    fds_after = mean([open_files(pid) for pid in pids])

    # The records are all there: a sample read back after the restart.
    sample = sorted({0, n // 3, n // 2, n - 1})
    cons = Consumer(
        {"bootstrap.servers": boot, "group.id": "bench", "enable.auto.commit": False}
    )
    cons.assign([TopicPartition("many", i, 0) for i in sample])
    got = {}
    deadline = time.time() + 60
    while len(got) < len(sample) and time.time() < deadline:
        m = cons.poll(1)
        if m is not None and not m.error():
            got[m.partition()] = m.value()
    cons.close()
    ok = all(got.get(i) == b"v%d" % i for i in sample)
    brokers.stop()
    return {
        "partitions": n,
        "create_s": created,
        "rss_mib": rss,
        "open_files": fds,
        "maps": maps,
        "limit": limit,
        "idle_cpu_pct": mean(cpu),
        "idle_cpu_sum": sum(cpu),
        "stop_s": stopped,
        "start_s": started,
        "rss_after_restart_mib": rss_after,
        "open_files_after_restart": fds_after,
        "records_back": ok,
    }


def main():
    args = sys.argv[1:]
    count = 1
    if args[:1] == ["--brokers"]:
        count = int(args[1])
        args = args[2:]
    counts = [int(a) for a in args] or [1000, 10000, 20000]
    per = " per broker" if count > 1 else ""
    print(f"{count} broker(s), replication factor {3 if count > 1 else 1}")
    print(
        f"| partitions | create (s) | RSS idle{per} (MiB) | open files{per} | maps{per} | "
        "open-file limit (started at 1024) | idle CPU (% of a core"
        f"{per}; all brokers) | stop (s) | start (s) | "
        f"RSS / open files after restart{per} | records read back |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in counts:
        r = run(n, count)
        print(
            f"| {r['partitions']} | {r['create_s']:.1f} | {r['rss_mib']:.0f} | "
            f"{r['open_files']:.0f} | {r['maps']:.0f} | {r['limit']} | "
            f"{r['idle_cpu_pct']:.1f}; {r['idle_cpu_sum']:.1f} | "
            f"{r['stop_s']:.1f} | {r['start_s']:.1f} | "
            f"{r['rss_after_restart_mib']:.0f} / {r['open_files_after_restart']:.0f} | "
            f"{'yes' if r['records_back'] else 'NO'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
