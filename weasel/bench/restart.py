#!/usr/bin/env python3
"""Time from exec to the first answer of GET /v1/version, and where it went.

    weasel/bench/restart.py DATADIR [ROUNDS]

Starts target/release/weasel (or $WEASEL) on DATADIR, asks GET /v1/version
every millisecond until it answers, then reads the process's scheduler
statistics (/proc/PID/task/*/schedstat: time on a CPU, time runnable but
waiting for one) and stops it with SIGINT. On a loaded machine the wall
time is CPU time plus run-queue wait; anything else is the process waiting
on itself (a sleep, a lock, I/O).
"""
import os, signal, socket, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
weasel = os.environ.get("WEASEL", os.path.join(here, "..", "..", "target", "release", "weasel"))
data, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
for _ in range(rounds):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    conf = f"/tmp/weasel-restart-{os.getpid()}.toml"
    with open(conf, "w") as f:
        f.write(f"[http]\nport = {port}\n")
    t0 = time.monotonic()
    p = subprocess.Popen([weasel, "--config", conf, "--data-dir", data],
                         stderr=subprocess.PIPE, text=True)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
            if c.recv(100).startswith(b"HTTP/1.1 200"):
                c.close(); break
            c.close()
        except OSError:
            if p.poll() is not None:
                sys.exit(p.stderr.read())
            time.sleep(0.001)
    wall = time.monotonic() - t0
    run = wait = 0
    for tid in os.listdir(f"/proc/{p.pid}/task"):
        try:
            r, w, _ = open(f"/proc/{p.pid}/task/{tid}/schedstat").read().split()
            run += int(r); wait += int(w)
        except OSError:
            pass
    p.send_signal(signal.SIGINT)
    err = p.stderr.read()
    p.wait()
    os.unlink(conf)
    line = next((l for l in err.splitlines() if "recovered" in l), "").split(" in /")[0]
    print(f"serving after {wall:.3f} s wall; on CPU {run/1e9:.3f} s, waiting for a CPU "
          f"{wait/1e9:.3f} s (all threads); {line}")
