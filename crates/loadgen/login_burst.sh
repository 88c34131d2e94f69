#!/usr/bin/env bash
# Memory of a burst of failed logins (issue 20, defect 1): starts BIN on an empty data dir,
# sends N concurrent logins for unknown accounts (each costs an argon2id hash), and prints the
# server's idle, peak and later RSS and the answers' statuses.
#   crates/loadgen/login_burst.sh [BIN] [N]     (BIN defaults to target/release/liveplan)
set -euo pipefail
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/liveplan}"
N="${2:-70}"
PORT="${PORT:-18181}"
DATA="$(mktemp -d)"
CODES="$(mktemp)"
"$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA" "$CODES"' EXIT
for _ in $(seq 1 150); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
echo "idle RSS: $(rss) kB"
(
  for i in $(seq 1 "$N"); do
    curl -s -o /dev/null --max-time 60 -w '%{http_code}\n' -H 'content-type: application/json' \
      -d "{\"email\":\"nobody$i@example.com\",\"password\":\"wrong-$i\"}" \
      "http://127.0.0.1:$PORT/api/v1/auth/login" &
  done
  wait
) >"$CODES" &
BURST=$!
peak=0
# Bounded: curl gives up after 60 s; sampled every 0.1 s.
for _ in $(seq 1 700); do
  kill -0 "$BURST" 2>/dev/null || break
  r="$(rss)"; [ "$r" -gt "$peak" ] && peak="$r"
  sleep 0.1
done
echo "peak RSS during $N logins: $peak kB"
echo "answers:"; sort "$CODES" | uniq -c
sleep 15; echo "RSS 15 s after: $(rss) kB"
sleep 45; echo "RSS 60 s after: $(rss) kB"
