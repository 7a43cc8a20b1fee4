#!/usr/bin/env python3
"""scripts/tests/hostile/raw_http.py - sends raw bytes to an HTTP server and reports its answer.

Usage: raw_http.py send PORT TIMEOUT  (the request's bytes on stdin, Python escapes allowed:
                                        \\r \\n \\x00 ... are decoded, so rows stay printable)
       raw_http.py idle PORT COUNT TIMEOUT

`send` prints one line: the status code of the first response (or `closed` when the server
closed without answering, `timeout` when nothing came within TIMEOUT s, `noline` when bytes came
without an HTTP/1.x status line, e.g. an HTTP/0.9 body), a tab, the seconds until that answer.
`idle` opens COUNT connections that send nothing and prints how many the server closed within
TIMEOUT s, a tab, the seconds until the last one was closed. curl and most clients normalise
requests (paths, methods, headers), so the hostile test speaks raw TCP. Loopback only.
"""

import codecs
import socket
import sys
import time


def send(port: int, timeout: float, raw: bytes) -> str:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            return f"closed\t{time.monotonic() - start:.3f}"
        sock.settimeout(timeout)
        data = b""
        try:
            while b"\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return f"timeout\t{time.monotonic() - start:.3f}"
        except OSError:
            pass  # reset: like a close
    elapsed = time.monotonic() - start
    if not data:
        return f"closed\t{elapsed:.3f}"
    if data.startswith(b"HTTP/1."):
        return f"{data.split(b' ', 2)[1].decode(errors='replace')}\t{elapsed:.3f}"
    return f"noline\t{elapsed:.3f}"


def idle(port: int, count: int, timeout: float) -> str:
    if not 1 <= count <= 1000:
        raise SystemExit("idle: COUNT must be 1..1000")
    start = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(count)]
    closed, last = 0, 0.0
    for sock in socks:
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            if sock.recv(1) == b"":
                closed += 1
                last = time.monotonic() - start
        except socket.timeout:
            break
        except OSError:
            closed += 1
            last = time.monotonic() - start
    for sock in socks:
        sock.close()
    return f"{closed}\t{last:.3f}"


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "send":
        raw = codecs.escape_decode(sys.stdin.buffer.read().strip(b"\n"))[0]
        print(send(int(sys.argv[2]), float(sys.argv[3]), raw))
    elif len(sys.argv) == 5 and sys.argv[1] == "idle":
        print(idle(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
