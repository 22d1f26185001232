"""Hostile bytes against the real binary: the broker must survive them."""

import socket
import struct
import re
import subprocess
import time


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


def test_a_client_retrying_in_a_tight_loop_does_not_flood_the_log(broker):
    """FindCoordinator requests with a key type the broker does not know, as
    fast as one connection carries them for 2.5 s, then one more after a
    pause: every one is answered, and the warning each draws is written
    about once a second, the next line carrying the count held back."""
    key = b"txn-app"
    corr = 0

    def round_trip(s, count):
        nonlocal corr
        first = corr
        for _ in range(count):
            # FindCoordinator v1: key (string), key_type 5 (none such).
            body = struct.pack(">hhih", 10, 1, corr, -1) + struct.pack(">h", len(key)) + key + b"\x05"
            s.sendall(struct.pack(">i", len(body)) + body)
            corr += 1
        answered, buf = 0, b""
        while answered < count:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {answered} answers"
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                size = struct.unpack(">i", buf[:4])[0]
                assert struct.unpack(">i", buf[4:8])[0] == first + answered
                buf = buf[4 + size :]
                answered += 1

    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        end = time.time() + 2.5
        while time.time() < end:
            round_trip(s, 200)
        time.sleep(1.1)
        round_trip(s, 1)
    n = corr
    broker.stop()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    lines = [l for l in plain.splitlines() if "FindCoordinator with an unknown key type" in l]
    assert 2 <= len(lines) <= 6, f"{len(lines)} lines for {n} requests"
    held_back = sum(int(m) for l in lines for m in re.findall(r"suppressed=(\d+)", l))
    assert held_back + len(lines) == n, (held_back, len(lines), n, lines[:3])
