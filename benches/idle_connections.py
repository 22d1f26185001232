#!/usr/bin/env python3
"""What idle client connections cost the broker.

Opens N connections to a running broker, has each send one ApiVersions
request (as every client does first) and read its answer, then leaves them
idle and reports the broker's resident memory (VmRSS of --pid) before and
after, and per connection. Usage:

    benches/idle_connections.py --pid PID [--bootstrap 127.0.0.1:9092] [--count 10000]

The shell's open-file limit must allow N descriptors (ulimit -n), for this
script and for the broker.
"""
import argparse
import selectors
import socket
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def api_versions(correlation):
    # ApiVersions v0: header v1 (key, version, correlation id, client id), no body.
    client = b"idle"
    body = struct.pack(">hhih", 18, 0, correlation, len(client)) + client
    return struct.pack(">i", len(body)) + body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=3.0, help="seconds idle before measuring")
    a = ap.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    before = rss_kib(a.pid)
    socks = []
    sel = selectors.DefaultSelector()
    started = time.time()
    for i in range(a.count):
        s = socket.create_connection((host, int(port)))
        s.sendall(api_versions(i))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} connections open", file=sys.stderr)
    # Every connection answered: read each ApiVersions response whole.
    pending = len(socks)
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            got = key.data
            chunk = key.fileobj.recv(65536)
            if not chunk:
                raise SystemExit("broker closed a connection")
            got += chunk
            if len(got) >= 4 and len(got) >= 4 + struct.unpack(">i", got[:4])[0]:
                sel.unregister(key.fileobj)
                pending -= 1
    if pending:
        raise SystemExit(f"{pending} connections got no answer")
    print(f"  all answered in {time.time() - started:.1f} s; idle {a.hold} s", file=sys.stderr)
    time.sleep(a.hold)
    after = rss_kib(a.pid)
    per = (after - before) / a.count
    print(f"connections {a.count}: broker RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
          f"+{(after - before) / 1024:.1f} MiB, {per:.1f} KiB per connection")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
