#!/usr/bin/env bash
# CPU per change: the server's and the private PostgreSQL's (127.0.0.1:${PG_PORT:-25433}, every process of
# its cluster) CPU time over one `liveplan-loadgen writers` run, divided by the changes it
# committed (calls of the record UPDATE in pg_stat_statements, warm-up included).
# Usage: PGDATA=DIR pg_cpu.sh ROOT LABEL WRITERS PROJECTS (ROOT/release holds the binaries),
# with the same private PostgreSQL as pg_statements.sh, its cluster in PGDATA.
set -euo pipefail
root=$1; label=$2; writers=$3; projects=$4
bin=$root/release
. "$(dirname "$0")/lib.sh"
pg_bench_server "$bin"
postmaster=$(head -1 "$PGDATA/postmaster.pid")
tck=$(getconf CLK_TCK)
cpu() { # ticks of the server and of the cluster's processes
  local s p
  s=$(awk '{print $14+$15}' /proc/$server/stat)
  p=$( (cat /proc/$postmaster/stat; for c in $(cat /proc/$postmaster/task/*/children); do cat /proc/$c/stat 2>/dev/null; done) | awk '{t+=$14+$15} END {print t}')
  echo "$s $p"
}
read s0 p0 < <(cpu)
out=$($bin/liveplan-loadgen writers --server http://127.0.0.1:$port --writers $writers --projects $projects --seconds 6 --warmup 1)
out=${out%%$'\n'*}
read s1 p1 < <(cpu)
changes=$(psql $PG/$db -Atc "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE '%UPDATE records SET body%'")
echo "$label $writers:$projects: $out"
echo "$label $writers:$projects: changes $changes, server $(( (s1-s0)*1000000/tck/changes )) µs/change, postgres $(( (p1-p0)*1000000/tck/changes )) µs/change, sum $(( ((s1-s0)+(p1-p0))*1000000/tck/changes )) µs/change"
pg_bench_stop
