#!/usr/bin/env bash
# Weasel benchmarks (see README.md beside this file). Interleaved rounds, so a
# shared machine's noise hits both sides of each ratio alike.
#
#   weasel/bench/run.sh [ROUNDS] [SECONDS]
#
# 1. Durable commits/s, 64 connections, 1 KiB values: group commit as built
#    (weasel.max_batch = 256) against max_batch = 1, fsync on in both.
# 2. Inline GET /v1/kv/{key} against stoat's bench example GET /plaintext,
#    both with one network thread pinned to CPU 0, wrk pinned to CPU 1.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WEASEL=$ROOT/target/release/weasel
BENCH=$ROOT/target/release/examples/bench
OUT=${OUT:-$(mktemp -d /tmp/weasel-bench.XXXXXX)}
mkdir -p "$OUT"
# Two builds: a target-selection flag (`--example`) would limit the first
# one to examples, and the weasel binary would not be built.
(cd "$ROOT" && cargo build --release -p weasel --bin weasel && cargo build --release -p stoat --example bench) >/dev/null 2>&1
echo "results in $OUT" >&2

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# start_weasel MAX_BATCH NETWORK_THREADS -> sets PID PORT DATA
start_weasel() {
  PORT=$(port)
  DATA=$(mktemp -d "$OUT/data.XXXX")
  cat >"$OUT/w.toml" <<TOML
[http]
network_threads = $2
[http.pipelines.commit_status]
ring_buffer_size = 1024
threads = 1
[weasel]
max_batch = $1
fsync = true
TOML
  taskset -c 0 "$WEASEL" --config "$OUT/w.toml" --data-dir "$DATA" --port "$PORT" 2>>"$OUT/weasel.log" &
  PID=$!
  wait_port "$PORT"
}
stop() { kill -INT "$PID"; wait "$PID" 2>/dev/null || true; }

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p() { awk -v k="$2" '$1==k {print $2}' "$1"; }

echo "## commits: group vs batch 1 (64 conns, 1 KiB, fsync on, ${SECS}s x $ROUNDS rounds)"
echo "| round | group commits/s | p50 ms | p99 ms | batch-1 commits/s | p50 ms | p99 ms | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  for mode in group one; do
    if [ $mode = group ]; then start_weasel 256 2; else start_weasel 1 2; fi
    taskset -c 1 wrk -t1 -c64 -d"${SECS}s" --latency -s "$HERE/commit.lua" "http://127.0.0.1:$PORT" -- "r$r$mode" \
      >"$OUT/commit-$mode-$r.txt" 2>&1
    stop
    rm -rf "$DATA"
  done
  g=$(rps "$OUT/commit-group-$r.txt"); o=$(rps "$OUT/commit-one-$r.txt")
  printf "| %s | %s | %.2f | %.2f | %s | %.2f | %.2f | %.1fx |\n" "$r" \
    "$g" "$(echo "$(p "$OUT/commit-group-$r.txt" latency_p50_us)/1000" | bc -l)" \
    "$(echo "$(p "$OUT/commit-group-$r.txt" latency_p99_us)/1000" | bc -l)" \
    "$o" "$(echo "$(p "$OUT/commit-one-$r.txt" latency_p50_us)/1000" | bc -l)" \
    "$(echo "$(p "$OUT/commit-one-$r.txt" latency_p99_us)/1000" | bc -l)" \
    "$(echo "$g/$o" | bc -l)"
  grep -h commit_failed "$OUT/commit-group-$r.txt" "$OUT/commit-one-$r.txt" | grep -v ' 0$' || true
done
echo
echo "commits per durable write (runs in order: group, batch-1, group, ...; from weasel's exit lines):"
grep -h "per write" "$OUT/weasel.log" | sed 's/^/    /' || true

echo
echo "## inline reads: GET /v1/kv/{key} vs stoat bench GET /plaintext (1 network thread, 64 conns, ${SECS}s x $ROUNDS)"
echo "| round | weasel GET /v1/kv req/s | stoat /plaintext req/s | ratio |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  start_weasel 256 1
  curl -sf -XPOST "http://127.0.0.1:$PORT/v1/commit" -H 'Content-Type: application/json' \
    -d '{"request_id":"seed","operations":[{"op":"set","key":"greeting","value":"Hello, World!"}]}' >/dev/null
  wrk -t1 -c64 -d1s "http://127.0.0.1:$PORT/v1/kv/greeting" >/dev/null 2>&1
  taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/v1/kv/greeting" >"$OUT/kv-$r.txt" 2>&1
  stop; rm -rf "$DATA"
  PORT=$(port)
  taskset -c 0 "$BENCH" --port "$PORT" --threads 1 2>>"$OUT/bench.log" & PID=$!
  wait_port "$PORT"
  wrk -t1 -c64 -d1s "http://127.0.0.1:$PORT/plaintext" >/dev/null 2>&1
  taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/plaintext" >"$OUT/plain-$r.txt" 2>&1
  stop
  k=$(rps "$OUT/kv-$r.txt"); s=$(rps "$OUT/plain-$r.txt")
  printf "| %s | %s | %s | %.2f |\n" "$r" "$k" "$s" "$(echo "$k/$s" | bc -l)"
done
