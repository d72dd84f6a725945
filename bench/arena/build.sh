#!/usr/bin/env bash
# build.sh — builds the arena example and the HttpArena peers (release), out of
# tree: peers are copied from $PEERS into build/src/NAME with their /data paths
# pointed at $DATA, and built into build/target. Nothing here is committed
# (build/ is gitignored). Idempotent: cargo rebuilds only what changed.
#
# usage: build.sh [PEER...]   (default: every peer the profiles use)
# env:   SKIP_STOAT=1 builds the peers only; TARGET (default build/target) the cargo target dir; PEERS (default /work/shared/arena/peers), DATA (default /work/shared/arena/data)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-/work/shared/arena/peers}
DATA=${DATA:-/work/shared/arena/data}
BUILD=$HERE/build
TARGET=${TARGET:-$BUILD/target}
peers=("$@")
((${#peers[@]})) || peers=(actix actix-websocket hyper may-minihttp rust-epoll)
mkdir -p "$BUILD/src" "$BUILD/bin"

if [[ -z ${SKIP_STOAT-} ]]; then
  echo "== stoat arena example" >&2
  (cd "$REPO" && cargo build --release -p stoat --example arena) >&2
  cp "$REPO/target/release/examples/arena" "$BUILD/bin/stoat"
fi

for p in "${peers[@]}"; do
  [[ -d $PEERS/$p ]] || { echo "build.sh: no peer $p in $PEERS" >&2; exit 1; }
  echo "== $p" >&2
  rm -rf "$BUILD/src/$p"
  cp -r "$PEERS/$p" "$BUILD/src/$p"
  chmod -R u+w "$BUILD/src/$p"
  # Their containers mount the data at /data: point the copies at $DATA.
  sed -i "s|\"/data/|\"$DATA/|g" "$BUILD/src/$p"/src/*.rs
  # A workspace of its own (this repo's workspace does not claim it).
  grep -q '^\[workspace\]' "$BUILD/src/$p/Cargo.toml" || printf '\n[workspace]\n' >>"$BUILD/src/$p/Cargo.toml"
  CARGO_TARGET_DIR=$TARGET cargo build --release --manifest-path "$BUILD/src/$p/Cargo.toml" >&2
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$BUILD/src/$p/Cargo.toml" | head -1)
  cp "$TARGET/release/$name" "$BUILD/bin/$p"
done
echo "built: $(ls "$BUILD/bin" | tr '\n' ' ')" >&2
