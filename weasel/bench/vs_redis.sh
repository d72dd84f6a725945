#!/usr/bin/env bash
# Issue 17 item 8: durable commits/s against Redis with an fsync per write.
#   weasel/bench/vs_redis.sh [ROUNDS] [SECONDS]
# Interleaved rounds; each server pinned to CPU 0, the load to CPU 1.
# Redis: redis-server --appendonly yes --appendfsync always, load
#   redis-benchmark -c 64 -t set -d 1024 -r 4096 (SET of 1 KiB over 4,096 keys).
# Weasel: fsync on (group commit), load wrk -c64 with commit.lua (1 KiB
#   values over 4,096 keys per thread, a unique request_id each).
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WEASEL=${WEASEL:-$ROOT/target/release/weasel}
OUT=$(mktemp -d /tmp/weasel-redis.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
N=$((SECS * 20000))
for r in $(seq 1 "$ROUNDS"); do
  # Redis
  P=$(port); D=$(mktemp -d "$OUT/redis.XXXX")
  taskset -c 0 redis-server --port "$P" --bind 127.0.0.1 --dir "$D" --appendonly yes \
    --appendfsync always --save "" --daemonize no >"$D/log" 2>&1 &
  RP=$!
  wait_port "$P"
  RS=$(taskset -c 1 redis-benchmark -p "$P" -c 64 -t set -d 1024 -r 4096 -n "$N" -q 2>/dev/null \
    | tr '\r' '\n' | grep -Eo 'SET: [0-9.]+' | tail -1 | cut -d' ' -f2)
  kill "$RP"; wait "$RP" 2>/dev/null || true
  # Weasel
  P=$(port); D=$(mktemp -d "$OUT/weasel.XXXX")
  printf '[http]\nport = %s\nnetwork_threads = 1\n' "$P" >"$D.toml"
  taskset -c 0 "$WEASEL" --config "$D.toml" --data-dir "$D/data" 2>"$D.err" &
  WP=$!
  wait_port "$P"
  WS=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -s "$HERE/commit.lua" "http://127.0.0.1:$P/" -- "r$r" \
    | awk '/Requests\/sec/ {print $2}')
  kill -INT "$WP"; wait "$WP" 2>/dev/null || true
  echo "round $r: redis $RS sets/s, weasel $WS commits/s, ratio $(python3 -c "print(f'{$WS/$RS:.2f}')")"
done
