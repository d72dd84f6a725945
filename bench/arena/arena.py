#!/usr/bin/env python3
"""HttpArena's HTTP/1.1 profiles, Stoat against the published peers, side by side.

usage: arena.py [--profiles baseline,pipelined,...] [--servers stoat,actix,...]
                [--rounds 3] [--duration 5] [--warmup 1] [--conns N]
                [--server-cpus 0] [--client-cpus 1] [--upload-rss] [--out DIR]

Each measurement starts the server afresh (pinned with taskset to
--server-cpus), checks one request of the profile against the contract, runs
an unmeasured warm-up, then the measured load (wrk with the profile's Lua
script, or bench/ws's ws_load for echo-ws, pinned to --client-cpus), and stops
the server. Rounds are interleaved: round 1 runs every (profile, server), then
round 2, with the server order rotated each round. Reported per profile and
server (median over rounds):
  req/s        responses per second (wrk's count; ws: echoed messages)
  ratio        paired: this server's req/s over stoat's in the same round, median
  usr/sys us   server CPU per request, from /proc/PID/stat (utime, stime, all
               threads; the process tree for nginx) before and after the run
               (10 ms ticks: coarse when there are few requests)
  cpu us       server CPU per request, exact: the threads' schedstat run
               time (ns), before and after the run (median over rounds; so
               not always usr + sys)
  p99          wrk's 99th percentile latency
  peak RSS     VmHWM (summed over the process tree) at the end of the run
  B/resp       bytes read by the client per response (static: what is on the wire)

--upload-rss runs only 32 connections each POSTing 20,000,000-byte bodies to
stoat and actix, and reports their peak RSS (the issue's upload aim).

Build first: bench/arena/build.sh (the stoat arena example and the peers, out of
tree under bench/arena/build). nginx (static) is Debian's, with gzip_static
(built into nginx-light) and brotli_static (libnginx-mod-http-brotli-static,
installed by this script when missing).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
BIN = os.path.join(BUILD, "bin")
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("DATA", "/work/shared/arena/data")
PORT = 8080  # the peers listen on 8080 only
CLK_TCK = os.sysconf("SC_CLK_TCK")

PROFILES = ["baseline", "pipelined", "limited-conn", "json", "json-comp", "upload", "static", "echo-ws"]
SERVES = {
    "stoat": set(PROFILES),
    "actix": {"baseline", "pipelined", "limited-conn", "json", "json-comp", "upload", "static"},
    "hyper": {"baseline", "pipelined", "limited-conn"},
    # limited-conn here relies on the server closing on `Connection: close`
    # (wrk cannot close on its own); may-minihttp and rust-epoll ignore the
    # field and keep the connection (HttpArena's client closes instead), so
    # they would be measured on keep-alive: not the profile.
    "may-minihttp": {"baseline", "pipelined"},
    "rust-epoll": {"baseline", "pipelined"},
    "nginx": {"static"},
    "actix-websocket": {"echo-ws"},
}
# wrk connections per profile (their runs: 512 to 4,096; scaled to 2 cores).
CONNS = {
    "baseline": 256, "pipelined": 256, "limited-conn": 256, "json": 256,
    "json-comp": 256, "upload": 32, "static": 256, "echo-ws": 256,
}
WRK = {
    "baseline": ("baseline.lua", []),
    "pipelined": ("pipelined.lua", []),
    "limited-conn": ("baseline.lua", ["close"]),
    "json": ("json.lua", []),
    "json-comp": ("json.lua", ["comp"]),
    "upload": ("upload.lua", []),
    "static": ("static.lua", []),
}


def die(msg):
    sys.exit(f"arena.py: {msg}")


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port(port, proc, deadline=20.0):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tree(pid):
    """pid and its descendants."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    parent = {}
    for line in out.split("\n"):
        parts = line.split()
        if len(parts) == 2:
            parent[int(parts[0])] = int(parts[1])
    pids, changed = {pid}, True
    while changed:
        changed = False
        for p, pp in parent.items():
            if p not in pids and pp in pids:
                pids.add(p)
                changed = True
    return sorted(pids)


def cpu_ticks(pids):
    u = k = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            u += int(fields[11])
            k += int(fields[12])
        except OSError:
            pass
    return u, k


