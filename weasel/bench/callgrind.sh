#!/usr/bin/env bash
# Instructions per request under callgrind (stable on a shared machine):
# weasel GET /v1/kv/{key} against stoat's bench example GET /plaintext,
# both with one network thread. Each server runs twice (wrk for SHORT and
# LONG seconds, one connection); (Ir_long - Ir_short) / (n_long - n_short)
# cancels start-up and shutdown.
#
#   weasel/bench/callgrind.sh [SHORT] [LONG]
set -euo pipefail
SHORT=${1:-2}
LONG=${2:-6}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/weasel-cg.XXXXXX)}
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -p weasel --bin weasel && cargo build --release -p stoat --example bench) >/dev/null 2>&1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
cat >"$OUT/w.toml" <<TOML
[http]
network_threads = 1
[http.pipelines.commit_status]
threads = 1
TOML

# run NAME SECONDS -> prints "Ir requests"
run() {
  local name=$1 secs=$2 port data pid
  port=$(port)
  if [ "$name" = weasel ]; then
    data=$(mktemp -d "$OUT/data.XXXX")
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$name.$secs" \
      "$ROOT/target/release/weasel" --config "$OUT/w.toml" --data-dir "$data" --port "$port" \
      2>>"$OUT/valgrind.log" &
    pid=$!
    wait_port "$port"
    curl -sf "http://127.0.0.1:$port/v1/commit" -H 'Content-Type: application/json' \
      -d '{"request_id":"seed","operations":[{"op":"set","key":"greeting","value":"Hello, World!"}]}' >/dev/null
    path=/v1/kv/greeting
  else
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$name.$secs" \
      "$ROOT/target/release/examples/bench" --port "$port" --threads 1 2>>"$OUT/valgrind.log" &
    pid=$!
    wait_port "$port"
    path=/plaintext
  fi
  wrk -t1 -c1 -d"${secs}s" "http://127.0.0.1:$port$path" >"$OUT/wrk.$name.$secs" 2>&1
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  local ir n
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$OUT/cg.$name.$secs")
  n=$(awk '/requests in/ {print $1}' "$OUT/wrk.$name.$secs")
  echo "$ir $n"
}

for name in weasel stoat; do
  read -r ir1 n1 < <(run "$name" "$SHORT")
  read -r ir2 n2 < <(run "$name" "$LONG")
  echo "$name $(( (ir2 - ir1) / (n2 - n1) )) instructions/request (runs: $n1 and $n2 requests)"
done | tee "$OUT/summary.txt"
