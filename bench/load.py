#!/usr/bin/env python3
"""load.py — a load generator that sends an exact number of requests.

wrk runs for a duration, so the number of responses varies from run to run;
this client sends exactly N requests (and opens exactly as many connections
as they need), so a count of instructions or syscalls taken across its run
divides by a known number. It is slower than wrk, which does not matter for
a server under valgrind, the case it is for.

usage: load.py --port P [--host H] [--path /plaintext] [--requests N]
               [--conns C] [--depth D] [--per-conn K] [--close]
  --requests N   requests in all (default 10000)
  --conns C      connections open at once (default 64)
  --depth D      requests written back to back per write, like wrk's
                 pipeline.lua (default 1)
  --per-conn K   requests per connection; after the K-th response the client
                 closes and opens a new one (0 = no limit, the default: the C
                 connections stay open for the whole run)
  --close        send `Connection: close` (meant with --per-conn 1; the
                 client closes after the response either way, so a server
                 that ignores the header still gets a new connection)
  --browser      send the field lines a desktop browser sends for a page
                 (BROWSER below: 14 lines, ~650 bytes), after Host; for the
                 head parser's cost per field line
Prints one line: `requests R connections M errors E seconds S`; exits 1 if
any response was not a 200 or a connection failed.
Responses are read by their Content-Length (every server measured sends one).
"""

import argparse
import selectors
import socket
import sys
import time

# The field lines after Host of a page request from Chromium 131 on Linux.
BROWSER = (
    "Connection: keep-alive\r\n"
    'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n'
    "sec-ch-ua-mobile: ?0\r\n"
    'sec-ch-ua-platform: "Linux"\r\n'
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    "Sec-Fetch-Site: none\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=4f2a9c1e7b3d5a8f0c6e2b9d1a7f3c5e; theme=dark\r\n"
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--per-conn", type=int, default=0)
    ap.add_argument("--close", action="store_true")
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    if a.requests < 1 or a.conns < 1 or a.depth < 1 or a.per_conn < 0:
        sys.exit("load.py: --requests, --conns, --depth must be >= 1, --per-conn >= 0")

    req = (
        f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
        + (BROWSER if a.browser else "")
        + ("Connection: close\r\n" if a.close else "")
        + "\r\n"
    ).encode()
    sel = selectors.DefaultSelector()
    # issued: requests written; reserved: with --per-conn, requests promised
    # to open connections (a connection is opened only with a quota, so no
    # connection is opened that sends nothing)
    state = {"issued": 0, "reserved": 0, "done": 0, "conns": 0, "errors": 0}

    class Conn:
        __slots__ = ("sock", "buf", "inflight", "served", "out", "quota", "mode", "started")

    def open_conn():
        quota = 0
        if a.per_conn:
            quota = min(a.per_conn, a.requests - state["reserved"])
            if quota <= 0:
                return None
            state["reserved"] += quota
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.connect_ex((a.host, a.port))
        c = Conn()
        c.sock, c.buf, c.inflight, c.served, c.out, c.quota = s, bytearray(), 0, 0, b"", quota
        c.mode, c.started = selectors.EVENT_WRITE, False
        state["conns"] += 1
        sel.register(s, selectors.EVENT_WRITE, c)
        return c

    def want(c, mode):
        if c.mode != mode:
            c.mode = mode
            sel.modify(c.sock, mode, c)

    def flush(c):
        """Writes what c has to send; False if the connection failed."""
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                want(c, selectors.EVENT_WRITE)
                return True
            except OSError:
                return False
            c.out = c.out[n:]
        want(c, selectors.EVENT_READ)
        return True

    def next_batch(c):
        """Writes the next batch on c, or returns False if c is done."""
        left = a.requests - state["issued"]
        if a.per_conn:
            left = c.quota - c.served
        n = min(a.depth, left)
        if n <= 0:
            return False
        state["issued"] += n
        c.inflight = n
        c.out = req * n
        if not flush(c):
            finish(c, failed=True)
        return True

    def finish(c, failed=False):
        sel.unregister(c.sock)
        c.sock.close()
        if failed:
            state["errors"] += 1
            state["issued"] -= c.inflight  # not answered: send them again
        if a.per_conn:
            state["reserved"] -= c.quota - c.served
            open_conn()
        elif state["issued"] < a.requests:
            open_conn()

    def parse(c):
        """Consumes whole responses from c.buf; False on a bad response."""
        while c.inflight:
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return True
            head = bytes(c.buf[:end]).lower()
            if not head.startswith(b"http/1.1 200"):
                return False
            i = head.find(b"\r\ncontent-length:")
            if i < 0:
                return False
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j >= 0 else len(head)].strip())
            total = end + 4 + length
            if len(c.buf) < total:
                return True
            del c.buf[:total]
            c.inflight -= 1
            c.served += 1
            state["done"] += 1
        return True

    for _ in range(min(a.conns, a.requests)):
        open_conn()
    start = time.monotonic()
    deadline = start + a.timeout
    while state["done"] < a.requests:
        if time.monotonic() > deadline:
            sys.exit(f"load.py: timed out after {a.timeout} s ({state['done']} responses)")
        for key, ev in sel.select(timeout=1.0):
            c = key.data
            if ev & selectors.EVENT_WRITE:
                if not c.started:  # connected: the first batch
                    c.started = True
                    if not next_batch(c):
                        finish(c)
                elif not flush(c):
                    finish(c, failed=True)
                continue
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                finish(c, failed=True)
                continue
            if not data:
                # The server closed: fine after the last response it owed.
                finish(c, failed=c.inflight > 0)
                continue
            c.buf += data
            if not parse(c):
                sys.exit(f"load.py: bad response: {bytes(c.buf[:200])!r}")
            if c.inflight == 0:
                if a.per_conn and c.served >= c.quota:
                    finish(c)
                elif not next_batch(c):
                    finish(c)
    secs = time.monotonic() - start
    print(
        f"requests {state['done']} connections {state['conns']} "
        f"errors {state['errors']} seconds {secs:.2f}"
    )
    sys.exit(1 if state["errors"] else 0)


if __name__ == "__main__":
    main()
