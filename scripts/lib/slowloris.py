#!/usr/bin/env python3
"""scripts/lib/slowloris.py - slow clients holding connections open (slowloris), for the drill.

Usage: slowloris.py --port PORT [--host 127.0.0.1] [--connections N] [--interval S]
                    [--duration S] [--path /v1/results/1000000]

Opens N connections to HOST:PORT (loopback only). Each sends a request line and then one more
header line every INTERVAL seconds, never the blank line that ends the head, so the server has
to hold it. A connection the server closes (or answers, e.g. 408) is counted with how long it
lived, and replaced while time remains. After DURATION seconds every connection is closed and one
JSON line is printed: opened, cut_by_server (closed or answered by the server), answered (the
status lines seen, e.g. {"408": 3}), longest_s (the longest a connection lived before the server
cut it), held_at_end (still open when the run ended), oldest_held_s (the age of the oldest of
those) and errors (connects refused or reset).

Bounded: at most 2,000 connections, 600 s, and 20 x N connection attempts in all. Python's
selectors hold hundreds of idle sockets in one thread; bash would need a process per connection,
and a Rust tool would be a whole crate for forty lines.
"""

import argparse
import json
import selectors
import socket
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--path", default="/v1/results/1000000")
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host != "::1":
        parser.error("--host must be a loopback address: this tool only attacks our own stack")
    if not 1 <= args.connections <= 2000:
        parser.error("--connections must be 1..2000")
    if not 0 < args.duration <= 600 or not 0 < args.interval <= 60:
        parser.error("--duration must be in (0, 600] seconds and --interval in (0, 60]")

    sel = selectors.DefaultSelector()
    budget = 20 * args.connections
    stats = {"opened": 0, "cut_by_server": 0, "answered": {}, "longest_s": 0.0, "held_at_end": 0, "errors": 0}
    start = time.monotonic()
    deadline = start + args.duration

    def open_one() -> None:
        nonlocal budget
        if budget <= 0 or time.monotonic() >= deadline:
            return
        budget -= 1
        try:
            sock = socket.create_connection((args.host, args.port), timeout=2)
            sock.sendall(f"GET {args.path} HTTP/1.1\r\nHost: drill\r\n".encode())
            sock.setblocking(False)
        except OSError:
            stats["errors"] += 1
            return
        stats["opened"] += 1
        now = time.monotonic()
        sel.register(sock, selectors.EVENT_READ, {"born": now, "next": now + args.interval})

    for _ in range(args.connections):
        open_one()

    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            sock, state = key.fileobj, key.data
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/"):
                status = data.split(b" ", 2)[1].decode(errors="replace")
                stats["answered"][status] = stats["answered"].get(status, 0) + 1
            stats["cut_by_server"] += 1
            stats["longest_s"] = max(stats["longest_s"], time.monotonic() - state["born"])
            sel.unregister(sock)
            sock.close()
            open_one()
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now >= key.data["next"]:
                key.data["next"] = now + args.interval
                try:
                    key.fileobj.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # the server closed it: the next select reports it

    stats["held_at_end"] = len(sel.get_map())
    now = time.monotonic()
    stats["oldest_held_s"] = round(max((now - k.data["born"] for k in sel.get_map().values()), default=0.0), 3)
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    stats["longest_s"] = round(stats["longest_s"], 3)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
