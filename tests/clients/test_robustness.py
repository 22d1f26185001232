"""Hostile bytes against the real binary: the broker must survive them."""

import socket
import struct
import subprocess


def send_and_expect_close(port: int, payload: bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.settimeout(10)
        assert s.recv(1024) == b"", "the broker should close this connection"


def test_lying_element_count_does_not_crash_the_broker(broker):
    # Metadata v4 whose topic array claims 2^31-1 entries: the decoder sizes a
    # vector from the count before reading, which must not abort the process.
    body = struct.pack(">hhih", 3, 4, 9, -1) + struct.pack(">i", 2**31 - 1) + struct.pack(">h", 1) + b"x"
    send_and_expect_close(broker.port, struct.pack(">i", len(body)) + body)
    # Flexible version: the compact array count is a varint (here 2^32-1, the maximum).
    body = struct.pack(">hhih", 3, 12, 10, -1) + b"\x00" + b"\xff\xff\xff\xff\x0f" + b"\x00" * 8
    send_and_expect_close(broker.port, struct.pack(">i", len(body)) + body)
    assert broker.proc.poll() is None, "broker died:\n" + broker.log_tail()
    out = subprocess.run(["kcat", "-L", "-b", broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_garbage_and_oversized_frames(broker):
    send_and_expect_close(broker.port, b"GET / HTTP/1.1\r\n\r\n")
    send_and_expect_close(broker.port, struct.pack(">i", 2**31 - 1))
    send_and_expect_close(broker.port, struct.pack(">i", -7))
    assert broker.proc.poll() is None
    out = subprocess.run(["kcat", "-L", "-b", broker.bootstrap], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
