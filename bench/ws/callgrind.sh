#!/usr/bin/env bash
# User-space instructions per echoed message (callgrind), for Stoat's
# ws_echo and the tungstenite peer: each server runs under callgrind twice,
# once for 64 connections that only shake hands and close, once for the same
# plus N messages; the difference over N is the cost of one message (read,
# decode, unmask, deliver, encode, write), startup and handshakes excluded.
# Server pinned to core 0, client to core 1. `tungstenite-4k` is the peer
# with a 4 KiB read buffer instead of its 128 KiB default, which it zeroes on
# every read (98% of its instructions per message with the default).
#
# usage: bench/ws/callgrind.sh [N]   (from the repo root, after
#   cargo build --release -p stoat --example ws_echo and
#   (cd bench/ws && cargo build --release))
set -euo pipefail
n=${1:-20000}
out=$(mktemp -d)
load=bench/ws/target/release/ws_load
run() { # name port messages server...
    local name=$1 port=$2 msgs=$3; shift 3
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$name.$msgs" "$@" \
        >/dev/null 2>"$out/$name.$msgs.log" &
    local pid=$!
    for _ in $(seq 300); do
        grep -q "listening on" "$out/$name.$msgs.log" 2>/dev/null && break
        sleep 0.1
    done
    if [ "$msgs" -gt 0 ]; then
        taskset -c 1 "$load" --port "$port" -c 64 --messages "$msgs" >/dev/null
    else
        taskset -c 1 "$load" --port "$port" -c 64 --messages 0 >/dev/null
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    # The summary line: every thread's instructions (one file: no
    # --separate-threads).
    awk '/^summary:/ {s += $2} END {printf "%.0f\n", s}' "$out/$name.$msgs"
}
for spec in "stoat 9301 target/release/examples/ws_echo --port 9301 --threads 1" \
            "tungstenite 9302 bench/ws/target/release/tung_echo --port 9302" \
            "tungstenite-4k 9303 bench/ws/target/release/tung_echo --port 9303 --read-buffer 4096"; do
    set -- $spec
    name=$1 port=$2; shift 2
    base=$(run "$name" "$port" 0 "$@")
    full=$(run "$name" "$port" "$n" "$@")
    echo "$name: Ir(handshakes only)=$base Ir(+$n messages)=$full per message=$(( (full - base) / n ))"
done
rm -rf "$out"
