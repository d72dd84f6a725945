#!/usr/bin/env python3
"""Mixed-load soak of the Stoat server (stoat/examples/soak.rs), one model.

Everything at once, for --duration seconds (default 600), on loopback:
  - pipelined keep-alive load: wrk with /work/shared/bench/pipeline.lua
    (depth 16) on /plaintext, or bench/soak/pipeline.lua beside this file;
  - SSE subscribers that come and go (/events, some leave early);
  - WebSockets that come and go (echo /ws; closing cleanly or not);
  - 1 MiB uploads (POST /echo, the echo read back whole);
  - slow heads (a byte every 50-300 ms; some never finish and get 408);
  - clients that reset (SO_LINGER 0) mid-request and mid-response;
  - bursts over the small pipeline ring (/block, ring 8) and suspended
    requests (/later), some left by their client before the answer.

Every second it samples RSS and open fds (/proc) and the server's counters
(read_counters: one function, to switch to Prometheus /metrics later) into
series.csv, and plots plot.png (matplotlib). At the end, after the load
stops, it checks and writes summary.txt:
  - RSS within 10% of its level after warm-up (the first 10% of the run);
  - open fds back to the baseline taken before the load;
  - connections 0, i.e. accepted = closed (Stats has no closed counter:
    closed = accepted - connections);
  - resumed + expired + abandoned = suspended;
  - no panic in the server's log, and a clean graceful stop (exit 0).
Exit status 1 if a check fails.

Usage: soak.py --model shared|per_core [--duration S] [--binary PATH]
               [--out DIR] [--threads N]
"""
import argparse
import base64
import csv
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


class Server:
    """The soak example, controlled over stdin/stdout."""

    def __init__(self, binary, model, threads, log_path):
        self.log = open(log_path, "wb")
        args = [binary, "--model", model, "--ring", "8"]
        if threads:
            args += ["--threads", str(threads)]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, bufsize=0
        )
        self.lock = threading.Lock()
        line = self._line(30)
        if not line.startswith("listening "):
            raise SystemExit(f"soak: server did not start: {line!r}")
        host, port = line.split()[1].rsplit(":", 1)
        self.addr = (host, int(port))
        self.pid = self.proc.pid

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise SystemExit("soak: server did not answer on stdout in time")
            b = os.read(fd, 1)
            if not b:
                raise SystemExit("soak: server closed stdout")
            buf += b
        return buf.decode().strip()

    def stop(self, timeout=60):
        """Graceful stop; returns (final counters, exit status)."""
        with self.lock:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.close()
            last = json.loads(self._line(timeout))
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = "hung"
        self.log.close()
        return last, status


class Weasel:
    """The weasel binary on a fresh data directory, port 0, the model set in
    its config; stopped with SIGTERM (graceful)."""

    def __init__(self, binary, model, threads, log_path, out):
        data = os.path.join(out, "weasel-data")
        conf = os.path.join(out, "weasel.toml")
        # The embedded default configuration, with the model (and thread
        # count) replaced.
        text = subprocess.check_output([binary, "--print-default-config"]).decode()
        lines = []
        for line in text.splitlines():
            if line.startswith("model ="):
                line = f'model = "{model}"'
            elif threads and line.startswith("network_threads ="):
                line = f"network_threads = {threads}"
            # Bounded state small enough to fill during the warm-up, so that
            # growth after it means a leak, not a cache filling up.
            elif line.startswith("status_window ="):
                line = "status_window = 256"
            elif line.startswith("watch_history ="):
                line = "watch_history = 64"
            lines.append(line)
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--config", conf, "--data-dir", data, "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        self.pid = self.proc.pid
        self.lock = threading.Lock()
        deadline = time.monotonic() + 60
        while True:
            text = open(log_path, "rb").read().decode("utf-8", "replace")
            if "listening on http://" in text:
                hostport = text.split("listening on http://", 1)[1].split()[0]
                host, port = hostport.rsplit(":", 1)
                self.addr = (host, int(port))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"soak: weasel did not start: {text!r}")
            time.sleep(0.1)  # polling its log for the listening line

    def stop(self, timeout=60):
        self.proc.send_signal(15)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = "hung"
        self.log.close()
        return None, status


