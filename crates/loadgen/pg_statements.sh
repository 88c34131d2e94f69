#!/usr/bin/env bash
# Counts the statements (pg_stat_statements) and the writes to PostgreSQL's socket (strace)
# per change of `liveplan-loadgen writers` against a private PostgreSQL (test-only settings).
# Usage: pg_statements.sh BINDIR LABEL, with a private PostgreSQL whose
# shared_preload_libraries has pg_stat_statements on 127.0.0.1:${PG_PORT:-25433} (initdb and
# pg_ctl into a temporary directory; BENCHMARKS.md, "Round trips per change on PostgreSQL").
set -euo pipefail
bin=$1; label=$2
. "$(dirname "$0")/lib.sh"
pg_bench_server "$bin"
$bin/liveplan-loadgen writers --server http://127.0.0.1:$port --writers 8 --projects 8 --seconds 3 --warmup 1 | sed -n 1p
echo "== $label: calls per change (changes = calls of UPDATE records)"
psql $PG/$db -Atc "WITH s AS (SELECT calls, regexp_replace(query, '\s+', ' ', 'g') AS q FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())), n AS (SELECT sum(calls) AS c FROM s WHERE q LIKE 'UPDATE records%' OR q LIKE '%UPDATE records SET body%') SELECT round(s.calls::numeric / n.c, 3) || ' | ' || s.calls || ' | ' || left(s.q, 150) FROM s, n WHERE s.calls > n.c / 50 ORDER BY s.calls DESC"
# Round trips: writes from the server to PostgreSQL's port, over a short run under strace.
psql $PG/$db -qc "SELECT pg_stat_statements_reset()" >/dev/null
strace -f -yy -qq -e trace=sendto,write,writev,sendmsg -o "$data/strace" -p $server &
tracer=$!
sleep 1
$bin/liveplan-loadgen writers --server http://127.0.0.1:$port --writers 8 --projects 8 --seconds 2 --warmup 0 >/dev/null
kill $tracer; wait $tracer 2>/dev/null || true
changes=$(psql $PG/$db -Atc "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE '%UPDATE records SET body%'")
to_pg=$(grep -c ":${PG_PORT:-25433}\]" "$data/strace" || true)
echo "== $label: $to_pg writes to PostgreSQL for $changes changes (incl. the second run's setup): $(echo "scale=2; $to_pg / $changes" | bc) per change"
pg_bench_stop
