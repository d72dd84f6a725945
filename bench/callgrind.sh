#!/usr/bin/env bash
# callgrind.sh — user-space instructions per request of an HTTP server, counted
# by callgrind (stable on a shared machine, unlike times).
#
# usage: bench/callgrind.sh NAME PIPELINE CMD...
#   NAME      label; output goes to bench/results/callgrind-NAME-pPIPELINE.*
#   PIPELINE  1 = no pipelining, N > 1 = N requests per write (pipeline.lua)
#   CMD...    the server command; `{port}` and `{threads}` (= 1) are replaced
# environment: PORT (default: a free port from 19000 up), DURATION (default 5),
#   CONNS (default 64), PIPELINE_LUA (default /work/shared/bench/pipeline.lua)
#
# What it does: the server runs under `valgrind --tool=callgrind` pinned to
# core 0; a 2 s unmeasured wrk warm-up; `callgrind_control -z` zeroes the
# counters (handled when the server next runs, i.e. as the measured load
# starts); `taskset -c 1 wrk -t1 -cCONNS -dDURATION [-s pipeline.lua -- N]
# http://127.0.0.1:PORT/plaintext`; the server is stopped by its PID (SIGTERM),
# callgrind writes the counts since the zero; prints Ir / wrk's responses.
# The stop (graceful shutdown) is counted too: a few thousand instructions
# against tens of millions.
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,20p' "$0"; exit 2; }
name=$1 depth=$2; shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$here/results; mkdir -p "$out"
duration=${DURATION:-5} conns=${CONNS:-64}
lua=${PIPELINE_LUA:-/work/shared/bench/pipeline.lua}
port=${PORT:-}
if [[ -z $port ]]; then
  port=19000
  while ss -Htln "sport = :$port" | grep -q .; do port=$((port + 1)); done
fi
cmd=()
for a in "$@"; do a=${a//\{port\}/$port}; cmd+=("${a//\{threads\}/1}"); done
base=$out/callgrind-$name-p$depth
rm -f "$base".out*
taskset -c 0 valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$base.out" \
  "${cmd[@]}" >"$base.server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  ss -Htln "sport = :$port" | grep -q . && break
  kill -0 "$pid" 2>/dev/null || { cat "$base.server.log"; exit 1; }
  sleep 0.1
done
wrkargs=(-t1 -c"$conns")
url=http://127.0.0.1:$port/plaintext
script=()
((depth > 1)) && script=(-s "$lua" -- "$depth")
taskset -c 1 wrk "${wrkargs[@]}" -d2 "$url" "${script[@]}" >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1 &
zpid=$!
sleep 0.5
taskset -c 1 wrk "${wrkargs[@]}" -d"$duration" "$url" "${script[@]}" >"$base.wrk.txt"
wait "$zpid"
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
responses=$(awk '/requests in/ { print $1 }' "$base.wrk.txt")
ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$base.out")
errors=$(grep -E 'Non-2xx|Socket errors' "$base.wrk.txt" || true)
python3 - "$name" "$depth" "$ir" "$responses" "$errors" <<'PY'
import sys
name, depth, ir, resp, errors = sys.argv[1:]
ir, resp = int(ir), int(resp)
print(f"{name} p{depth}: {ir / resp:,.0f} Ir/request ({ir:,} Ir, {resp:,} responses)" + (f"  [{errors}]" if errors else ""))
PY
