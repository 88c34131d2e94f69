#!/usr/bin/env bash
# Runs every test of liveplan: formatting, lints, the whole workspace's tests (unit, store
# conformance on SQLite and on PostgreSQL, real-server integration tests, real third-party
# clients), the server's integration tests again on PostgreSQL, and the scheduler's oracle
# suites. Installs what the tests need when it is missing, so a fresh machine passes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are reused across clones and runs: keep the target directory outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/liveplan/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

# Each step's header says how far into the run it begins, so a log shows where the time went
# (the CI budget is 45 minutes on 2 cores; BENCHMARKS.md, "CI time").
step() { echo "== $* (at $((SECONDS / 60)) min $((SECONDS % 60)) s)"; }

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
# The multi-node tests start private redis-server processes of their own (the binary is what
# they need, not the system service).
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The web app's browser test (crates/server/tests/web_app.rs) drives Debian's Chromium.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The PostgreSQL tests make and drop a database per test on this server. Use the one given
# (LIVEPLAN_TEST_POSTGRES_URL, or LIVEPLAN_TEST_DATABASE_URL as the testkit reads it), else the
# one on 127.0.0.1:5432, else install and start Debian's. The PostgreSQL store's own tests and
# the domain's two-node test always use it; the server's tests use it only when
# LIVEPLAN_TEST_DATABASE_URL names it, which is the second pass below.
export LIVEPLAN_TEST_POSTGRES_URL="${LIVEPLAN_TEST_POSTGRES_URL:-${LIVEPLAN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}}"
unset LIVEPLAN_TEST_DATABASE_URL
postgres_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [[ "$LIVEPLAN_TEST_POSTGRES_URL" == *@127.0.0.1:5432/* ]] && ! postgres_up; then
  step "installing and starting PostgreSQL on 127.0.0.1:5432"
  if [ "$(id -u)" = 0 ]; then SUDO=""; AS_POSTGRES="runuser -u postgres --"; else SUDO="sudo"; AS_POSTGRES="sudo -u postgres"; fi
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
  fi
  version="$(pg_lsclusters --no-header | awk 'NR == 1 { print $1 }')"
  if [ -z "$version" ]; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    $SUDO pg_createcluster "$version" main
  fi
  # Tests connect as postgres without a password, from this machine only.
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! $SUDO grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  fi
  $SUDO pg_ctlcluster "$version" main restart || $SUDO pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do postgres_up && break; sleep 1; done
  postgres_up || { echo "PostgreSQL did not start" >&2; exit 1; }
  $AS_POSTGRES psql -h 127.0.0.1 -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || $AS_POSTGRES createdb -h 127.0.0.1 test
fi

# ---- The web app (web/, CONTRACT §13) -------------------------------------------------------
# Its unit tests, then a rebuild of the bundle the binary embeds: the committed web/dist must
# be exactly what the committed sources build, or this fails (run `npm run build` in web/ and
# commit web/dist). Runs before the Rust build, which embeds web/dist.
step "web: npm ci, vitest, bundle up to date"
(
  cd web
  npm ci --no-audit --no-fund
  npx vitest run
  npm run build
)
if ! git diff --quiet -- web/dist || [ -n "$(git ls-files --others --exclude-standard -- web/dist)" ]; then
  git status --short -- web/dist
  echo "web/dist is stale: run 'npm run build' in web/ and commit web/dist" >&2
  exit 1
fi
# ---------------------------------------------------------------------------------------------

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# The fuzz build has flags of its own and a target directory of its own beside the workspace's,
# so it shares nothing with the tests: it is built while they run, at the lowest priority, so
# it takes only the CPU time the tests leave idle (they wait on sockets, timers and syncs much of
# the time) instead of 8 minutes of its own after them (BENCHMARKS.md, "CI time").
export LIVEPLAN_FUZZ_TARGET_DIR="${LIVEPLAN_FUZZ_TARGET_DIR:-$(dirname "$CARGO_TARGET_DIR")/fuzz-target}"
export LIVEPLAN_FUZZ_PROFILE="${LIVEPLAN_FUZZ_PROFILE:-dev}"
fuzz_build_log="$(mktemp)"
step "fuzz build, in the background at the lowest priority"
# In a process group of its own (setsid), so that a failing step, which ends the run, can stop
# the whole build (cargo and its rustc processes), not only the script.
setsid nice -n 19 bash fuzz/run.sh --build-only >"$fuzz_build_log" 2>&1 &
fuzz_build=$!
trap '[ -n "${fuzz_build:-}" ] && kill -- "-$fuzz_build" 2>/dev/null; rm -f "$fuzz_build_log"' EXIT

step "cargo test (server tests on SQLite)"
cargo test --workspace --no-fail-fast

# Every server integration test again, each on a fresh PostgreSQL database, and the domain's
# two-node test. `--workspace` with `--test` filters keeps the first pass's feature set, so the
# binaries it built are run again and nothing is compiled.
server_tests=()
for test in crates/server/tests/*.rs; do
  name="$(basename "$test" .rs)"
  # The multi-node tests (many_nodes*) run on PostgreSQL in the first pass already.
  case "$name" in many_nodes*) continue ;; esac
  server_tests+=(--test "$name")
done
step "server tests on PostgreSQL"
LIVEPLAN_TEST_DATABASE_URL="$LIVEPLAN_TEST_POSTGRES_URL" \
  cargo test --workspace --no-fail-fast "${server_tests[@]}" --test two_nodes

# The HTTP API against its own OpenAPI document, as an administrator and as a regular user.
step "schemathesis"
bash scripts/schemathesis.sh "$CARGO_TARGET_DIR/debug/liveplan"

for oracle in crates/*/oracle/run.sh; do
  [ -f "$oracle" ] || continue
  step "$oracle"
  bash "$oracle"
done
# Every fuzz target for 15 seconds from its committed seed corpus (README.md, "Fuzzing"), built
# above, beside the tests.
step "fuzz smoke runs"
if ! wait "$fuzz_build"; then
  cat "$fuzz_build_log"
  echo "the fuzz build failed" >&2
  exit 1
fi
fuzz_build=
cat "$fuzz_build_log"
bash fuzz/run.sh 15

step "done"
echo "== all tests passed"
