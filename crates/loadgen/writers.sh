#!/usr/bin/env bash
# Write throughput (issue 15): committed changes per second through HTTP, `liveplan-loadgen
# writers` against a fresh release server per backend and durability, for each (writers,
# projects) pair. The server runs on CPU 0, the load generator on CPU 1.
#
#   crates/loadgen/writers.sh                      # SQLite, full and fast
#   PG_URL=postgres://postgres@127.0.0.1:5432/test crates/loadgen/writers.sh
#
# Env: CARGO_TARGET_DIR (where the release binaries are), SECONDS_PER_RUN (default 10),
# MODES (default "full fast"), SHAPES (default "1:1 8:1 32:1 8:8 32:32", writers:projects),
# PG_URL: run on PostgreSQL, in a database of its own made on that server and dropped after.
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}/release
server_bin=$target/liveplan
loadgen_bin=$target/liveplan-loadgen
seconds=${SECONDS_PER_RUN:-10}
modes=${MODES:-full fast}
shapes=${SHAPES:-1:1 8:1 32:1 8:8 32:32}
export LIVEPLAN_ADMIN_EMAIL=writers@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=writers-password-0123456789
backend=sqlite
[ -n "${PG_URL:-}" ] && backend=postgres
for mode in $modes; do
  data=$(mktemp -d)
  db_args=()
  if [ -n "${PG_URL:-}" ]; then
    name=liveplan_writers_$$
    psql "$PG_URL" -qc "CREATE DATABASE $name" >/dev/null
    db_args=(--database-url "${PG_URL%/*}/$name")
  fi
  port=$((20000 + RANDOM % 20000))
  taskset -c 0 "$server_bin" serve --listen 127.0.0.1:$port --data-dir "$data" \
    --durability "$mode" "${db_args[@]}" >"$data/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    grep -q "listening" "$data/server.log" && break
    sleep 0.1
  done
  for shape in $shapes; do
    writers=${shape%:*}
    projects=${shape#*:}
    out=$(taskset -c 1 "$loadgen_bin" writers --server http://127.0.0.1:$port \
      --writers "$writers" --projects "$projects" --seconds "$seconds")
    echo "$backend $mode: ${out%%$'\n'*}"
  done
  kill "$server"
  wait "$server" || true
  rm -rf "$data"
  if [ -n "${PG_URL:-}" ]; then
    psql "$PG_URL" -qc "DROP DATABASE $name WITH (FORCE)" >/dev/null
  fi
done
