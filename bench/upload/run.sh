#!/usr/bin/env bash
# The upload benchmark of issue 5: 2,000 clients each upload a 1 MiB
# Content-Length body at about 64 KiB/s (4 KiB writes) to stoat's bench
# server's streamed `POST /echo`, reading the echo as it comes; the server's
# VmRSS/VmHWM are sampled every 100 ms. Target: peak RSS <= buffer memory
# limit + 32 MiB, every upload answered intact, RSS back within 10% of its
# baseline after.
#
# Usage: bench/upload/run.sh [MODEL] [BUFFER_MEMORY_LIMIT] [CONNS] [ECHO]
#   MODEL per_core (default) or shared; BUFFER_MEMORY_LIMIT in bytes
#   (default 67108864, the configuration's default); CONNS default 2000;
#   ECHO stream (default) or whole (a whole-body handler, for comparison).
# Builds the release examples, runs the server on core 0 and the load on
# core 1 (when taskset exists), and stops both by itself (the load has a
# 300 s deadline). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-per_core}
LIMIT=${2:-67108864}
CONNS=${3:-2000}
ECHO=${4:-stream}
cargo build --release -p stoat --example bench --example upload_load >&2
BIN=target/release/examples
PIN0=() PIN1=()
if command -v taskset >/dev/null; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
PORT=$((20000 + RANDOM % 20000))
"${PIN0[@]}" "$BIN/bench" --port "$PORT" --threads 1 --model "$MODEL" \
    --max-connections 20000 --buffer-memory-limit "$LIMIT" --echo "$ECHO" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.05
done
sleep 1 # let the server's startup allocations settle before the baseline
echo "model=$MODEL buffer_memory_limit=$LIMIT threads=1 echo=$ECHO"
"${PIN1[@]}" "$BIN/upload_load" --addr "127.0.0.1:$PORT" --pid "$SERVER" --conns "$CONNS" \
    --buffer-memory-limit "$LIMIT"
