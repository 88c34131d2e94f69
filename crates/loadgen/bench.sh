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
#
# NETNS=1 or NETNS=napi (root; needs SERVER_CPUS and LOADGEN_CPUS) emulates two hosts on this
# machine instead of loopback. On loopback the kernel runs the receiving socket's TCP path in
# softirq inside the sender's send(), so the server's CPU time includes the load generator's
# receive work (~1.8 µs per delivery). Here the server runs in network namespace lp-srv-$$ on
# 10.77.0.1, the load generator in lp-cli-$$ on 10.77.1.1, 10.77.1.2, … (`--source-base
# 10.77.1.1`), joined by a veth pair, and each veth end's receive work runs on its own side's
# CPUs, as on two machines:
#   NETNS=1     Receive Packet Steering: rps_cpus = SERVER_CPUS on the server's end, LOADGEN_CPUS
#               on the load generator's. Costs an inter-processor interrupt per burst of packets,
#               which in a VM can cost the sender and the receiver more than the receive path
#               it moves (see BENCHMARKS.md, "Usage").
#   NETNS=napi  each veth end polls in a threaded NAPI kernel thread ("napi/lps…", "napi/lpc…")
#               pinned to that side's CPUs, with GRO on (TSO off, without which veth bypasses
#               NAPI) and a pfifo qdisc so a full veth ring pushes back instead of dropping.
#               Needs ethtool. Each side's receive work is then charged to its thread, not to
#               the server or the load generator: `run` reports the server-side thread's CPU
#               over its window as "server rx CPU" (--server-rx-pid), and both threads' CPU
#               over the whole load generator run is printed at the end.
# Namespaces and veth are removed on exit; each side's TCP retransmissions and drops are printed
# then (all should be 0).
#
#   SERVER_CPUS=0 LOADGEN_CPUS=1 NETNS=1 crates/loadgen/bench.sh run --dialect ws -n 1000 -r 50
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}/release
server_bin=$target/liveplan
loadgen_bin=$target/liveplan-loadgen
if [ ! -x "$server_bin" ] || [ ! -x "$loadgen_bin" ]; then
  echo "build first: cargo build --release -p liveplan-server -p liveplan-loadgen" >&2
  exit 2
fi
mode=$1
shift
count=1000
source_addrs=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    -n | --subscribers | --connections) count=${args[i + 1]} ;;
    --source-addrs) source_addrs=${args[i + 1]} ;;
  esac
done
per_user=${PER_USER:-100}
server_pin=()
loadgen_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${LOADGEN_CPUS:-}" ] && loadgen_pin=(taskset -c "$LOADGEN_CPUS")
listen=127.0.0.1:0
# NETNS: `ip netns exec` prefixes and the load generator's source addresses.
netns=
server_ns=()
loadgen_ns=()
loadgen_net=()
case ${NETNS:-0} in
  0 | '') ;;
  1 | rps) netns=rps ;;
  napi) netns=napi ;;
  *)
    echo "NETNS must be 1 (or rps) or napi, not ${NETNS}" >&2
    exit 2
    ;;
esac
if [ -n "$netns" ]; then
  if [ -z "${SERVER_CPUS:-}" ] || [ -z "${LOADGEN_CPUS:-}" ]; then
    echo "NETNS=$NETNS needs SERVER_CPUS and LOADGEN_CPUS (e.g. 0 and 1): each veth's receive work runs on them" >&2
    exit 2
  fi
  if [ "$netns" = napi ] && ! command -v ethtool >/dev/null; then
    echo "NETNS=napi needs ethtool (to turn GRO on and TSO off on the veth pair)" >&2
    exit 2
  fi
  srv_ns=lp-srv-$$
  cli_ns=lp-cli-$$
  srv_dev=lps$$
  cli_dev=lpc$$
  srv_ip=10.77.0.1
  listen=$srv_ip:0
  server_ns=(ip netns exec "$srv_ns")
  loadgen_ns=(ip netns exec "$cli_ns")
  loadgen_net=(--source-base 10.77.1.1)
fi