def cpu_ns(pids):
    """Nanoseconds on CPU of every thread of `pids` (schedstat: exact, where
    the stat ticks count in 10 ms steps: too coarse for a few uploads)."""
    total = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def hwm_kb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name, cpus, out):
        self.name, self.cpus, self.out = name, cpus, out
        self.proc, self.tmp = None, None

    def command(self):
        if self.name == "stoat":
            return [os.path.join(BIN, "stoat"), "--port", str(PORT), "--threads", "1", "--data", DATA]
        if self.name == "nginx":
            self.tmp = tempfile.mkdtemp(prefix="arena-nginx.")
            conf = open(os.path.join(HERE, "nginx.conf")).read()
            module = "/usr/lib/nginx/modules/ngx_http_brotli_static_module.so"
            brotli = os.path.exists(module)
            conf = conf.replace("@PREFIX@", self.tmp).replace("@DATA@", DATA).replace("@PORT@", str(PORT))
            conf = conf.replace("@BROTLI@", "brotli_static on;" if brotli else "")
            modules = f"load_module {module};\n" if brotli else ""
            with open(os.path.join(self.tmp, "nginx.conf"), "w") as f:
                f.write(modules + conf)
            return ["nginx", "-c", os.path.join(self.tmp, "nginx.conf"), "-p", self.tmp,
                    "-e", os.path.join(self.tmp, "error.log"), "-g", "daemon off;"]
        return [os.path.join(BIN, self.name)]

    def start(self):
        if not port_free(PORT):
            die(f"port {PORT} is busy before starting {self.name}")
        log = open(os.path.join(self.out, f"{self.name}.log"), "a")
        self.proc = subprocess.Popen(["taskset", "-c", self.cpus] + self.command(),
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        if not wait_port(PORT, self.proc):
            self.stop()
            die(f"{self.name} did not start listening on {PORT} (see {log.name})")

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        end = time.time() + 10
        while not port_free(PORT) and time.time() < end:
            time.sleep(0.05)


def http(request, timeout=5.0):
    """Sends raw request bytes; returns (status, headers dict, body) of one response."""
    with socket.create_connection(("127.0.0.1", PORT), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(body) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while not body.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            raw, body = body, b""
            while raw:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body += raw[:size]
                raw = raw[size + 2:]
        return status, headers, body


def check(profile):
    """One request of the profile against the contract: '' or what is wrong."""
    try:
        if profile in ("baseline", "limited-conn"):
            st, h, b = http(b"GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: l\r\n\r\n")
            if (st, b.strip()) != (200, b"55"):
                return f"GET baseline: {st} {b[:40]!r}"
            st, h, b = http(b"POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\n\r\n20")
            if (st, b.strip()) != (200, b"75"):
                return f"POST baseline: {st} {b[:40]!r}"
            st, h, b = http(b"POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n20\r\n0\r\n\r\n")
            if (st, b.strip()) != (200, b"75"):
                return f"chunked baseline: {st} {b[:40]!r}"
        elif profile == "pipelined":
            st, h, b = http(b"GET /pipeline HTTP/1.1\r\nHost: l\r\n\r\n")
            if (st, b) != (200, b"ok"):
                return f"pipeline: {st} {b[:40]!r}"
        elif profile in ("json", "json-comp"):
            import json
            ae = b"Accept-Encoding: gzip, br\r\n" if profile == "json-comp" else b""
            st, h, b = http(b"GET /json/3?m=2 HTTP/1.1\r\nHost: l\r\n" + ae + b"\r\n")
            enc = h.get("content-encoding")
            if profile == "json-comp":
                if enc == "gzip":
                    import gzip
                    b = gzip.decompress(b)
                elif enc == "br":
                    try:
                        import brotli  # optional
                        b = brotli.decompress(b)
                    except ImportError:
                        return ""  # encoded as asked; body not checked without brotli
                else:
                    return f"json-comp: no Content-Encoding ({enc})"
            elif enc:
                return f"json without Accept-Encoding has Content-Encoding {enc}"
            doc = json.loads(b)
            data = json.load(open(os.path.join(DATA, "dataset.json")))
            want = [dict(d, total=d["price"] * d["quantity"] * 2) for d in data[:3]]
            if doc.get("count") != 3 or doc.get("items") != want:
                return f"json body differs: {b[:80]!r}"
        elif profile == "upload":
            body = b"x" * 500000
            st, h, b = http(b"POST /upload HTTP/1.1\r\nHost: l\r\nContent-Length: 500000\r\n\r\n" + body)
            if (st, b.strip()) != (200, b"500000"):
                return f"upload: {st} {b[:40]!r}"
        elif profile == "static":
            st, h, b = http(b"GET /static/app.js HTTP/1.1\r\nHost: l\r\nAccept-Encoding: br;q=1, gzip;q=0.8\r\n\r\n")
            if st != 200 or "javascript" not in h.get("content-type", ""):
                return f"static: {st} {h.get('content-type')}"
            st, h, b = http(b"GET /static/missing.txt HTTP/1.1\r\nHost: l\r\n\r\n")
            if st != 404:
                return f"static missing: {st}"
    except (OSError, ValueError, IndexError) as e:
        return f"{profile}: {e}"
    return ""


def parse_wrk(text):
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    rps = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    count = int(m.group(1)) if m else 0
    nbytes = 0.0
    if m:
        units = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
        nbytes = float(m.group(4)) * units.get(m.group(5), 1)
    m = re.search(r"\n\s+99%\s+([\d.]+)(us|ms|s)", text)
    p99 = None
    if m:
        p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    return rps, count, nbytes, p99, (int(errors.group(1)) if errors else 0), (sock.group(1) if sock else "")


def load(profile, seconds, conns, cpus):
    """Runs the profile's load; returns (rps, count, bytes, p99 ms, note)."""
    try:
        return run_load(profile, seconds, conns, cpus)
    except subprocess.TimeoutExpired:
        return 0.0, 0, 0.0, None, "load client timed out"


def run_load(profile, seconds, conns, cpus):
    if profile == "echo-ws":
        client = os.path.join(HERE, "..", "ws", "target", "release", "ws_load")
        out = subprocess.run(["taskset", "-c", cpus, client, "--port", str(PORT), "--path", "/ws",
                              "-c", str(conns), "--seconds", str(seconds)],
                             capture_output=True, text=True, timeout=seconds + 60)
        m = re.search(r"messages=(\d+) seconds=([\d.]+)", out.stdout)
        if not m:
            return 0.0, 0, 0.0, None, f"ws_load failed: {out.stderr[-200:]}"
        n, s = int(m.group(1)), float(m.group(2))
        return n / s, n, 0.0, None, ""
    script, args = WRK[profile]
    cmd = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
           "-s", os.path.join(HERE, script), f"http://127.0.0.1:{PORT}"]
    if args:
        cmd += ["--"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    rps, count, nbytes, p99, non2xx, sock = parse_wrk(out.stdout)
    note = ""
    if non2xx:
        note += f"non-2xx={non2xx} "
    if sock:
        note += f"sock:{sock}"
    return rps, count, nbytes, p99, note.strip()


def measure(name, profile, args, out):
    srv = Server(name, args.server_cpus, out)
    srv.start()
    try:
        problem = check(profile)
        if problem:
            return {"error": problem}
        conns = args.conns or CONNS[profile]
        if args.warmup:
            load(profile, args.warmup, conns, args.client_cpus)
        pids = srv.pids()
        u0, k0 = cpu_ticks(pids)
        n0 = cpu_ns(pids)
        rps, count, nbytes, p99, note = load(profile, args.duration, conns, args.client_cpus)
        pids = srv.pids()
        u1, k1 = cpu_ticks(pids)
        n1 = cpu_ns(pids)
        rss = hwm_kb(pids)
        if srv.proc.poll() is not None:
            return {"error": f"exited with {srv.proc.returncode}"}
        per = lambda t: (t * 1e6 / CLK_TCK / count) if count else float("nan")
        cpu = (n1 - n0) / 1e3 / count if count else float("nan")
        return {"rps": rps, "count": count, "usr": per(u1 - u0), "sys": per(k1 - k0), "cpu": cpu, "p99": p99,
                "rss": rss, "bpr": (nbytes / count if count else 0.0), "note": note}
    finally:
        srv.stop()


def upload_rss(args, out):
    print("upload peak RSS: 32 connections, 20,000,000-byte bodies", flush=True)
    for name in ["stoat", "actix"]:
        srv = Server(name, args.server_cpus, out)
        srv.start()
        try:
            base = hwm_kb(srv.pids())
            cmd = ["taskset", "-c", args.client_cpus, "wrk", "-t1", "-c32", f"-d{args.duration}s", "--timeout", "30s",
                   "-s", os.path.join(HERE, "upload.lua"), f"http://127.0.0.1:{PORT}", "--", "20000000"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
            rps, count, _, _, non2xx, _ = parse_wrk(res.stdout)
            peak = hwm_kb(srv.pids())
            print(f"  {name:8} uploads={count:6d} ({rps:.1f}/s) non-2xx={non2xx}  "
                  f"VmHWM at start {base / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB", flush=True)
        finally:
            srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--servers", default=",".join(SERVES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--conns", type=int, default=0, help="wrk connections (default: per profile)")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--client-cpus", default="1")
    ap.add_argument("--upload-rss", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    servers = [s for s in args.servers.split(",") if s]
    for p in profiles:
        if p not in PROFILES:
            die(f"unknown profile {p} (one of {', '.join(PROFILES)})")
    for s in servers:
        if s not in SERVES:
            die(f"unknown server {s} (one of {', '.join(SERVES)})")
        if s != "nginx" and not os.access(os.path.join(BIN, s), os.X_OK):
            die(f"{BIN}/{s} missing: run bench/arena/build.sh")
    if shutil.which("wrk") is None:
        die("wrk not found (apt-get install wrk)")
    if "nginx" in servers and not os.path.exists("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so"):
        subprocess.run(["apt-get", "install", "-y", "-q", "libnginx-mod-http-brotli-static"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if "echo-ws" in profiles:
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "ws_load"],
                       cwd=os.path.join(HERE, "..", "ws"), check=True)
    out = args.out or os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    if args.upload_rss:
        upload_rss(args, out)
        return
    results = {}  # (profile, server) -> [run per round]
    for r in range(args.rounds):
        for p in profiles:
            names = [s for s in servers if p in SERVES[s]]
            k = r % len(names) if names else 0
            for s in names[k:] + names[:k]:
                res = measure(s, p, args, out)
                results.setdefault((p, s), []).append(res)
                line = res.get("error") or (f"{res['rps']:.0f} req/s usr {res['usr']:.2f} sys {res['sys']:.2f} "
                                            f"cpu {res['cpu']:.2f} us/req {res['note']}")
                print(f"round {r + 1} {p:12} {s:16} {line}", flush=True)
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write(repr(results))
    print()
    hdr = f"{'profile':12} {'server':16} {'req/s':>10} {'ratio':>6} {'usr us':>7} {'sys us':>7} {'cpu us':>7} {'p99 ms':>8} {'RSS MiB':>8} {'B/resp':>8}"
    print(hdr)
    print("-" * len(hdr))
    for p in profiles:
        base = results.get((p, "stoat"), [])
        for s in [s for s in servers if p in SERVES[s]]:
            runs = results.get((p, s), [])
            ok = [x for x in runs if "error" not in x and x["count"] > 0]
            if not ok:
                err = runs[0]["error"] if runs else "not run"
                print(f"{p:12} {s:16} n/a: {err}")
                continue
            def med(key):
                # Runs that completed nothing (count 0: NaN per request) are left out.
                vals = [x[key] for x in ok if x[key] is not None and x[key] == x[key]]
                return statistics.median(vals) if vals else float("nan")
            ratios = [x["rps"] / b["rps"] for x, b in zip(runs, base)
                      if "error" not in x and "error" not in b and b["rps"] > 0 and x["rps"] > 0]
            ratio = statistics.median(ratios) if ratios else float("nan")
            usr, sys_ = med("usr"), med("sys")
            print(f"{p:12} {s:16} {med('rps'):10.0f} {ratio:6.2f} {usr:7.2f} {sys_:7.2f} {med('cpu'):7.2f} "
                  f"{med('p99'):8.2f} {max(x['rss'] for x in ok) / 1024:8.1f} {med('bpr'):8.0f}")
    print(f"\nraw results: {out}/results.txt; ratio = req/s over stoat's, paired per round (median);"
          f" cpu = server CPU microseconds per response (schedstat)")


if __name__ == "__main__":
    main()
