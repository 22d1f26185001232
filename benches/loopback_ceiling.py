#!/usr/bin/env python3
"""The machine's ceiling for serving a fetch: a file sent over loopback TCP.

One process sends FILE (a segment, say) to another over a loopback TCP
connection, with sendfile(2) (default) or with read+write (`--mode write`);
the receiver reads into one reused 1 MiB buffer and reports MB/s. No Kafka
framing and no broker: compare `sluice bench --consume-only` with this, run
in the same minutes, to see how close the broker gets to what the machine
can move. Usage:

    benches/loopback_ceiling.py FILE [--mode sendfile|write] [--runs N]
"""
import argparse
import multiprocessing as mp
import os
import socket
import time


def receive(port, results):
    s = socket.create_connection(("127.0.0.1", port))
    view = memoryview(bytearray(1 << 20))
    total = 0
    started = time.time()
    while True:
        n = s.recv_into(view)
        if not n:
            break
        total += n
    results.put((total, time.time() - started))


def one_run(path, mode):
    size = os.path.getsize(path)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    results = mp.Queue()
    reader = mp.Process(target=receive, args=(server.getsockname()[1], results))
    reader.start()
    conn, _ = server.accept()
    with open(path, "rb") as f:
        if mode == "sendfile":
            offset = 0
            while offset < size:
                offset += os.sendfile(conn.fileno(), f.fileno(), offset, min(size - offset, 8 << 20))
        else:
            buf = bytearray(1 << 20)
            while n := f.readinto(buf):
                conn.sendall(memoryview(buf)[:n])
    conn.close()
    total, seconds = results.get()
    reader.join()
    if total != size:
        raise SystemExit(f"received {total} bytes of {size}")
    return total / seconds / 1e6, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--mode", choices=["sendfile", "write"], default="sendfile")
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    for _ in range(a.runs):
        rate, seconds = one_run(a.file, a.mode)
        print(f"{a.mode}: {rate:.0f} MB/s ({os.path.getsize(a.file)} bytes in {seconds:.2f} s)")


if __name__ == "__main__":
    main()
