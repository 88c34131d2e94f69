#!/usr/bin/env bash
# Whiteboards side by side (issue 18): liveplan, `@y/websocket-server` and hocuspocus under the
# same `liveplan-loadgen whiteboards` clients, alternating, a fresh server (and empty store) for
# every measurement:
#   relay50    1 board × 50 editors, RATE50 updates/s each: relay latency, server CPU per delivery
#   relay1000  1,000 boards × 2 editors, RATE1000 updates/s each: the same
#   memory     MEMORY_BOARDS boards with one client each (synced, one edit, one cursor): RSS per board
#   load       a DOC_MIB MiB document written by a client, unloaded, then loaded by LOADS fresh
#              clients one after another: time until the client holds all of it
# ROUNDS rounds of every scenario, each scenario run on liveplan, then @y/websocket-server, then
# hocuspocus. Loopback only; every server it started is stopped and its data removed on exit.
#
#   YWS=/work/scratch/y-websocket-server HOCUSPOCUS=/work/scratch/hocuspocus \
#     crates/loadgen/whiteboards.sh
#
# The peers are installed by hand outside the repository (never committed; this script neither
# installs nor builds them), both run on Node 20 (`NODE`, default `node`):
#   YWS         an npm folder with `@y/websocket-server` 0.1.1; started as its own
#               `src/server.js` with YPERSISTENCE (its LevelDB store: every update appended).
#   HOCUSPOCUS  an npm folder with `@hocuspocus/server` and `@hocuspocus/extension-sqlite` 3.4.4
#               and a `server.js` (in BENCHMARKS.md) listening on 127.0.0.1:$PORT with the SQLite
#               extension on $DB (it stores the whole document, debounced 2 s, and on unload).
# Without YWS or HOCUSPOCUS that server is skipped.
#
# Env: CARGO_TARGET_DIR (the release binaries), ROUNDS (1), SCENARIOS ("relay50 relay1000
# memory load"), DURATION (20 s of sending), RATE50 (2), RATE1000 (0.5), MEMORY_BOARDS (1000),
# DOC_MIB (10), LOADS (3), LIVEPLAN_ARGS (more flags for `liveplan serve`, e.g.
# `--durability fast`), SERVER_CPUS / LOADGEN_CPUS (pin each side with taskset), OUT (a
# directory to keep every run's output in; default a temporary one, removed).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
release_binaries
node=${NODE:-node}
rounds=${ROUNDS:-1}
scenarios=${SCENARIOS:-relay50 relay1000 memory load}
duration=${DURATION:-20}
work=$(mktemp -d /tmp/liveplan-whiteboards.XXXXXX)
out=${OUT:-$work/out}
mkdir -p "$out"
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
server_pin=()
loadgen_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${LOADGEN_CPUS:-}" ] && loadgen_pin=(taskset -c "$LOADGEN_CPUS")
export LIVEPLAN_ADMIN_EMAIL=wb-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=wb-admin-password-0123456789

# Starts server $1 on a free port with an empty store; sets pid and url.
start() {
  local port data
  port=$(free_port)
  data=$work/data-$1
  rm -rf "$data"
  mkdir -p "$data"
  case $1 in
    liveplan)
      # shellcheck disable=SC2086 # LIVEPLAN_ARGS is a list of flags
      "${server_pin[@]}" "$server_bin" serve --listen "127.0.0.1:$port" --data-dir "$data" \
        ${LIVEPLAN_ARGS:-} >"$data/server.log" 2>&1 &
      pid=$!
      wait_http "http://127.0.0.1:$port/healthz"
      ;;
    y-websocket)
      HOST=127.0.0.1 PORT=$port YPERSISTENCE=$data/leveldb "${server_pin[@]}" "$node" \
        "$YWS/node_modules/@y/websocket-server/src/server.js" >"$data/server.log" 2>&1 &
      pid=$!
      wait_http "http://127.0.0.1:$port/"
      ;;
    hocuspocus)
      PORT=$port DB=$data/hocuspocus.sqlite "${server_pin[@]}" "$node" "$HOCUSPOCUS/server.js" \
        >"$data/server.log" 2>&1 &
      pid=$!
      wait_http "http://127.0.0.1:$port/"
      ;;
  esac
  url=http://127.0.0.1:$port
}

stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}

servers=(liveplan)
[ -n "${YWS:-}" ] && servers+=(y-websocket)
[ -n "${HOCUSPOCUS:-}" ] && servers+=(hocuspocus)
echo "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
  "$(date -u '+%Y-%m-%d %H:%M UTC')," "$(nproc) CPUs, node $("$node" --version)"
for round in $(seq 1 "$rounds"); do
  for scenario in $scenarios; do
    case $scenario in
      relay50) args=(--mode relay -b 1 -e 50 -r "${RATE50:-2}" -d "$duration") ;;
      relay1000) args=(--mode relay -b 1000 -e 2 -r "${RATE1000:-0.5}" -d "$duration") ;;
      memory) args=(--mode memory -b "${MEMORY_BOARDS:-1000}") ;;
      load) args=(--mode load --doc-mib "${DOC_MIB:-10}" --loads "${LOADS:-3}") ;;
      *)
        echo "unknown scenario $scenario" >&2
        exit 2
        ;;
    esac
    for server in "${servers[@]}"; do
      start "$server"
      label=$scenario-$server-$round
      echo "== $label: load average $(cut -d' ' -f1-3 /proc/loadavg) =="
      "${loadgen_pin[@]}" "$loadgen_bin" whiteboards --kind "$server" --server "$url" \
        --server-pid "$pid" "${args[@]}" 2>"$out/$label.err" | tee "$out/$label.out" |
        grep -v '^{' || echo "$label failed: $(tail -3 "$out/$label.err")"
      stop
    done
  done
done
echo "== summary =="
for f in "$out"/*.out; do
  label=$(basename "$f" .out)
  grep '^{' "$f" | jq -r --arg l "$label" '.liveplan_loadgen_whiteboards |
    if .latency then
      "\($l): p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, \(.delivered)/\(.expected_deliveries) delivered, \(.server_cpu_us_per_delivery // "n/a" | tostring | .[0:6]) µs CPU per delivery (\(.server_cpu_us_per_delivery_above_idle // "n/a" | tostring | .[0:6]) above idle), load \(.load_average_1m)"
    elif .server_rss_per_board_bytes then
      "\($l): \(.server_rss_per_board_bytes | floor) B per open board (\(.opened) open), load \(.load_average_1m)"
    else
      "\($l): loads \([.loads[].complete_ms | floor] | join(", ")) ms (first step 2 \([.loads[].first_step2_ms | floor] | join(", ")) ms), write \(.write_secs * 100 | floor / 100) s, load \(.load_average_1m)"
    end' || true
done
