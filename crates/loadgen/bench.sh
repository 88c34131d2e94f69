#!/usr/bin/env bash
# Starts a release liveplan server on a free loopback port with a fresh data dir and a bootstrap
# administrator, runs liveplan-loadgen against it with the given arguments, and stops it.
#
#   crates/loadgen/bench.sh run  --dialect ws  -n 1000  -r 50 -d 30
#   crates/loadgen/bench.sh idle --dialect ws  -n 19000 --hold 10
#
# Env: CARGO_TARGET_DIR (where the release binaries are), SERVER_ARGS (extra `liveplan serve`
# flags), KEEP_DATA=1 to keep the data dir.
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}/release
server_bin=$target/liveplan
loadgen_bin=$target/liveplan-loadgen
[ -x "$server_bin" ] && [ -x "$loadgen_bin" ] || {
  echo "build first: cargo build --release -p liveplan-server -p liveplan-loadgen" >&2
  exit 2
}
data=$(mktemp -d /tmp/liveplan-bench.XXXXXX)
export LIVEPLAN_ADMIN_EMAIL=bench-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=bench-admin-password-0123
# Both processes may hold tens of thousands of sockets.
ulimit -n "$(ulimit -Hn)"
# shellcheck disable=SC2086
RUST_LOG=${RUST_LOG:-warn} "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$data" \
  --sse-max-per-user 110 ${SERVER_ARGS:-} >"$data/stdout" 2>"$data/stderr" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q 'listening on' "$data/stdout" 2>/dev/null && break
  sleep 0.1
done
url=$(sed -n 's/^liveplan listening on //p' "$data/stdout")
[ -n "$url" ] || { cat "$data/stderr" >&2; exit 1; }
echo "server pid $server at $url, data in $data" >&2
mode=$1
shift
"$loadgen_bin" "$mode" --server "$url" --server-pid "$server" "$@"
