#!/usr/bin/env bash
# Many nodes (issue 16): cross-node delivery latency and fan-out scale-out, in one run.
#   1. build the release binaries; start a private redis-server on a free port (no persistence)
#      and make a fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end);
#   2. start three liveplan nodes A, B, C on that database with --redis-url;
#      `liveplan-loadgen prepare` through A (project, tasks, member users → state file);
#   3. "cluster": N subscribers round-robin over A, B, C, changes published through A: the
#      latency on B and C is commit on A to delivery on B/C; CPU summed over the three nodes;
#   4. "single": B and C stopped, the same load on A alone;
#   (3 and 4 repeat ROUNDS times, alternating, B and C restarted for each round);
#   5. with SCALE=1, fan-out scale-out: A on CPU 0 and B on CPU 1 (taskset), SCALE_N
#      subscribers split over both at SCALE_RATE changes/s, then the same load on A alone
#      (still on CPU 0): deliveries/s of each.
#   6. with SOKETI=<path to an installed soketi's bin/soketi> (installed by hand, outside this
#      repository; see BENCHMARKS.md), the same two-node shape on both: N subscribers over
#      liveplan A and B, then over two soketi nodes S1 and S2 (redis adapter on the same private
#      Redis), changes through the first node (REST on liveplan, the Pusher HTTP API on soketi).
# Everything it started is stopped and removed on exit (trap); every wait is bounded.
#
#   crates/loadgen/nodes.sh
#   N=1000 RATE=20 DURATION=20 ROUNDS=2 SCALE=1 crates/loadgen/nodes.sh
#
# Env: CARGO_TARGET_DIR, N (1000), RATE (20), DURATION (20 s), ROUNDS (1, at most 5), SCALE (0),
# SCALE_N (4000), SCALE_RATE (20), PER_USER (40), SOKETI (unset), PG_URL (postgres://postgres@127.0.0.1:5432, the server to
# make the database on: loopback only), REDIS_SERVER (redis-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p liveplan-server -p liveplan-loadgen >&2
. crates/loadgen/lib.sh
release_binaries
n=${N:-1000}
rate=${RATE:-20}
duration=${DURATION:-20}
rounds=${ROUNDS:-1}
scale=${SCALE:-0}
scale_n=${SCALE_N:-4000}
scale_rate=${SCALE_RATE:-20}
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432}
# Tickets are limited to 120 a minute per user on each node, and node A mints for every run.
per_user=${PER_USER:-40}
for v in n rate duration rounds scale_n scale_rate per_user; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a number" >&2; exit 2; }
done
((rounds >= 1 && rounds <= 5)) || { echo "ROUNDS must be 1..5" >&2; exit 2; }
case $pg in
  postgres://*@127.0.0.1:* | postgres://*@localhost:*) ;;
  *) echo "PG_URL must be a loopback postgres://user@127.0.0.1:port" >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/liveplan-nodes.XXXXXX)
db=lp_nodes_$$_$(date +%s)
redis_pid=
declare -A node_pid=() node_url=()
soketi_pid=()
export LIVEPLAN_ADMIN_EMAIL=bench-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=bench-admin-password-0123
ulimit -n "$(ulimit -Hn)"

stop_node() {
  local name=$1 pid=${node_pid[$1]:-}
  [ -z "$pid" ] && return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  node_pid[$name]=
}
cleanup() {
  for name in "${!node_pid[@]}"; do stop_node "$name"; done
  for pid in "${soketi_pid[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  psql "$pg/postgres" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
    echo "could not drop database $db" >&2
  rm -rf "$work"
}
trap cleanup EXIT

start_redis "$work"
redis_url=redis://127.0.0.1:$redis_port
psql "$pg/postgres" -q -c "CREATE DATABASE $db" >/dev/null
database_url=$pg/$db
echo "redis-server pid $redis_pid on port $redis_port; database $db" >&2

# start_node NAME [CPUS]: a node on the shared database and Redis, pinned to CPUS if given.
start_node() {
  local name=$1 cpus=${2:-} dir=$work/$1
  local pin=()
  [ -n "$cpus" ] && pin=(taskset -c "$cpus")
  mkdir -p "$dir"
  : >"$dir/stdout"
  RUST_LOG=${RUST_LOG:-warn} ${pin[@]+"${pin[@]}"} "$server_bin" serve --listen 127.0.0.1:0 \
    --data-dir "$dir" --database-url "$database_url" --redis-url "$redis_url" \
    >"$dir/stdout" 2>>"$dir/stderr" &
  node_pid[$name]=$!
  node_url[$name]=$(listening_url "$dir/stdout")
  [ -n "${node_url[$name]}" ] || { cat "$dir/stderr" >&2; exit 1; }
  echo "node $name pid ${node_pid[$name]}${cpus:+ on CPU $cpus} at ${node_url[$name]}" >&2
}

