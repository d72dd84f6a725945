#!/usr/bin/env python3
"""Re-runs each row of issue 12's table against a weasel binary and prints
its figures (exit codes, messages, RSS before / peak / 5 s after).

usage: safety_rows.py [path/to/weasel]   (default target/release/weasel)

Loopback only, bounded: every wait has a deadline; every process it starts
is stopped by pid. Row 8 mounts a 2 MiB tmpfs (root) and unmounts it.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/weasel"
TIMEOUT = 30


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class Weasel:
    def __init__(self, data, port=0, extra="", http="", expect_fail=False):
        self.conf = data + ".toml"
        with open(self.conf, "w") as f:
            f.write(f"[http]\nport = {port}\n{http}\n[weasel]\n{extra}\n")
        self.p = subprocess.Popen(
            [BIN, "--config", self.conf, "--data-dir", data],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines = []
        self.port = None
        if expect_fail:
            _, err = self.p.communicate(timeout=TIMEOUT)
            self.lines = err.strip().splitlines()
            return
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                raise RuntimeError(f"weasel exited: {self.lines}")
            self.lines.append(line.strip())
            if "listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                break
        # Drain stderr from now on so later lines never block it.
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stderr:
            self.lines.append(line.strip())

    def stop(self, sig=signal.SIGINT):
        self.p.send_signal(sig)
        return self.p.wait(timeout=TIMEOUT)

    def kill(self):
        self.p.kill()
        self.p.wait(timeout=TIMEOUT)


def request(port, method, path, body=None, headers=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    data = body.encode() if isinstance(body, str) else (body or b"")
    h = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        h += f"{k}: {v}\r\n"
    if method == "POST":
        h += f"Content-Length: {len(data)}\r\n"
    s.sendall(h.encode() + b"\r\n" + data)
    out = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def commit(port, rid, key, value):
    body = json.dumps({"request_id": rid,
                       "operations": [{"op": "set", "key": key, "value": value}]})
    return request(port, "POST", "/v1/commit", body,
                   {"Content-Type": "application/json"})


def row(n, text):
    print(f"\n== row {n}: {text}")


def main():
    tmp = tempfile.mkdtemp(prefix="weasel-rows-")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    # Row 1
    row(1, "one bad byte in the middle of commits.log")
    d = f"{tmp}/r1"
    w = Weasel(d)
    for i in range(3):
        commit(w.port, f"r{i}", f"k{i}", f"v{i}")
    w.stop()
    log = f"{d}/commits.log"
    with open(log, "r+b") as f:
        f.seek(12)
        f.write(b"\xff")
    before = open(log, "rb").read()
    w = Weasel(d, expect_fail=True)
    print(f"start: exit {w.p.returncode}: {w.lines[-1]}")
    print(f"file byte-identical after the refused start: {open(log, 'rb').read() == before}")
    r = subprocess.run([BIN, "repair", "--data-dir", d], capture_output=True, text=True,
                       timeout=TIMEOUT)
    print(f"repair: exit {r.returncode}: {r.stdout.strip()}")
    aside = [p for p in os.listdir(d) if "damaged-at" in p]
    kept = open(log, "rb").read() + open(f"{d}/{aside[0]}", "rb").read()
    print(f"log + set-aside file == damaged log: {kept == before}")
    w = Weasel(d)
    print(f"start after repair: {w.lines[0]}; next commit: {commit(w.port, 'n', 'k', 'v')}")
    w.stop()

    # Row 2
    row(2, "two processes on one data directory; two on one port")
    d = f"{tmp}/r2"
    a = Weasel(d)
    b = Weasel(d, expect_fail=True)
    print(f"second on the same dir: exit {b.p.returncode}: {b.lines[-1]}")
    c = Weasel(f"{tmp}/r2b", port=a.port, expect_fail=True)
    print(f"second on port {a.port}: exit {c.p.returncode}: {c.lines[-1]}")
    vs = [json.loads(commit(a.port, f"x{i}", "k", "v")[1])["version"] for i in range(6)]
    print(f"versions of 6 commits on the port: {vs}")
    a.stop()

    # Row 3
    row(3, "zero-filled tail of 8 bytes")
    d = f"{tmp}/r3"
    w = Weasel(d)
    for i in range(3):
        commit(w.port, f"r{i}", f"k{i}", f"v{i}")
    w.stop()
    with open(f"{d}/commits.log", "ab") as f:
        f.write(b"\0" * 8)
    w = Weasel(d)
    print(f"start: {w.lines[0]}")
    print(f"version: {request(w.port, 'GET', '/v1/version')[1].decode().strip()}")
    w.stop()

    # Row 5 + 7
    row(5, "4 watchers (4 KiB receive buffer) that do not read, 300 commits of 768 KiB")
    d = f"{tmp}/r5"
    w = Weasel(d, http="max_body_size = 2097152", extra="max_value_bytes = 1048576")
    commit(w.port, "warm", "big", "x")
    before = kib(w.p.pid, "VmRSS")
    watchers = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", w.port))
        s.sendall(b"GET /v1/watch HTTP/1.1\r\nHost: t\r\n\r\n")
        watchers.append(s)
    value = "v" * (768 << 10)
    t0 = time.time()
    for i in range(300):
        st, _ = commit(w.port, f"c{i}", "big", value)
        assert st == 200, st
    peak = kib(w.p.pid, "VmHWM")
    print(f"RSS before {before} KiB, peak {peak} KiB ({time.time() - t0:.1f} s of commits)")
    got = b""
    watchers[0].settimeout(TIMEOUT)
    while b"too_slow" not in got:
        chunk = watchers[0].recv(1 << 20)
        if not chunk:
            break
        got += chunk
    print(f"a watcher that reads at last gets {got.count(b'event: commit')} commit events, "
          f"then too_slow: {b'too_slow' in got}")
    for s in watchers:
        s.close()
    time.sleep(5)  # The figure asked for: RSS 5 s after.
    row(7, "memory given back 5 s after the watchers closed")
    print(f"RSS 5 s after: {kib(w.p.pid, 'VmRSS')} KiB (before {before}, peak {peak})")
    w.stop()

    # Row 6 + 7
    row(6, "300 keys of 256 KiB, 8 clients list ?limit=1000 and do not read")
    d = f"{tmp}/r6"
    w = Weasel(d, http="max_body_size = 1048576")
    value = "w" * (256 << 10)
    for i in range(300):
        commit(w.port, f"p{i}", f"key{i:03}", value)
    reset_peak(w.p.pid)
    before = kib(w.p.pid, "VmRSS")
    lazy = []
    for _ in range(8):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", w.port))
        s.sendall(b"GET /v1/kv?limit=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        lazy.append(s)
    st, body = request(w.port, "GET", "/v1/kv?limit=1000")
    page = json.loads(body)
    peak = kib(w.p.pid, "VmHWM")
    print(f"one page: {len(page['items'])} items, {len(body)} bytes, truncated={page['truncated']}")
    print(f"RSS before {before} KiB, peak {peak} KiB")
    for s in lazy:
        s.close()
    time.sleep(5)
    print(f"row 7: RSS 5 s after the lists: {kib(w.p.pid, 'VmRSS')} KiB")
    w.stop()

    # Row 8
    row(8, "2 MiB tmpfs as the data dir: fill it, free it")
    mnt = f"{tmp}/mnt"
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if m.returncode != 0:
        print(f"SKIPPED: mount not permitted: {m.stderr.strip()}")
    else:
        try:
            w = Weasel(f"{mnt}/data")
            print(f"commit: {commit(w.port, 'a', 'k', 'v')[0]}")
            with open(f"{mnt}/filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            st, body = commit(w.port, "b", "k", "z" * 20000)
            print(f"commit on a full disk: {st} {body.decode().strip()}")
            st, body = request(w.port, "GET", "/healthz")
            print(f"/healthz: {st} {body.decode().strip()}")
            os.remove(f"{mnt}/filler")
            st, body = commit(w.port, "b", "k", "z" * 20000)
            print(f"after freeing: commit {st} {body.decode().strip()}")
            st, body = request(w.port, "GET", "/healthz")
            print(f"/healthz: {st} {body.decode().strip()}")
            print(f"exit on SIGINT: {w.stop()}")
        finally:
            subprocess.run(["umount", mnt])

    # Row 9
    row(9, "kill -HUP")
    w = Weasel(f"{tmp}/r9")
    w.p.send_signal(signal.SIGHUP)
    st, _ = request(w.port, "GET", "/healthz")
    print(f"after SIGHUP: alive={w.p.poll() is None}, /healthz {st}")
    print(f"exit on SIGINT: {w.stop()}")


if __name__ == "__main__":
    main()
