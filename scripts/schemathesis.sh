#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against a real liveplan's own OpenAPI document, once as a
# system administrator and once as a regular user (CONTRACT §2, issue 20): no 5xx, every
# response matches the document, requests the document calls valid are accepted, undocumented
# methods answer 405, and operations that need a session refuse a request without one.
#
# Usage: scripts/schemathesis.sh [BINARY]   (default: $CARGO_TARGET_DIR/debug/liveplan)
# One worker: hypothesis parses lambdas' source with `ast` from its threads, which CPython 3.11
# sometimes fails ("AST constructor recursion depth mismatch", seen here with two workers).
# ST_MAX_TIME (seconds per user, default 90) and ST_SEED (default fixed, so CI is repeatable)
# tune it; ST_SEED=random explores new cases.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/liveplan/target}"
binary="${1:-$target_dir/debug/liveplan}"
[ -x "$binary" ] || cargo build --bin liveplan
max_time="${ST_MAX_TIME:-90}"
seed="${ST_SEED:-20261206}"

# schemathesis lives in a virtualenv of its own, kept beside the build cache.
venv="$HOME/.cache/liveplan/schemathesis-venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q 'version 4\.32\.5'; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 keeps venv in a package of its own.
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Each user's run gets a fresh demo server: the administrator's run may change anything (ben's
# password, his account, his membership, the login rate limit), which must not decide whether
# ben's run can start.
start_server() {
  rm -rf "$work/data"
  "$binary" serve --listen 127.0.0.1:0 --data-dir "$work/data" --demo >"$work/server.log" 2>&1 &
  server_pid=$!
  base=""
  for _ in $(seq 1 100); do
    base="$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" | head -n 1 | cut -d' ' -f3 || true)"
    [ -n "$base" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
  done
  [ -n "$base" ] || { echo "the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
}

stop_server() {
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  server_pid=""
  if grep -q 'panicked' "$work/server.log"; then
    echo "the server panicked:" >&2
    grep -A 5 'panicked' "$work/server.log" >&2
    status=1
  fi
}

token_of() {
  curl -sS --max-time 10 -X POST "$base/api/v1/auth/login" \
    -H 'content-type: application/json' -d "{\"username\":\"$1\",\"password\":\"$1\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

project_of() {
  curl -sS --max-time 10 "$base/api/v1/projects" -H "Authorization: Bearer $1" |
    python3 -c 'import json, sys; print(next(p["id"] for p in json.load(sys.stdin) if p.get("key") == "WEB"))'
}

status=0
# Whole-database operations would end the run's own premise (wipe or replace everything),
# and logout ends the session the run authenticates with: those are tested by the server's
# integration tests instead.
for user in admin ben; do
  echo "== schemathesis as $user ($max_time s, seed $seed)"
  start_server
  # The demo's Website project, where ben is a Member.
  project_id="$(project_of "$(token_of admin)")"
  seed_args=(--seed "$seed")
  [ "$seed" = random ] && seed_args=()
  token="$(token_of "$user")"
  ST_PROJECT_ID="$project_id" "$venv/bin/st" \
    --config-file scripts/schemathesis.toml run "$base/api/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --max-time "$max_time" \
    --workers 1 \
    "${seed_args[@]}" \
    --exclude-path /api/v1/auth/logout \
    --exclude-path /api/v1/admin/import \
    --exclude-path /api/v1/admin/projects \
    --suppress-health-check all \
    --no-color || status=1
  stop_server
done
exit "$status"