data=$(mktemp -d /tmp/liveplan-bench.XXXXXX)
export LIVEPLAN_ADMIN_EMAIL=bench-admin@loadgen.test
export LIVEPLAN_ADMIN_PASSWORD=bench-admin-password-0123
# Both processes may hold tens of thousands of sockets.
ulimit -n "$(ulimit -Hn)"
# A taskset CPU list (0 / 0,2 / 1-3) as the hexadecimal mask rps_cpus takes.
cpu_mask() {
  local mask=0 part lo hi cpu parts
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    lo=${part%-*}
    hi=${part#*-}
    if ! [[ $lo =~ ^[0-9]+$ && $hi =~ ^[0-9]+$ ]] || ((lo > hi || hi >= 63)); then
      echo "NETNS takes CPU lists like 0, 0,2 or 1-3 below 63 (got $1)" >&2
      exit 2
    fi
    for ((cpu = lo; cpu <= hi; cpu++)); do mask=$((mask | 1 << cpu)); done
  done
  printf '%x\n' "$mask"
}
# Sum of the second column (packets dropped: backlog full) of /proc/net/softnet_stat, all CPUs.
softnet_drops() {
  local total=0 _ dropped
  while read -r _ dropped _; do total=$((total + 16#$dropped)); done </proc/net/softnet_stat
  echo "$total"
}
# TCP segments retransmitted in a namespace since it was made.
retransmits() {
  # shellcheck disable=SC2016
  ip netns exec "$1" awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i; h = 1 } else print $c }' /proc/net/snmp
}
# Packets a namespace's veth end dropped (received and sent).
veth_drops() {
  # shellcheck disable=SC2016
  ip netns exec "$1" sh -c 'cd "/sys/class/net/$1/statistics" && echo $(($(cat rx_dropped) + $(cat tx_dropped)))' sh "$2"
}
# utime + stime of pids, in clock ticks (kernel threads: their comm has no spaces).
cpu_ticks() {
  local pid total=0 fields
  for pid in "$@"; do
    read -ra fields <"/proc/$pid/stat"
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
# Clock ticks as seconds.
secs() {
  awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
veth_made=
drops_before=0
srv_napi=()
cli_napi=()
# NETNS=napi: the server-side NAPI threads, for `liveplan-loadgen run --server-rx-pid`.
loadgen_rx=()
# NETNS=napi: GRO on, TSO off, a pfifo qdisc, threaded NAPI; prints the new NAPI threads' pids,
# pinned to the CPUs given.
napi_threads() {
  local ns=$1 dev=$2 cpus=$3 before pid
  ip netns exec "$ns" ethtool -K "$dev" gro on tso off >/dev/null
  ip -n "$ns" link set "$dev" txqueuelen 10000
  tc -n "$ns" qdisc replace dev "$dev" root pfifo
  before=" $({ pgrep '^napi/' || true; } | tr '\n' ' ') "
  # shellcheck disable=SC2016
  ip netns exec "$ns" sh -c 'echo 1 >"/sys/class/net/$1/threaded"' sh "$dev"
  for pid in $(pgrep "^napi/$dev"); do
    case $before in
      *" $pid "*) ;;
      *)
        taskset -pc "$cpus" "$pid" >/dev/null
        echo "$pid"
        ;;
    esac
  done
}
netns_up() {
  local srv_mask cli_mask k users i ns pid
  srv_mask=$(cpu_mask "$SERVER_CPUS")
  cli_mask=$(cpu_mask "$LOADGEN_CPUS")
  # As many client addresses as the load generator may use: subscribers (25,000 per address,
  # at least 4) and logins (50 users per address).
  users=$(((count + per_user - 1) / per_user))
  k=$(((count + 24999) / 25000))
  ((k >= 4)) || k=4
  ((k >= (users + 49) / 50)) || k=$(((users + 49) / 50))
  ((k >= source_addrs)) || k=$source_addrs
  ((k <= 250)) || k=250
  drops_before=$(softnet_drops)
  ip netns add "$srv_ns"
  ip netns add "$cli_ns"
  ip link add "$srv_dev" type veth peer name "$cli_dev"
  veth_made=1
  ip link set "$srv_dev" netns "$srv_ns"
  ip link set "$cli_dev" netns "$cli_ns"
  veth_made=
  ip -n "$srv_ns" addr add "$srv_ip/16" dev "$srv_dev"
  for ((i = 1; i <= k; i++)); do echo "addr add 10.77.1.$i/16 dev $cli_dev"; done | ip -n "$cli_ns" -batch -
  for ns in "$srv_ns" "$cli_ns"; do ip -n "$ns" link set lo up; done
  ip -n "$srv_ns" link set "$srv_dev" up
  ip -n "$cli_ns" link set "$cli_dev" up
  if [ "$netns" = napi ]; then
    mapfile -t srv_napi < <(napi_threads "$srv_ns" "$srv_dev" "$SERVER_CPUS")
    mapfile -t cli_napi < <(napi_threads "$cli_ns" "$cli_dev" "$LOADGEN_CPUS")
    if [ ${#srv_napi[@]} = 0 ] || [ ${#cli_napi[@]} = 0 ]; then
      echo "no NAPI thread appeared for $srv_dev or $cli_dev" >&2
      exit 1
    fi
    for pid in "${srv_napi[@]}"; do loadgen_rx+=(--server-rx-pid "$pid"); done
    echo "netns: server in $srv_ns ($srv_ip, $srv_dev polled by pid ${srv_napi[*]} on CPUs $SERVER_CPUS), load generator in $cli_ns (10.77.1.1–10.77.1.$k, $cli_dev polled by pid ${cli_napi[*]} on CPUs $LOADGEN_CPUS)" >&2
    return
  fi
  # `ip netns exec` mounts a sysfs of the namespace, where its veth end is.
  # shellcheck disable=SC2016
  local set_rps='f=/sys/class/net/$2/queues/rx-0/rps_cpus
    echo "$1" 2>/dev/null >"$f" || { echo "cannot set $f to $1 (CPUs present: $(cat /sys/devices/system/cpu/present))" >&2; exit 1; }
    cat "$f"'
  srv_mask=$(ip netns exec "$srv_ns" sh -c "$set_rps" sh "$srv_mask" "$srv_dev")
  cli_mask=$(ip netns exec "$cli_ns" sh -c "$set_rps" sh "$cli_mask" "$cli_dev")
  echo "netns: server in $srv_ns ($srv_ip, $srv_dev rps_cpus $srv_mask), load generator in $cli_ns (10.77.1.1–10.77.1.$k, $cli_dev rps_cpus $cli_mask)" >&2
}
netns_down() {
  local ns pid _
  if [ -n "$veth_made" ]; then
    ip link del "$srv_dev" 2>/dev/null || true
  fi
  if ip netns pids "$srv_ns" >/dev/null 2>&1 && ip netns pids "$cli_ns" >/dev/null 2>&1; then
    echo "netns: TCP segments retransmitted: server $(retransmits "$srv_ns"), load generator $(retransmits "$cli_ns"); packets dropped by veth: $(veth_drops "$srv_ns" "$srv_dev") + $(veth_drops "$cli_ns" "$cli_dev"), by full backlogs (whole host): $(($(softnet_drops) - drops_before))" >&2
    if [ -n "$napi_before" ]; then
      local srv_before cli_before
      read -r srv_before cli_before <<<"$napi_before"
      echo "netns: NAPI threads' CPU from the start of \`liveplan-loadgen $mode\`: server side $(secs $(($(cpu_ticks "${srv_napi[@]}") - srv_before))) s, load generator side $(secs $(($(cpu_ticks "${cli_napi[@]}") - cli_before))) s" >&2
    fi
  fi
  for ns in "$srv_ns" "$cli_ns"; do
    # Whatever still runs in our namespaces (a load generator of an interrupted run) was ours.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
      [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
      sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || true
  done
}
napi_before=
server=
start_server() {
  : >"$data/stdout"
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-warn} ${server_ns[@]+"${server_ns[@]}"} ${server_pin[@]+"${server_pin[@]}"} "$server_bin" serve --listen "$listen" \
    --data-dir "$data" --sse-max-per-user "$per_user" ${SERVER_ARGS:-} >"$data/stdout" 2>>"$data/stderr" &
  server=$!
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$data/stdout" 2>/dev/null && break
    sleep 0.1
  done
  url=$(sed -n 's/^liveplan listening on //p' "$data/stdout")
  [ -n "$url" ] || { cat "$data/stderr" >&2; exit 1; }
  # `ip netns exec` and taskset exec the server, so $! is its pid; make sure.
  if [ -n "$netns" ] && [ "$(cat "/proc/$server/comm")" != "$(basename "$server_bin" | cut -c1-15)" ]; then
    echo "pid $server is $(cat "/proc/$server/comm"), not the server" >&2
    exit 1
  fi
  echo "server pid $server at $url, data in $data" >&2
}
stop_server() {
  [ -z "$server" ] && return 0
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}
cleanup() {
  stop_server
  [ -z "$netns" ] || netns_down
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$data"
}
trap cleanup EXIT

[ -z "$netns" ] || netns_up
start_server
${loadgen_ns[@]+"${loadgen_ns[@]}"} "$loadgen_bin" prepare --server "$url" -n "$count" --per-user "$per_user" \
  ${loadgen_net[@]+"${loadgen_net[@]}"} --out "$data/state.json"
stop_server
start_server
sleep 1
if [ "$netns" = napi ]; then
  napi_before="$(cpu_ticks "${srv_napi[@]}") $(cpu_ticks "${cli_napi[@]}")"
fi
${loadgen_ns[@]+"${loadgen_ns[@]}"} ${loadgen_pin[@]+"${loadgen_pin[@]}"} "$loadgen_bin" "$mode" --server "$url" --server-pid "$server" \
  --state "$data/state.json" --per-user "$per_user" ${loadgen_net[@]+"${loadgen_net[@]}"} ${loadgen_rx[@]+"${loadgen_rx[@]}"} "$@"
