#!/usr/bin/env bash
# accept.sh — the accept path: user instructions (callgrind) and syscalls
# (raw_syscalls tracepoint) per new connection, for stoat and its peers.
#
# usage: bench/accept.sh [TARGET...]
#   TARGET  stoat-per_core stoat-shared may hyper actix nginx rust-epoll
#           may-arena (default: all whose binary is there; peers are built
#           out of tree by bench/peers.sh); also, not in the default list,
#           stoat-per_core-deferred, stoat-shared-deferred and
#           nginx-deferred (TCP_DEFER_ACCEPT: `--defer-accept 1`, nginx's
#           `listen ... deferred`)
# environment: CONNECTIONS (measured connections per mode, default 1000),
#   CONNS (connections open at once, default 1: every connection meets the
#   same sequence of events, so counts repeat), MODES (default "close ten"),
#   SKIP_SYSCALLS=1 / SKIP_INSTR=1, STOAT (the stoat bench binary, default
#   target/release/examples/bench)
#
# Two modes, both through bench/load.py (exact counts; a client that closes
# by itself, so a server that ignores `Connection: close`, like
# may-minihttp, still gets a new connection per request):
#   close  one request per connection with `Connection: close`
#   ten    ten requests per connection, then the client closes (HttpArena's
#          limited-conn profile)
# Per target and mode: bench/measure.py instr (server under callgrind on
# core 0, counters zeroed after a warm-up, dumped once the server holds no
# connection: the count covers exactly CONNECTIONS connections, accept to
# close) and bench/measure.py syscalls (server native on core 0, perf stat
# attached across the same load). The client runs on core 1. Prints a
# markdown table; raw results in bench/results/accept-*.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=$here/results; mkdir -p "$out"
connections=${CONNECTIONS:-1000} conns=${CONNS:-1}
modes=${MODES:-close ten}
stoat=${STOAT:-$root/target/release/examples/bench}
peers=$here/peers

nginx_conf() { # PORT [LISTEN-FLAGS] -> dir of a single-process, foreground nginx config
  local dir; dir=$(mktemp -d -t accept-nginx.XXXXXX)
  sed -e 's/@THREADS@/1/' -e "s|@PREFIX@|$dir|g" -e 's/@MAXCONN@/4096/' -e 's/@NOFILE@/8192/' \
      -e "s/@PORT@/$1/" -e 's/master_process on;/master_process off;\ndaemon off;/' \
      -e "s/backlog=4096;/backlog=4096${2:+ $2};/" \
      /work/shared/bench/peers/nginx.conf >"$dir/nginx.conf"
  echo "$dir"
}

# TARGET PORT -> "PATH|CMD" (nothing if the binary is missing)
spec() {
  case $1 in
    stoat-per_core) [[ -x $stoat ]] && echo "/plaintext|$stoat --port $2 --threads 1 --model per_core" ;;
    # The default table: the shared sweep walks only the slots handed out.
    stoat-shared) [[ -x $stoat ]] && echo "/plaintext|$stoat --port $2 --threads 1 --model shared" ;;
    stoat-per_core-deferred) [[ -x $stoat ]] && echo "/plaintext|$stoat --port $2 --threads 1 --model per_core --defer-accept 1" ;;
    stoat-shared-deferred) [[ -x $stoat ]] && echo "/plaintext|$stoat --port $2 --threads 1 --model shared --defer-accept 1" ;;
    may|hyper|actix)
      local b=$peers/shared/target/release/peer-$1
      [[ -x $b ]] && echo "/plaintext|$b --port $2 --threads 1" ;;
    may-arena) # takes PORT from the environment (set by measure.py)
      local b=$peers/arena-may-minihttp/target/release/httparena-may-minihttp
      [[ -x $b ]] && echo "/pipeline|$b" ;;
    rust-epoll)
      local b=$peers/arena-rust-epoll/target/release/httparena-rust-epoll
      [[ -x $b ]] && echo "/pipeline|$b" ;;
    nginx)
      command -v nginx >/dev/null || return 0
      local d; d=$(nginx_conf "$2")
      echo "/plaintext|nginx -c $d/nginx.conf -p $d -e $d/error.log" ;;
    nginx-deferred)
      command -v nginx >/dev/null || return 0
      local d; d=$(nginx_conf "$2" deferred)
      echo "/plaintext|nginx -c $d/nginx.conf -p $d -e $d/error.log" ;;
    *) echo "accept.sh: unknown target $1" >&2; exit 2 ;;
  esac
}

targets=("$@")
((${#targets[@]})) || targets=(stoat-per_core stoat-shared may may-arena hyper actix nginx rust-epoll)

rows=()
for t in "${targets[@]}"; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  s=$(spec "$t" "$port" || true)
  if [[ -z $s ]]; then echo "# $t: binary missing, skipped" >&2; continue; fi
  path=${s%%|*} cmd=${s#*|}
  read -ra c <<<"$cmd"
  for m in $modes; do
    case $m in
      close) load="--requests $connections --conns $conns --per-conn 1 --close --path $path" reqs=1 ;;
      ten) load="--requests $((connections * 10)) --conns $conns --per-conn 10 --path $path" reqs=10 ;;
      *) echo "accept.sh: unknown mode $m" >&2; exit 2 ;;
    esac
    ir=- sc=- irq=- scq=-
    if [[ ${SKIP_INSTR:-0} != 1 ]]; then
      if ! j=$(python3 "$here/measure.py" instr --out "$out/accept-$t-$m" --port "$port" --load="$load" -- "${c[@]}"); then
        ir=failed irq=failed
      else
      echo "$j" >"$out/accept-$t-$m.instr.json"
      ir=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("{:,.0f}".format(d["per_connection"]))' "$j")
      irq=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("{:,.0f}".format(d["per_request"]))' "$j")
      fi
    fi
    if [[ ${SKIP_SYSCALLS:-0} != 1 ]]; then
      if ! j=$(python3 "$here/measure.py" syscalls --out "$out/accept-$t-$m" --port "$port" --load="$load" -- "${c[@]}"); then
        sc=failed scq=failed
      else
      echo "$j" >"$out/accept-$t-$m.syscalls.json"
      sc=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("{:.2f}".format(d["per_connection"]))' "$j")
      scq=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("{:.2f}".format(d["per_request"]))' "$j")
      fi
    fi
    rows+=("| $t | $m ($reqs req/conn) | $ir | $irq | $sc | $scq |")
    echo "${rows[-1]}" >&2
  done
done
echo
echo "accept path: $connections connections per mode, $conns open at once (bench/load.py)"
echo
echo "| target | mode | user instr/conn | user instr/req | syscalls/conn | syscalls/req |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