def established(port):
    """Established TCP connections on the server's side of `port`."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for r in rows:
            f = r.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def read_counters(server):
    """The server's counters as a dict (connections, accepted, requests,
    suspended, resumed, expired, abandoned, ...). Reads the soak example's
    stdin/stdout control; with Prometheus /metrics (issue 14) this is the
    one function to change. Weasel exposes no counters: connections are
    counted from /proc/net/tcp, requests from the clients' answers (wrk's
    not included), the rest are absent (-1)."""
    if isinstance(server, Weasel):
        with tally_lock:
            answered = sum(v for k, v in tally.items() if k.startswith("w_"))
        return {"connections": established(server.addr[1]), "accepted": -1,
                "requests": answered, "suspended": -1, "resumed": -1, "expired": -1,
                "abandoned": -1}
    with server.lock:
        server.proc.stdin.write(b"stats\n")
        return json.loads(server._line(10))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---------------------------------------------------------------------------
# Clients. Each runs until `stop` is set; counts go to `tally`.

tally_lock = threading.Lock()
tally = {}


def count(key, n=1):
    with tally_lock:
        tally[key] = tally.get(key, 0) + n


def connect(addr, timeout=10):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reset(s):
    """Closes with an RST (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_response(s, buf=b""):
    """Reads one response with Content-Length or chunked framing; returns
    (status, body, rest)."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("closed before a response head")
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        fields[k.strip().lower()] = v.strip()
    if b"content-length" in fields:
        n = int(fields[b"content-length"])
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                raise EOFError("closed inside a body")
            buf += d
        return status, buf[:n], buf[n:]
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise EOFError("closed inside a chunked body")
                buf += d
            line, buf = buf.split(b"\r\n", 1)
            n = int(line.split(b";")[0], 16)
            while len(buf) < n + 2:
                d = s.recv(65536)
                if not d:
                    raise EOFError("closed inside a chunk")
                buf += d
            body += buf[:n]
            buf = buf[n + 2 :]
            if n == 0:
                return status, body, buf
    return status, b"", buf


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()


def sse_client(addr, stop, rng):
    while not stop.is_set():
        try:
            s = connect(addr)
            n = rng.randint(5, 40)
            s.sendall(get(f"/events?count={n}&every_ms={rng.randint(5, 50)}"))
            leave_after = rng.choice([n, n, rng.randint(1, n)])
            got = b""
            while got.count(b"\ndata: ") < leave_after and not stop.is_set():
                d = s.recv(4096)
                if not d:
                    break
                got += d
            if leave_after < n and rng.random() < 0.5:
                reset(s)
                count("sse_reset")
            else:
                s.close()
            count("sse")
        except (OSError, EOFError):
            count("sse_error")


def ws_frame(opcode, payload, rng):
    mask = bytes(rng.getrandbits(8) for _ in range(4))
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_client(addr, stop, rng):
    while not stop.is_set():
        try:
            s = connect(addr)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(
                (
                    "GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d:
                    raise EOFError
                buf += d
            if b" 101 " not in buf.split(b"\r\n", 1)[0]:
                count("ws_refused")
                s.close()
                continue
            buf = buf.split(b"\r\n\r\n", 1)[1]
            for _ in range(rng.randint(1, 30)):
                msg = os.urandom(rng.choice([10, 100, 3000])).hex().encode()
                s.sendall(ws_frame(1, msg, rng))
                want = len(msg) + (2 if len(msg) < 126 else 4)
                while len(buf) < want:
                    d = s.recv(65536)
                    if not d:
                        raise EOFError
                    buf += d
                buf = buf[want:]
                count("ws_messages")
            end = rng.random()
            if end < 0.5:
                s.sendall(ws_frame(8, struct.pack(">H", 1000), rng))
                s.settimeout(10)
                while s.recv(4096):
                    pass
                s.close()
            elif end < 0.75:
                s.close()
            else:
                reset(s)
            count("ws")
        except (OSError, EOFError):
            count("ws_error")


def upload_client(addr, stop, rng):
    body = os.urandom(1 << 20)
    while not stop.is_set():
        try:
            s = connect(addr, timeout=30)
            s.sendall(
                f"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            mode = rng.random()
            if mode < 0.15:
                # Reset mid-request: part of the body, then RST.
                s.sendall(body[: rng.randint(1, len(body) - 1)])
                reset(s)
                count("reset_mid_request")
                continue
            # Send while reading the echo back (it streams).
            sent = 0
            got = b""
            s.setblocking(False)
            reset_at = rng.randint(1000, len(body)) if mode < 0.3 else None
            while True:
                if reset_at is not None and len(got) >= reset_at:
                    break
                if b"\r\n\r\n" in got:
                    head, rest = got.split(b"\r\n\r\n", 1)
                    if len(rest) >= len(body):
                        break
                w = [s] if sent < len(body) else []
                r, w, _ = select.select([s], w, [], 30)
                if not r and not w:
                    raise OSError("upload stalled")
                if w:
                    try:
                        sent += s.send(body[sent : sent + 65536])
                    except BlockingIOError:
                        pass
                if r:
                    d = s.recv(1 << 20)
                    if not d:
                        raise EOFError
                    got += d
            if reset_at is not None:
                reset(s)
                count("reset_mid_response")
                continue
            if rest[: len(body)] != body:
                count("upload_mismatch")
            count("upload")
            s.close()
        except (OSError, EOFError):
            count("upload_error")


SLOW_PATH = ["/plaintext"]


def slow_head_client(addr, stop, rng):
    while not stop.is_set():
        try:
            s = connect(addr, timeout=60)
            req = get(SLOW_PATH[0])
            finish = rng.random() < 0.7
            part = req if finish else req[: rng.randint(1, len(req) - 4)]
            for i in range(len(part)):
                if stop.is_set():
                    break
                s.sendall(part[i : i + 1])
                time.sleep(rng.uniform(0.05, 0.3 if finish else 1.0))
            if finish and not stop.is_set():
                status, _, _ = read_response(s)
                count(f"slow_head_{status}")
            elif not stop.is_set():
                # Left unfinished: the server answers 408 and closes, or we
                # reset it first.
                if rng.random() < 0.5:
                    reset(s)
                    count("slow_head_reset")
                else:
                    s.settimeout(60)
                    data = s.recv(4096)
                    count(f"slow_head_left_{data[9:12].decode() or 'closed'}")
            s.close()
        except (OSError, EOFError, ValueError):
            count("slow_head_error")


def burst_client(addr, stop, rng):
    """Bursts of pipelined /block requests over the small ring, and
    /later requests some of whose clients leave before the answer."""
    while not stop.is_set():
        try:
            # A burst: many connections at once, one /block each, more
            # than the ring holds (503 for the overflow), then pipelined.
            n = rng.randint(8, 32)
            conns = [connect(addr, timeout=30) for _ in range(n)]
            for c in conns:
                c.sendall(get(f"/block?us={rng.randint(100, 3000)}"))
            for c in conns:
                status, _, _ = read_response(c)
                count(f"block_{status}")
                c.close()
            s = connect(addr, timeout=30)
            s.sendall(b"".join(get(f"/block?us={rng.randint(100, 2000)}") for _ in range(n)))
            buf = b""
            for _ in range(n):
                status, _, buf = read_response(s, buf)
                count(f"block_{status}")
            s.close()
            s = connect(addr, timeout=30)
            m = rng.randint(1, 8)
            s.sendall(b"".join(get(f"/later?ms={rng.randint(1, 400)}") for _ in range(m)))
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.2))
                reset(s)
                count("later_left")
            else:
                buf = b""
                for _ in range(m):
                    status, _, buf = read_response(s, buf)
                    count(f"later_{status}")
                s.close()
        except (OSError, EOFError, ValueError):
            count("burst_error")


def weasel_writer(addr, stop, rng):
    """Commits on a keep-alive connection (conflicts expected: preconditions
    on shared keys), sometimes reset mid-body."""
    while not stop.is_set():
        try:
            s = connect(addr, timeout=30)
            buf = b""
            for _ in range(rng.randint(1, 50)):
                if stop.is_set():
                    break
                k = f"k{rng.randint(0, 200)}"
                doc = {"request_id": f"r-{rng.getrandbits(64):x}",
                       "operations": [{"op": "set", "key": k, "value": "v" * rng.randint(1, 2000)}]}
                if rng.random() < 0.3:
                    doc["preconditions"] = [{"key": k, "version": rng.randint(0, 5)}]
                body = json.dumps(doc).encode()
                head = (f"POST /v1/commit HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                if rng.random() < 0.02:
                    s.sendall(head + body[: len(body) // 2])
                    reset(s)
                    count("w_reset_mid_request")
                    s = None
                    break
                s.sendall(head + body)
                status, _, buf = read_response(s, buf)
                count(f"w_commit_{status}")
            if s is not None:
                s.close()
        except (OSError, EOFError, ValueError):
            count("weasel_error")


def weasel_reader(addr, stop, rng):
    """Pipelined reads of keys and versions; watchers that come and go."""
    while not stop.is_set():
        try:
            s = connect(addr, timeout=30)
            n = rng.randint(1, 16)
            s.sendall(b"".join(get(rng.choice(["/v1/version", f"/v1/kv/k{rng.randint(0, 200)}"]))
                               for _ in range(n)))
            buf = b""
            for _ in range(n):
                status, _, buf = read_response(s, buf)
                count(f"w_read_{status}")
            s.close()
            if rng.random() < 0.3:
                w = connect(addr, timeout=30)
                w.sendall(get("/v1/watch?from=0"))
                got = b""
                want = rng.randint(1, 50)
                while got.count(b"\ndata:") < want and not stop.is_set():
                    d = w.recv(65536)
                    if not d:
                        break
                    got += d
                if rng.random() < 0.5:
                    reset(w)
                else:
                    w.close()
                count("w_watch")
        except (OSError, EOFError, ValueError):
            count("weasel_error")


def wrk_load(addr, seconds, out_path, path="/plaintext"):
    script = "/work/shared/bench/pipeline.lua"
    if not os.path.exists(script):
        script = os.path.join(HERE, "pipeline.lua")
    return subprocess.Popen(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", script,
         f"http://{addr[0]}:{addr[1]}{path}", "--", "16"],
        stdout=open(out_path, "w"), stderr=subprocess.STDOUT,
    )


# ---------------------------------------------------------------------------


def plot(csv_path, png_path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("soak: matplotlib missing (pip install matplotlib); no plot")
        return False
    rows = list(csv.DictReader(open(csv_path)))
    t = [float(r["t"]) for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    for ax, key, label in zip(
        axes,
        ["rss_kib", "fds", "connections", "req_per_s"],
        ["RSS (KiB)", "open fds", "connections", "requests/s"],
    ):
        ax.plot(t, [float(r[key]) for r in rows], lw=1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=70)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=["shared", "per_core"])
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "examples", "soak"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--server", default="soak", choices=["soak", "weasel"],
                    help="the soak example (default) or the weasel binary (--binary target/.../weasel)")
    a = ap.parse_args()
    weasel = a.server == "weasel"
    out = a.out or os.path.join(HERE, "results", f"{a.server}-{a.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "server.log")
    if weasel:
        server = Weasel(a.binary, a.model, a.threads, log_path, out)
    else:
        server = Server(a.binary, a.model, a.threads, log_path)
    pid = server.pid
    time.sleep(0.5)  # a measurement before load, not synchronisation
    base_fds = open_fds(pid)
    base_rss = rss_kib(pid)
    warmup = max(5, a.duration // 10)

    stop = threading.Event()
    clients = []
    rng_seed = random.Random(a.seed)
    mix = [(sse_client, 4), (ws_client, 4), (upload_client, 2),
           (slow_head_client, 4), (burst_client, 2)]
    if weasel:
        SLOW_PATH[0] = "/v1/version"
        mix = [(weasel_writer, 4), (weasel_reader, 4), (slow_head_client, 4)]
    for fn, n in mix:
        for _ in range(n):
            t = threading.Thread(target=fn, args=(server.addr, stop, random.Random(rng_seed.random())),
                                 daemon=True)
            t.start()
            clients.append(t)
    wrk = wrk_load(server.addr, a.duration, os.path.join(out, "wrk.txt"),
                   "/v1/version" if weasel else "/plaintext")

    csv_path = os.path.join(out, "series.csv")
    started = time.monotonic()
    warm_rss = None
    last_req, last_t = None, None
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "rss_kib", "fds", "connections", "accepted", "requests", "req_per_s",
                    "suspended", "resumed", "expired", "abandoned"])
        while True:
            now = time.monotonic() - started
            c = read_counters(server)
            rss = rss_kib(pid)
            rate = 0 if last_req is None else (c["requests"] - last_req) / max(now - last_t, 1e-3)
            last_req, last_t = c["requests"], now
            w.writerow([f"{now:.1f}", rss, open_fds(pid), c["connections"], c["accepted"],
                        c["requests"], f"{rate:.0f}", c["suspended"], c["resumed"],
                        c["expired"], c["abandoned"]])
            f.flush()
            if warm_rss is None and now >= warmup:
                warm_rss = rss
            if now >= a.duration:
                break
            time.sleep(1)  # the sampling period
        loaded_rss = rss
        stop.set()
        try:
            wrk.wait(timeout=60)
        except subprocess.TimeoutExpired:
            wrk.kill()
        for t in clients:
            t.join(timeout=90)
        # The load is over: wait (bounded) for the server to close every
        # connection, sampling meanwhile.
        deadline = time.monotonic() + 60
        zero_since = None
        while True:
            now = time.monotonic() - started
            c = read_counters(server)
            w.writerow([f"{now:.1f}", rss_kib(pid), open_fds(pid), c["connections"], c["accepted"],
                        c["requests"], 0, c["suspended"], c["resumed"], c["expired"],
                        c["abandoned"]])
            settled = weasel or c["suspended"] == c["resumed"] + c["expired"] + c["abandoned"]
            if c["connections"] == 0:
                # Answers still due (a /later timer) get a few seconds more.
                if settled or zero_since is not None and time.monotonic() > zero_since + 5:
                    break
                zero_since = zero_since or time.monotonic()
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    end_fds = open_fds(pid)
    end_rss = rss_kib(pid)
    final = read_counters(server)
    last, status = server.stop()
    if weasel:
        final = dict(final, accepted=final["connections"], resumed=0, expired=0, abandoned=0,
                     suspended=0)
    log = open(log_path, "rb").read().decode("utf-8", "replace")
    alive = [t for t in clients if t.is_alive()]

    # (label, passed, name): STOAT_SOAK_ALLOW lists names reported but not
    # failing the run (a known finding awaiting its fix).
    checks = [
        (f"RSS at end of load {loaded_rss} KiB within 10% of after warm-up {warm_rss} KiB",
         warm_rss is not None and loaded_rss <= warm_rss * 1.10),
        (f"RSS after the load {end_rss} KiB within 10% of after warm-up {warm_rss} KiB",
         warm_rss is not None and end_rss <= warm_rss * 1.10),
        (f"open fds {end_fds} back to baseline {base_fds}", end_fds == base_fds),
        (f"connections {final['connections']} = 0 (accepted {final['accepted']} = closed "
         f"{final['accepted'] - final['connections']})", final["connections"] == 0),
        (f"resumed {final['resumed']} + expired {final['expired']} + abandoned {final['abandoned']}"
         f" = suspended {final['suspended']}",
         final["resumed"] + final["expired"] + final["abandoned"] == final["suspended"],
         "suspended"),
        ("no panic in the server log", "panicked" not in log),
        (f"graceful stop, exit status {status}", status == 0),
        (f"every client thread finished ({len(alive)} left)", not alive),
    ]
    wrk_out = open(os.path.join(out, "wrk.txt")).read()
    if weasel:
        # No counters in Weasel: connections from /proc/net/tcp only.
        checks = [c for c in checks if "resumed" not in c[0] and "accepted" not in c[0]]
        checks.append((f"established connections {final['connections']} = 0 (/proc/net/tcp)",
                       final["connections"] == 0))
    summary = [f"soak: {a.server}, model {a.model}, {a.duration} s, server pid {pid}, base RSS {base_rss} KiB",
               f"requests {final['requests']}, accepted {final['accepted']}, suspended {final['suspended']}",
               "clients: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())),
               "wrk: " + " | ".join(l.strip() for l in wrk_out.splitlines() if "Requests/sec" in l or "requests in" in l or "Non-2xx" in l or "Socket errors" in l)]
    allow = set(os.environ.get("STOAT_SOAK_ALLOW", "").split())
    checks = [(c[0], c[1], c[2] if len(c) > 2 else "") for c in checks]
    summary += [("PASS " if ok else "KNOWN " if name in allow else "FAIL ") + text
                for text, ok, name in checks]
    png = os.path.join(out, "plot.png")
    if plot(csv_path, png, f"{'Weasel' if weasel else 'Stoat'} soak, model {a.model}, {a.duration} s"):
        summary.append(f"plot: {png}")
    summary.append(f"series: {csv_path}")
    text = "\n".join(summary)
    print(text)
    open(os.path.join(out, "summary.txt"), "w").write(text + "\n")
    sys.exit(0 if all(ok or name in allow for _, ok, name in checks) else 1)


if __name__ == "__main__":
    main()
