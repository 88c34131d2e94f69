# shellcheck shell=bash
# What the benchmark scripts beside this file share; sourced (`. "$(dirname "$0")/lib.sh"`),
# never run. Every wait is bounded.

# release_binaries: sets server_bin (LIVEPLAN_BIN when given, e.g. an older build) and
# loadgen_bin from $CARGO_TARGET_DIR/release; exits 2 when they are not built.
release_binaries() {
  local target=${CARGO_TARGET_DIR:-target}/release
  server_bin=${LIVEPLAN_BIN:-$target/liveplan}
  loadgen_bin=$target/liveplan-loadgen
  if [ ! -x "$server_bin" ] || [ ! -x "$loadgen_bin" ]; then
    echo "build first: cargo build --release -p liveplan-server -p liveplan-loadgen" >&2
    exit 2
  fi
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: waits (30 s at most) until URL answers over HTTP, or exits 1.
wait_http() {
  for _ in $(seq 1 150); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.2; done
  echo "nothing answers at $1" >&2
  exit 1
}

# listening_url LOG: waits (30 s at most) for `liveplan serve`'s "liveplan listening on URL"
# line in LOG and prints URL; prints nothing when it never came.
listening_url() {
  for _ in $(seq 1 300); do
    grep -q 'listening on' "$1" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/^liveplan listening on //p' "$1"
}

# start_redis DIR: a private redis-server on a free loopback port, keeping nothing on disk, its
# log in DIR/redis.log; sets redis_pid and redis_port, or exits 1 when it does not answer.
start_redis() {
  redis_port=$(free_port)
  "${REDIS_SERVER:-redis-server}" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$1/redis.log" --dir "$1" &
  redis_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$1/redis.log" >&2
  exit 1
}

# pg_bench_server BINDIR: for pg_cpu.sh and pg_statements.sh, a fresh database with
# pg_stat_statements on the private PostgreSQL at 127.0.0.1:${PG_PORT:-25433} and a liveplan
# server from BINDIR on it, its statistics reset; sets PG, db, data, port and server.
# pg_bench_stop undoes it.
pg_bench_server() {
  PG=postgres://postgres@127.0.0.1:${PG_PORT:-25433}
  db=bench_$$
  psql "$PG/postgres" -qc "CREATE DATABASE $db"
  psql "$PG/$db" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  data=$(mktemp -d)
  export LIVEPLAN_ADMIN_EMAIL=writers@loadgen.test LIVEPLAN_ADMIN_PASSWORD=writers-password-0123456789
  port=$(free_port)
  "$1/liveplan" serve --listen "127.0.0.1:$port" --data-dir "$data" --database-url "$PG/$db" \
    >"$data/server.log" 2>&1 &
  server=$!
  [ -n "$(listening_url "$data/server.log")" ] || { cat "$data/server.log" >&2; exit 1; }
  psql "$PG/$db" -qc "SELECT pg_stat_statements_reset()" >/dev/null
}

pg_bench_stop() {
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
  psql "$PG/postgres" -qc "DROP DATABASE $db WITH (FORCE)"
}
