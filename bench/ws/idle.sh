#!/usr/bin/env bash
# Bytes per idle WebSocket: VmRSS of ws_echo before and after N clients
# (idle_ws.py) have shaken hands, echoed one message and gone idle.
# Pings are off (--ping-sec 0): the connections are measured idle, not
# mid-ping, however long opening them takes on a loaded machine.
# usage: bench/ws/idle.sh [N] [MODEL]   (from the repo root; default 10000 per_core)
set -euo pipefail
n=${1:-10000}
# The limit is split between the network threads, and SO_REUSEPORT does not
# hash evenly: 2N keeps any one thread's share from filling up.
model=${2:-per_core}
dir=$(mktemp -d)
port=9401
target/release/examples/ws_echo --port "$port" --threads 2 --model "$model" \
    --max-connections $((2 * n)) --ping-sec 0 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$dir/log" && break; sleep 0.1; done
# A warm-up round (thread caches, pool), then the measured one.
python3 bench/ws/idle_ws.py --port "$port" -n 200 --hold 0 >/dev/null
sleep 1
before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
python3 bench/ws/idle_ws.py --port "$port" -n "$n" --batch 500 --hold 30 --ready-file "$dir/ready" &
client=$!
for _ in $(seq 1200); do [ -f "$dir/ready" ] && break; sleep 0.1; done
after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
cat "$dir/ready"
echo "model=$model VmRSS before=${before} kB after=${after} kB per connection=$(( (after - before) * 1024 / n )) B"
kill "$client"; wait "$client" || true
