#!/usr/bin/env python3
"""measure.py — user instructions (callgrind) or syscalls (perf) of a server
across an exact number of requests from bench/load.py.

usage: measure.py instr|syscalls --out BASE [--port P] [--warm N]
                  [--load "LOAD ARGS"] -- CMD...
  instr     the server runs under `valgrind --tool=callgrind` pinned to core 0;
            after the warm-up, `callgrind_control -z` zeroes its counters
            (through vgdb, so it lands while the server is idle, between the
            warm-up and the measured load); after the measured load and once
            the server has no connection left, `callgrind_control -d` dumps
            the counts, which cover exactly the measured requests (no start,
            no warm-up, no stop). Output: BASE.out.1 (callgrind_annotate it).
  syscalls  the server runs natively pinned to core 0; `perf stat -e
            raw_syscalls:sys_enter -p PID` (every thread) is attached across
            the measured load and stopped once the server has no connection
            left.
  --load    arguments for bench/load.py (--requests, --conns, --depth,
            --per-conn, --close, --path); the client runs pinned to core 1
  --warm    warm-up requests, same load shape (default: a tenth of the
            measured requests, at least 200)
  CMD       the server; `{port}` is replaced (the port: --port, else a free
            one from 19000 up)
Prints one JSON line: {"count": Ir or syscalls, "requests": R,
"connections": M, "per_request": .., "per_connection": ..}.
"""

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port(start=19000):
    port = start
    while True:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                port += 1


def wait_listening(port, proc, log, deadline=60.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"measure.py: server exited ({proc.returncode}):\n{open(log).read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"measure.py: server not listening on {port} after {deadline} s")


def server_conns(port):
    """TCP connections of the server's port that are not closed yet on its side."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "connected", f"sport = :{port}"],
        capture_output=True, text=True, check=False,
    ).stdout
    # TIME-WAIT is the kernel's; the server is done with those.
    return sum(1 for line in out.splitlines() if line.strip() and not line.startswith("TIME-WAIT"))


def wait_drained(port, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server_conns(port) == 0:
            return True
        time.sleep(0.05)
    return False


def load(port, args, quiet=False):
    cmd = ["taskset", "-c", "1", sys.executable, os.path.join(HERE, "load.py"), "--port", str(port)] + args
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"measure.py: load failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    f = r.stdout.split()
    return int(f[f.index("requests") + 1]), int(f[f.index("connections") + 1])


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def callgrind_control(flag, pid, done=lambda: False):
    """Runs `callgrind_control FLAG PID`. vgdb has been seen to hang when
    several callgrind runs share a loaded machine: a call that times out or
    fails is tried again (up to three times) unless `done()` says it took
    effect anyway (for a dump: the dump file exists). Zeroing twice before
    the load is harmless."""
    last = ""
    for _ in range(3):
        try:
            r = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True,
                               text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as e:
            last = f"timed out after {e.timeout} s"
        else:
            if r.returncode == 0:
                return
            last = r.stdout + r.stderr
        if done():
            return
    sys.exit(f"measure.py: callgrind_control {flag} failed three times:\n{last}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["instr", "syscalls"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int)
    ap.add_argument("--warm", type=int)
    ap.add_argument("--load", default="")
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("measure.py: the server command goes after --")
    cut = argv.index("--")
    a = ap.parse_args(argv[:cut])
    cmd = argv[cut + 1:]
    if not cmd:
        sys.exit("measure.py: no server command")
    port = a.port or free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    load_args = shlex.split(a.load)
    requests = 10000
    if "--requests" in load_args:
        requests = int(load_args[load_args.index("--requests") + 1])
    warm = a.warm if a.warm is not None else max(200, requests // 10)
    warm_args = list(load_args)
    if "--requests" in warm_args:
        warm_args[warm_args.index("--requests") + 1] = str(warm)
    else:
        warm_args += ["--requests", str(warm)]

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    log = a.out + ".server.log"
    env = dict(os.environ, PORT=str(port))
    if a.what == "instr":
        for f in os.listdir(os.path.dirname(os.path.abspath(a.out))):
            if f.startswith(os.path.basename(a.out) + ".out"):
                os.remove(os.path.join(os.path.dirname(os.path.abspath(a.out)), f))
        full = ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--vgdb=yes",
                f"--callgrind-out-file={a.out}.out"] + shlex.split(os.environ.get("CALLGRIND_OPTS", "")) + cmd
    else:
        full = ["taskset", "-c", "0"] + cmd
    with open(log, "w") as lf:
        proc = subprocess.Popen(full, stdout=lf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        wait_listening(port, proc, log)
        load(port, warm_args)
        if not wait_drained(port):
            sys.exit("measure.py: connections still open after the warm-up")
        if a.what == "instr":
            callgrind_control("-z", proc.pid)
            req, conns = load(port, load_args)
            if not wait_drained(port):
                sys.exit("measure.py: connections still open after the load")
            callgrind_control("-d", proc.pid, done=lambda: os.path.exists(a.out + ".out.1"))
            count = None
            with open(a.out + ".out.1") as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        count = int(line.split()[1])
                        break
        else:
            csv = a.out + ".perf.csv"
            perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter",
                                     "-p", str(proc.pid), "-o", csv])
            time.sleep(0.3)
            req, conns = load(port, load_args)
            wait_drained(port)
            perf.send_signal(signal.SIGINT)
            perf.wait()
            count = None
            with open(csv) as f:
                for line in f:
                    if "raw_syscalls:sys_enter" in line:
                        count = int(line.split(",")[0])
        if count is None:
            sys.exit("measure.py: no count found")
    finally:
        stop(proc)
    print(json.dumps({"count": count, "requests": req, "connections": conns,
                      "per_request": count / req, "per_connection": count / conns}))


if __name__ == "__main__":
    main()
