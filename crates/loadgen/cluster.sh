#!/usr/bin/env bash
# Commit on one node, delivery on others (issue 16): starts a private redis-server and three
# release `liveplan` nodes on one fresh PostgreSQL database, all on loopback, then runs
# `liveplan-loadgen run` twice with the same arguments, one after the other:
#   1. single node: the subscribers on node A, where the REST publisher writes;
#   2. three nodes: the subscribers spread over nodes B and C (--subscriber-servers), the
#      publisher still on A, so every delivery crosses Redis.
# Everything is removed on exit (nodes, redis, the database).
#
#   crates/loadgen/cluster.sh -n 1000 -r 50 -d 20
#
# Env: CARGO_TARGET_DIR (the release binaries), POSTGRES_URL (a server's admin database,
# default postgres://postgres@127.0.0.1:5432/test), REDIS_SERVER (default redis-server).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_binaries
count=1000
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -n | --subscribers) count=${args[i + 1]} ;;
  esac
done
admin_url=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
db=lp_cluster_bench_$$
db_url=${admin_url%/*}/$db
work=$(mktemp -d /tmp/liveplan-cluster.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$admin_url" -qc "CREATE DATABASE $db" >/dev/null

start_redis "$work"
pids+=("$redis_pid")

export LIVEPLAN_ADMIN_EMAIL=bench-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=bench-admin-password-0123
ulimit -n "$(ulimit -Hn)"
bases=()
for node in a b c; do
  mkdir -p "$work/$node"
  "$server_bin" serve --listen 127.0.0.1:0 --database-url "$db_url" \
    --redis-url "redis://127.0.0.1:$redis_port" --data-dir "$work/$node" \
    >"$work/$node.out" 2>"$work/$node.err" &
  pids+=($!)
  base=$(listening_url "$work/$node.out")
  [ -n "$base" ] || { echo "node $node did not start:" >&2; cat "$work/$node.err" >&2; exit 1; }
  bases+=("$base")
done
echo "nodes: ${bases[*]} · redis 127.0.0.1:$redis_port · database $db"

"$loadgen_bin" prepare --server "${bases[0]}" --out "$work/state.json" -n "$count" \
  --admin-email "$LIVEPLAN_ADMIN_EMAIL" --admin-password "$LIVEPLAN_ADMIN_PASSWORD" >/dev/null
echo "== single node: subscribers and publisher on ${bases[0]}"
"$loadgen_bin" run --server "${bases[0]}" --state "$work/state.json" --baseline 0 "$@"
echo "== three nodes: publisher on ${bases[0]}, subscribers on ${bases[1]} and ${bases[2]}"
"$loadgen_bin" run --server "${bases[0]}" --state "$work/state.json" --baseline 0 \
  --subscriber-servers "${bases[1]},${bases[2]}" "$@"
