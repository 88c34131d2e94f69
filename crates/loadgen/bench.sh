#!/usr/bin/env bash
# Runs liveplan-loadgen against a fresh release liveplan server on a free loopback port:
#   1. start the server with an empty data dir and a bootstrap administrator;
#   2. `liveplan-loadgen prepare`: project, tasks, member users, their tokens → state file;
#   3. restart the server on the same data (tokens survive: the signing key is in the store),
#      so its RSS is not inflated by the password hashing of step 2;
#   4. `liveplan-loadgen MODE --state … --server-pid …` with the given arguments.
#
#   crates/loadgen/bench.sh run  --dialect ws  -n 1000  -r 50 -d 20
#   crates/loadgen/bench.sh idle --dialect ws  -n 19000 --hold 10
#   crates/loadgen/bench.sh run  --dialect bryntum --publisher bryntum -n 1000 -r 20 -d 15
#
# Env: CARGO_TARGET_DIR (where the release binaries are), SERVER_ARGS (extra `liveplan serve`
# flags), PER_USER (subscribers per user, default 100), KEEP_DATA=1 to keep the data dir,
# SERVER_CPUS / LOADGEN_CPUS (e.g. 0 and 1: pin each process with taskset so they do not compete
# for the same core).
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}/release
server_bin=$target/liveplan
loadgen_bin=$target/liveplan-loadgen
[ -x "$server_bin" ] && [ -x "$loadgen_bin" ] || {
  echo "build first: cargo build --release -p liveplan-server -p liveplan-loadgen" >&2
  exit 2
}
mode=$1
shift
count=1000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -n | --subscribers | --connections) count=${args[i + 1]} ;;
  esac
done
per_user=${PER_USER:-100}
server_pin=()
loadgen_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${LOADGEN_CPUS:-}" ] && loadgen_pin=(taskset -c "$LOADGEN_CPUS")

data=$(mktemp -d /tmp/liveplan-bench.XXXXXX)
export LIVEPLAN_ADMIN_EMAIL=bench-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=bench-admin-password-0123
# Both processes may hold tens of thousands of sockets.
ulimit -n "$(ulimit -Hn)"
server=
start_server() {
  : >"$data/stdout"
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-warn} ${server_pin[@]+"${server_pin[@]}"} "$server_bin" serve --listen 127.0.0.1:0 --data-dir "$data" \
    --sse-max-per-user "$per_user" ${SERVER_ARGS:-} >"$data/stdout" 2>>"$data/stderr" &
  server=$!
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$data/stdout" 2>/dev/null && break
    sleep 0.1
  done
  url=$(sed -n 's/^liveplan listening on //p' "$data/stdout")
  [ -n "$url" ] || { cat "$data/stderr" >&2; exit 1; }
  echo "server pid $server at $url, data in $data" >&2
}
stop_server() {
  [ -z "$server" ] && return
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}
cleanup() {
  stop_server
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$data"
}
trap cleanup EXIT

start_server
"$loadgen_bin" prepare --server "$url" -n "$count" --per-user "$per_user" --out "$data/state.json"
stop_server
start_server
sleep 1
${loadgen_pin[@]+"${loadgen_pin[@]}"} "$loadgen_bin" "$mode" --server "$url" --server-pid "$server" --state "$data/state.json" \
  --per-user "$per_user" "$@"
