#!/usr/bin/env bash
# CPU per change: the server's and the private PostgreSQL's (127.0.0.1:${PG_PORT:-25433}, every process of
# its cluster) CPU time over one `liveplan-loadgen writers` run, divided by the changes it
# committed (calls of the record UPDATE in pg_stat_statements, warm-up included).
# Usage: PGDATA=DIR pg_cpu.sh ROOT LABEL WRITERS PROJECTS (ROOT/release holds the binaries),
# with the same private PostgreSQL as pg_statements.sh, its cluster in PGDATA.
set -euo pipefail
root=$1; label=$2; writers=$3; projects=$4
bin=$root/release
PG=postgres://postgres@127.0.0.1:${PG_PORT:-25433}
db=cpu_$$
psql $PG/postgres -qc "CREATE DATABASE $db"
psql $PG/$db -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
data=$(mktemp -d)
export LIVEPLAN_ADMIN_EMAIL=writers@loadgen.test LIVEPLAN_ADMIN_PASSWORD=writers-password-0123456789
port=$((20000 + RANDOM % 20000))
$bin/liveplan serve --listen 127.0.0.1:$port --data-dir "$data" --database-url $PG/$db >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q listening "$data/server.log" && break; sleep 0.1; done
postmaster=$(head -1 "$PGDATA/postmaster.pid")
tck=$(getconf CLK_TCK)
cpu() { # ticks of the server and of the cluster's processes
  local s p
  s=$(awk '{print $14+$15}' /proc/$server/stat)
  p=$( (cat /proc/$postmaster/stat; for c in $(cat /proc/$postmaster/task/*/children); do cat /proc/$c/stat 2>/dev/null; done) | awk '{t+=$14+$15} END {print t}')
  echo "$s $p"
}
psql $PG/$db -qc "SELECT pg_stat_statements_reset()" >/dev/null
read s0 p0 < <(cpu)
out=$($bin/liveplan-loadgen writers --server http://127.0.0.1:$port --writers $writers --projects $projects --seconds 6 --warmup 1)
out=${out%%$'\n'*}
read s1 p1 < <(cpu)
changes=$(psql $PG/$db -Atc "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE '%UPDATE records SET body%'")
echo "$label $writers:$projects: $out"
echo "$label $writers:$projects: changes $changes, server $(( (s1-s0)*1000000/tck/changes )) µs/change, postgres $(( (p1-p0)*1000000/tck/changes )) µs/change, sum $(( ((s1-s0)+(p1-p0))*1000000/tck/changes )) µs/change"
kill $server; wait $server 2>/dev/null || true
rm -rf "$data"
psql $PG/postgres -qc "DROP DATABASE $db WITH (FORCE)"