# load LABEL NODE... : the run over the given nodes, published through A, CPU over them all.
load() {
  local label=$1 subscribers=$2 r=$3
  shift 3
  local flags=() name
  for name in "$@"; do flags+=(--node "${node_url[$name]}" --node-pid "${node_pid[$name]}"); done
  echo "== $label: $subscribers subscribers over $* ($r changes/s, published through A); load average $(cut -d' ' -f1-3 /proc/loadavg) =="
  "$loadgen_bin" run --state "$work/state.json" --per-user "$per_user" --publish-url "${node_url[A]}" \
    --server-pid "${node_pid[A]}" "${flags[@]}" -n "$subscribers" -r "$r" -d "$duration" \
    --baseline 0 --settle 3 | tee "$work/$label.out" | grep -v '^{'
}

start_node A
"$loadgen_bin" prepare --server "${node_url[A]}" -n "$((n > scale_n ? n : scale_n))" --per-user "$per_user" \
  --out "$work/state.json"
for round in $(seq 1 "$rounds"); do
  start_node B
  start_node C
  load "cluster-$round" "$n" "$rate" A B C
  stop_node B
  stop_node C
  load "single-$round" "$n" "$rate" A
done
if [ "$scale" = 1 ]; then
  stop_node A
  start_node A 0
  start_node B 1
  load scale-two "$scale_n" "$scale_rate" A B
  stop_node B
  load scale-one "$scale_n" "$scale_rate" A
fi
if [ -n "${SOKETI:-}" ]; then
  [ -n "${node_pid[B]:-}" ] || start_node B
  load pair-liveplan "$n" "$rate" A B
  soketi_app=lg-app:lg-key:lg-secret-$$
  soketi_flags=()
  for k in 1 2; do
    port=$(free_port)
    SOKETI_HOST=127.0.0.1 SOKETI_PORT=$port SOKETI_METRICS_ENABLED=false SOKETI_METRICS_HOST=127.0.0.1 \
      SOKETI_METRICS_SERVER_PORT="$(free_port)" SOKETI_ADAPTER_DRIVER=redis SOKETI_DB_REDIS_HOST=127.0.0.1 \
      SOKETI_DB_REDIS_PORT="$redis_port" SOKETI_CLUSTER_UNICAST_ADDRESSES=127.0.0.1 \
      SOKETI_DEFAULT_APP_ID=lg-app SOKETI_DEFAULT_APP_KEY=lg-key SOKETI_DEFAULT_APP_SECRET=lg-secret-$$ \
      "$SOKETI" start >"$work/soketi-$k.log" 2>&1 &
    soketi_pid+=($!)
    for _ in $(seq 1 100); do
      curl -sf -m 1 "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf -m 1 "http://127.0.0.1:$port/" >/dev/null || { cat "$work/soketi-$k.log" >&2; exit 1; }
    echo "soketi S$k pid ${soketi_pid[-1]} at http://127.0.0.1:$port" >&2
    soketi_flags+=(--node "http://127.0.0.1:$port" --node-pid "${soketi_pid[-1]}")
    [ "$k" = 1 ] && soketi_flags+=(--publish-url "http://127.0.0.1:$port" --server-pid "${soketi_pid[-1]}")
  done
  echo "== pair-soketi: $n subscribers over S1 S2 ($rate changes/s, published through S1); load average $(cut -d' ' -f1-3 /proc/loadavg) =="
  LOADGEN_PUSHER_APP=$soketi_app "$loadgen_bin" run --dialect pusher "${soketi_flags[@]}" -n "$n" -r "$rate" \
    -d "$duration" --baseline 0 --settle 3 | tee "$work/pair-soketi.out" | grep -v '^{'
fi
echo "== summary (p99 in ms; CPU per delivery summed over the nodes of the run) =="
for f in "$work"/*.out; do
  label=$(basename "$f" .out)
  jq -r --arg l "$label" '.liveplan_loadgen | "\($l): p50 \(.latency.p50_ms) p99 \(.latency.p99_ms) · " +
    ([.nodes[] | "\(.url) p99 \(.latency.p99_ms)"] | join(", ")) +
    " · \(.deliveries_per_sec | floor) deliveries/s · \(.server_cpu_us_per_delivery // "n/a") µs/delivery · missing \(.missing) · load \(.machine.load_average)"' \
    <(grep '^{' "$f")
done
