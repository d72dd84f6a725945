#!/usr/bin/env bash
# peers.sh — builds the peers out of tree, in bench/peers/ (git-ignored: no
# peer code is committed): the shared workspace (peer-may = may_minihttp,
# peer-hyper, peer-actix; ../shared/bench/peers) and HttpArena's
# may-minihttp and rust-epoll entries (../shared/arena/peers), the latter two
# patched to listen on 127.0.0.1:$PORT instead of 0.0.0.0:8080.
# usage: bench/peers.sh   (then bench/accept.sh, bench/callgrind.sh ...)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dst=$here/peers
mkdir -p "$dst"
[[ -d $dst/shared ]] || { cp -r /work/shared/bench/peers "$dst/shared"; chmod -R u+w "$dst/shared"; }
for p in may-minihttp rust-epoll; do
  d=$dst/arena-$p
  [[ -d $d ]] && continue
  cp -r "/work/shared/arena/peers/$p" "$d"; chmod -R u+w "$d"
  printf '\n[workspace]\n' >>"$d/Cargo.toml"   # not a member of stoat's workspace
done
sed -i 's|let addr: SocketAddr = "0.0.0.0:8080".parse().unwrap();|let addr: SocketAddr = format!("127.0.0.1:{}", std::env::var("PORT").unwrap_or("8080".into())).parse().unwrap();|' \
  "$dst/arena-rust-epoll/src/main.rs"
sed -i 's|TcpListener::bind("0.0.0.0:8080")|TcpListener::bind(format!("127.0.0.1:{}", std::env::var("PORT").unwrap_or("8080".into())))|' \
  "$dst/arena-may-minihttp/src/main.rs"
for d in shared arena-rust-epoll arena-may-minihttp; do
  (cd "$dst/$d" && cargo build --release)
done
