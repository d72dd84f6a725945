#!/usr/bin/env bash
# syscalls.sh — system calls per request of an HTTP server, counted with the
# `raw_syscalls:sys_enter` tracepoint.
#
# usage: bench/syscalls.sh NAME PIPELINE CMD...
#   NAME      label; output goes to bench/results/syscalls-NAME-pPIPELINE.*
#   PIPELINE  1 = no pipelining, N > 1 = N requests per write (pipeline.lua)
#   CMD...    the server command; `{port}` and `{threads}` (= 1) are replaced
# environment: PORT (default: a free port from 19000 up), DURATION (default 5),
#   CONNS (default 64), PIPELINE_LUA (default /work/shared/bench/pipeline.lua),
#   STRACE=1 adds a second run with `strace -c -f -p PID` attached, for the
#   breakdown by call (strace slows the server: its counts are for the mix,
#   not the total).
#
# What it does: the server runs pinned to core 0; a 1 s unmeasured wrk
# warm-up; `perf stat -e raw_syscalls:sys_enter -p PID` runs across
# `taskset -c 1 wrk -t1 -cCONNS -dDURATION [-s pipeline.lua -- N]
# http://127.0.0.1:PORT/plaintext`; the server is stopped by its PID;
# prints syscalls / wrk's responses.
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
base=$out/syscalls-$name-p$depth
url=http://127.0.0.1:$port/plaintext
wrkargs=(-t1 -c"$conns")
script=()
((depth > 1)) && script=(-s "$lua" -- "$depth")

start_server() { # $@: prefix command
  "$@" taskset -c 0 "${cmd[@]}" >"$base.server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    ss -Htln "sport = :$port" | grep -q . && return
    kill -0 "$pid" 2>/dev/null || { cat "$base.server.log"; exit 1; }
    sleep 0.1
  done
}
stop_server() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; }

start_server
trap stop_server EXIT
taskset -c 1 wrk "${wrkargs[@]}" -d1 "$url" "${script[@]}" >/dev/null
perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$base.perf.csv" &
perfpid=$!
sleep 0.2
taskset -c 1 wrk "${wrkargs[@]}" -d"$duration" "$url" "${script[@]}" >"$base.wrk.txt"
kill -INT "$perfpid"; wait "$perfpid" || true
stop_server
trap - EXIT
responses=$(awk '/requests in/ { print $1 }' "$base.wrk.txt")
calls=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$base.perf.csv")
python3 - "$name" "$depth" "$calls" "$responses" <<'PY'
import sys
name, depth, calls, resp = sys.argv[1:]
calls, resp = int(calls), int(resp)
print(f"{name} p{depth}: {calls / resp:.3f} syscalls/request ({calls:,} syscalls, {resp:,} responses)")
PY

if [[ ${STRACE:-0} == 1 ]]; then
  start_server
  trap stop_server EXIT
  taskset -c 1 wrk "${wrkargs[@]}" -d1 "$url" "${script[@]}" >/dev/null
  strace -c -f -o "$base.strace.txt" -p "$pid" 2>/dev/null &
  stracepid=$!
  sleep 0.5
  taskset -c 1 wrk "${wrkargs[@]}" -d"$duration" "$url" "${script[@]}" >"$base.strace.wrk.txt"
  kill -INT "$stracepid"; wait "$stracepid" || true
  stop_server
  trap - EXIT
  sresp=$(awk '/requests in/ { print $1 }' "$base.strace.wrk.txt")
  echo "strace -c -f ($sresp responses; calls per response):"
  awk -v r="$sresp" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" {
    if ($4 / r >= 0.0005) printf "  %-16s %8.4f\n", $NF, $4 / r }' "$base.strace.txt"
fi
