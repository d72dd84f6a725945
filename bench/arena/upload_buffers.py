#!/usr/bin/env python3
"""upload CPU per upload by stoat's read buffer size, against actix.

usage: upload_buffers.py ROUNDS   (after build.sh; stoat = build/bin/stoat)

Each round runs the upload profile (upload.lua's mix, 32 connections, 1 s
warm-up, 5 s measured) against stoat with --buffer-size 16 KiB, 64 KiB and
256 KiB and against actix, and prints the server's CPU per upload
(schedstat) and peak RSS; then the medians.
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arena  # noqa: E402

STOAT = os.path.join(arena.BIN, "stoat")
variants = {
  'stoat-16k': [STOAT,'--port','8080','--threads','1','--data',arena.DATA,'--buffer-size','16384'],
  'stoat-64k': [STOAT,'--port','8080','--threads','1','--data',arena.DATA,'--buffer-size','65536'],
  'stoat-256k': [STOAT,'--port','8080','--threads','1','--data',arena.DATA,'--buffer-size','262144'],
  'actix': [os.path.join(arena.BIN,'actix')],
}
res = {k: [] for k in variants}
for r in range(int(sys.argv[1])):
    for name, cmd in variants.items():
        p = subprocess.Popen(['taskset','-c','0']+cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        arena.wait_port(8080, p)
        arena.load('upload', 1, 32, '1')
        pids = arena.tree(p.pid); n0 = arena.cpu_ns(pids)
        rps, count, _, _, note = arena.load('upload', 5, 32, '1')
        n1 = arena.cpu_ns(arena.tree(p.pid)); rss = arena.hwm_kb(arena.tree(p.pid))
        p.terminate(); p.wait()
        while not arena.port_free(8080): time.sleep(0.05)
        us = (n1-n0)/1e3/count if count else float('nan')
        res[name].append(us)
        print(f"round {r+1} {name:11} uploads {count:4d} cpu {us:8.1f} us/upload  VmHWM {rss/1024:.1f} MiB {note}", flush=True)
for name, v in res.items():
    v = [x for x in v if x == x]
    print(f"{name:11} median {statistics.median(v):8.1f} us/upload over {len(v)} runs")
