#!/usr/bin/env bash
# callgrind_threads.sh — user instructions per response of the bench example
# (per_core, one network thread, /plaintext, 64 connections) split by thread:
# bench/measure.py instr with callgrind's --separate-threads=yes, then each
# thread's total from its dump file. The network thread is the one whose
# profile holds `Connection::drive`, the access-log writer the one holding
# `access_log::Writer` (or, before the rings, `access_log::combined`).
#
# usage: [MODEL=shared] bench/callgrind_threads.sh NAME DEPTH BIN [server args...]
#   e.g. bench/callgrind_threads.sh alog 1 target/release/examples/bench --access-log /tmp/a.log
# MODEL (default per_core): the threading model; `shared` runs one network
# thread and one accept thread (the accept thread's profile is "other").
# Under callgrind every thread runs on core 0, one at a time: the log writer
# (about 2,000 instructions a line) cannot keep up with the network thread,
# its queue fills and lines are dropped, and a dropped line costs the
# network thread less than a logged one. For a figure without drops give
# the log a queue the whole run fits in (`--access-log-queue 100000`), and
# compare the log's line count with the responses (warm-up included).
# Output files: bench/results/threads-NAME-pDEPTH.*
set -uo pipefail
[[ $# -ge 3 ]] || { sed -n '2,20p' "$0"; exit 2; }
name=$1 depth=$2 bin=$3; shift 3
cd "$(dirname "$0")/.."
out=bench/results/threads-$name-p$depth
mkdir -p bench/results
rm -f "$out".out*
if [[ $depth == 1 ]]; then
  load="--requests 20000 --conns 64"; req=20000
else
  load="--requests 64000 --conns 64 --depth $depth"; req=64000
fi
CALLGRIND_OPTS="--separate-threads=yes" python3 bench/measure.py instr --out "$out" --load="$load" -- \
  "$bin" --port '{port}' --threads 1 --model "${MODEL:-per_core}" "$@" >"$out.json" 2>"$out.err"
python3 - "$out" "$req" "$name" "$depth" <<'PY'
import glob, re, sys
out, req, name, depth = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = []
for f in sorted(glob.glob(out + ".out.1-*")):
    txt = open(f, errors="replace").read()
    m = re.search(r"^(?:summary|totals):\s+(\d+)", txt, re.M)
    ir = int(m.group(1)) if m else 0
    kind = "other"
    if "Connection::drive" in txt:
        kind = "network"
    elif "access_log::Writer" in txt or "access_log::combined" in txt:
        kind = "log-writer"
    rows.append((f.rsplit("-", 1)[1], kind, ir))
if not rows:
    sys.exit(f"no dump files {out}.out.1-*: see {out}.err")
total = sum(r[2] for r in rows)
net = sum(r[2] for r in rows if r[1] == "network")
parts = ", ".join(f"t{t}:{k}={ir / req:,.0f}" for t, k, ir in rows if ir)
print(f"{name} p{depth}: all threads {total / req:,.0f} Ir/resp; network thread {net / req:,.0f}; [{parts}]")
PY
