#!/usr/bin/env bash
# Issue 17's long-run aim: 1,000,000 durable commits overwriting 10,000 keys
# of 1 KiB (64 connections, fsync on), then: the data directory's size
# against the live data, and the time from start to listening on restart.
#
#   weasel/bench/longrun.sh [COMMITS]
#
# WEASEL_EXTRA: lines for the [weasel] table (e.g. "max_disk_percent = 0");
# KEEP=1 keeps the data directory. The peak of the data directory's size is
# sampled every 10 ms (disk_peak.py); the restart is timed to "listening".
set -euo pipefail
COMMITS=${1:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WEASEL=${WEASEL:-$ROOT/target/release/weasel}
OUT=$(mktemp -d /tmp/weasel-longrun.XXXXXX)
trap 'kill $PID 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$OUT"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$OUT/w.toml" <<TOML
[http]
port = $PORT
[weasel]
${WEASEL_EXTRA:-}
TOML
start() {
  local t0=$(date +%s.%N)
  "$WEASEL" --config "$OUT/w.toml" --data-dir "$OUT/data" 2>"$OUT/err.$1" &
  PID=$!
  until grep -q "listening on" "$OUT/err.$1" 2>/dev/null; do
    kill -0 $PID 2>/dev/null || { cat "$OUT/err.$1"; exit 1; }
    sleep 0.01
  done
  local t1=$(date +%s.%N)
  echo "start $1: $(python3 -c "print(f'{$t1-$t0:.3f}')") s to listening; $(grep recovered "$OUT/err.$1")"
}
start 1
python3 "$HERE/disk_peak.py" "$OUT/data" "$OUT/stop-peak" >"$OUT/peak" &
SAMPLER=$!
NONCE=$(date +%s)
V=0
ROUND=0
while [ "$V" -lt "$COMMITS" ]; do
  ROUND=$((ROUND+1))
  wrk -t2 -c64 -d20s -s "$HERE/longrun.lua" "http://127.0.0.1:$PORT/" -- "$NONCE-$ROUND" >/dev/null
  V=$(curl -s "http://127.0.0.1:$PORT/v1/version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
  echo "version $V; data dir $(du -sb "$OUT/data" | cut -f1) bytes: $(ls "$OUT/data" | tr '\n' ' ')"
done
LIVE=$(python3 - "$PORT" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
total, after = 0, None
while True:
    url = f"http://127.0.0.1:{port}/v1/kv?limit=1000" + (f"&start_after={after}" if after else "")
    page = json.load(urllib.request.urlopen(url))
    for it in page["items"]:
        total += len(it["key"]) + len(it["value"])
        after = it["key"]
    if not page["truncated"]:
        break
print(total)
PY
)
HISTORY=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^weasel_log_bytes_total/ {print $2}')
echo "log bytes written (history): $HISTORY"
kill -INT $PID; wait $PID || true
touch "$OUT/stop-peak"; wait $SAMPLER
PEAK=$(cut -d' ' -f2 "$OUT/peak")
DISK=$(du -sb "$OUT/data" | cut -f1)
echo "final version $V; live data $LIVE bytes; data dir $DISK bytes = $(python3 -c "print(f'{$DISK/$LIVE:.2f}')")x live"
echo "peak during the run: $PEAK bytes = $(python3 -c "print(f'{$PEAK/$LIVE:.2f}')")x live; $(cut -d' ' -f3- "$OUT/peak")"
ls -la "$OUT/data"
start 2
kill -INT $PID; wait $PID || true
