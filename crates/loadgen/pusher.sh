#!/usr/bin/env bash
# The Pusher protocol side by side (issue 17): one release `liveplan` node, one soketi node and
# one sockudo node (each optional peer only when named), each with N pusher-js-like subscribers
# on one public app channel, changes published through each server's own Pusher HTTP API (signed
# `POST /apps/{id}/events`), the same loadgen arguments, ROUNDS alternating rounds. Loopback
# only; everything is removed on exit.
#
#   SOKETI=/path/to/node_modules/.bin/soketi crates/loadgen/pusher.sh -n 1000 -r 50 -d 20
#   SOKETI=… SOCKUDO=/path/to/bin/sockudo crates/loadgen/pusher.sh idle -n 19000 --hold 10
#
# A first argument `idle` runs `liveplan-loadgen idle` instead of `run`: N subscribed
# connections held without events, the server's RSS per connection. Each server starts fresh in
# this script, so the first round's "before" is an idle server's RSS; later rounds start from
# whatever the previous round left (use ROUNDS=1 for idle figures).
#
# soketi is installed by hand outside the repository (never committed): an npm folder with
# `@soketi/soketi` 1.6.1 and the `overrides` entry mapping `uWebSockets.js` to
# `npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0` (Node 20). sockudo likewise:
# `cargo install sockudo --no-default-features --features "local,v2,redis" --root DIR` (needs
# Debian's protobuf-compiler), configured here through its environment only (one app, local
# adapter, no metrics; its defaults of 100 connections per app, 100 API requests a minute and
# 20 connections a minute per address would refuse the load, so the limits are lifted) and
# started in an empty folder so no config/config.toml is picked up.
# Without SOKETI or SOCKUDO, only liveplan runs. Env: CARGO_TARGET_DIR (the release binaries),
# LIVEPLAN_BIN (another liveplan server binary, e.g. an older build, with this loadgen),
# ROUNDS (default 1), LIVEPLAN_ARGS (more flags for `liveplan serve`, e.g. `--durability fast`),
# SERVER_CPUS / LOADGEN_CPUS (pin every server and the load generator with taskset, e.g. 0 and
# 1, so a server's fan-out and the load generator's reading do not take each other's core).
set -euo pipefail
mode=run
if [ "${1:-}" = idle ] || [ "${1:-}" = run ]; then
  mode=$1
  shift
fi
. "$(dirname "$0")/lib.sh"
release_binaries
work=$(mktemp -d /tmp/liveplan-pusher.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
server_pin=()
loadgen_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${LOADGEN_CPUS:-}" ] && loadgen_pin=(taskset -c "$LOADGEN_CPUS")
app_id=lg-app
app_key=lg-key
app_secret=lg-secret-$$

port=$(free_port)
"${server_pin[@]}" "$server_bin" serve --listen "127.0.0.1:$port" --data-dir "$work/liveplan" \
  --pusher-app-id "$app_id" --pusher-key "$app_key" --pusher-secret "$app_secret" \
  ${LIVEPLAN_ARGS:-} >"$work/liveplan.log" 2>&1 &
pids+=($!)
liveplan_pid=$!
liveplan_url=http://127.0.0.1:$port
wait_http "$liveplan_url/healthz"

if [ -n "${SOKETI:-}" ]; then
  sport=$(free_port)
  SOKETI_HOST=127.0.0.1 SOKETI_PORT=$sport SOKETI_METRICS_ENABLED=false SOKETI_METRICS_HOST=127.0.0.1 \
    SOKETI_METRICS_SERVER_PORT="$(free_port)" SOKETI_CLUSTER_UNICAST_ADDRESSES=127.0.0.1 \
    SOKETI_DEFAULT_APP_ID=$app_id SOKETI_DEFAULT_APP_KEY=$app_key SOKETI_DEFAULT_APP_SECRET=$app_secret \
    "${server_pin[@]}" "$SOKETI" start >"$work/soketi.log" 2>&1 &
  pids+=($!)
  soketi_pid=$!
  soketi_url=http://127.0.0.1:$sport
  wait_http "$soketi_url/"
fi

if [ -n "${SOCKUDO:-}" ]; then
  kport=$(free_port)
  mkdir -p "$work/sockudo"
  (cd "$work/sockudo" && HOST=127.0.0.1 PORT=$kport METRICS_ENABLED=false METRICS_HOST=127.0.0.1 \
    METRICS_PORT="$(free_port)" ADAPTER_DRIVER=local CACHE_DRIVER=memory QUEUE_DRIVER=memory \
    APP_MANAGER_DRIVER=memory RATE_LIMITER_ENABLED=false SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=200000 \
    SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=100000 SOCKUDO_DEFAULT_APP_ID=$app_id \
    SOCKUDO_DEFAULT_APP_KEY=$app_key SOCKUDO_DEFAULT_APP_SECRET=$app_secret exec "${server_pin[@]}" "$SOCKUDO") \
    >"$work/sockudo.log" 2>&1 &
  pids+=($!)
  sockudo_pid=$!
  sockudo_url=http://127.0.0.1:$kport
  wait_http "$sockudo_url/"
fi

run() {
  local label=$1 url=$2 pid=$3
  shift 3
  echo "== $label: load average $(cut -d' ' -f1-3 /proc/loadavg) =="
  LOADGEN_PUSHER_APP=$app_id:$app_key:$app_secret "${loadgen_pin[@]}" "$loadgen_bin" "$mode" --dialect pusher \
    --server "$url" --server-pid "$pid" "$@" | tee "$work/$label.out" | grep -v '^{'
}
for round in $(seq 1 "${ROUNDS:-1}"); do
  run "liveplan-$round" "$liveplan_url" "$liveplan_pid" "$@"
  if [ -n "${SOKETI:-}" ]; then run "soketi-$round" "$soketi_url" "$soketi_pid" "$@"; fi
  if [ -n "${SOCKUDO:-}" ]; then run "sockudo-$round" "$sockudo_url" "$sockudo_pid" "$@"; fi
done
echo "== summary ($mode; liveplan = $server_bin) =="
for f in "$work"/*.out; do
  if [ "$mode" = idle ]; then
    jq -r --arg l "$(basename "$f" .out)" '.liveplan_loadgen | "\($l): \(.opened) opened (\(.open_failed) failed, \(.dropped_connections) dropped), RSS \(.server_rss_before_mib * 10 | round / 10) → \(.server_rss_connected_mib * 10 | round / 10) MiB, \(.server_rss_per_connection_bytes // "n/a" | if type == "number" then floor else . end) B per connection, load \(.machine.load_average)"' \
      <(grep '^{' "$f")
  else
    jq -r --arg l "$(basename "$f" .out)" '.liveplan_loadgen | "\($l): p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, \(.deliveries_per_sec | floor) deliveries/s, \(.server_cpu_us_per_delivery // "n/a" | if type == "number" then (. * 100 | round / 100) else . end) µs server CPU per delivery (fan-out alone \(.server_cpu_us_per_delivery_marginal // "n/a" | if type == "number" then (. * 100 | round / 100) else . end) µs), API trip p99 \(.rest_round_trip.p99_ms) ms, missing \(.missing), load \(.machine.load_average)"' \
      <(grep '^{' "$f")
  fi
done
