#!/usr/bin/env python3
"""Open N WebSocket connections (each completes the opening handshake and
echoes one message), then leave them all idle and open, for a bounded time.

Used by idle.sh to measure a server's memory per idle WebSocket. Standard
library only; loopback only.

  idle_ws.py --port 9001 -n 10000 [--hold 60] [--settle 1] [--ready-file F]

When every connection is open it waits --settle seconds, counts how many
the server has closed since, writes one line `opened=N failed=F
closed_by_server=C` to --ready-file (and stdout), then holds the connections
until --hold seconds pass or it gets SIGTERM/SIGINT.
"""

import argparse
import os
import resource
import selectors
import signal
import socket
import time

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes([1, 2, 3, 4])


def masked_text(payload):
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + MASK + body


def recv_until(sock, pred):
    buf = b""
    while not pred(buf):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed early")
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--hold", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--ready-file")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(a.n + 64, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))

    req = (f"GET / HTTP/1.1\r\nHost: {a.host}:{a.port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\n\r\n").encode()
    hello = masked_text(b"hello")
    socks, failed = [], 0
    remaining = a.n
    t0 = time.monotonic()
    while remaining > 0 and not stop["now"]:
        batch = []
        for _ in range(min(a.batch, remaining)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(a.timeout)
            try:
                s.connect((a.host, a.port))
                s.sendall(req)
                batch.append(s)
            except OSError:
                failed += 1
                s.close()
        remaining -= min(a.batch, remaining)
        for s in batch:
            try:
                head = recv_until(s, lambda b: b"\r\n\r\n" in b)
                if not head.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError("not upgraded")
                rest = head.split(b"\r\n\r\n", 1)[1]
                s.sendall(hello)
                recv_until(s, lambda b, r=rest: len(r + b) >= 7)
                socks.append(s)
            except (OSError, ValueError):
                failed += 1
                s.close()
    t_open = time.monotonic() - t0

    time.sleep(a.settle)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed = len(sel.select(timeout=0)) if socks else 0
    line = (f"opened={len(socks)} failed={failed} closed_by_server={closed} "
            f"open_seconds={t_open:.2f}")
    print(line, flush=True)
    if a.ready_file:
        with open(a.ready_file + ".tmp", "w") as f:
            f.write(line + "\n")
        os.replace(a.ready_file + ".tmp", a.ready_file)
    deadline = time.monotonic() + a.hold
    while not stop["now"] and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
