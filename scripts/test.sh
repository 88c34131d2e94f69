#!/usr/bin/env bash
# Runs every test of liveplan: formatting, lints, the whole workspace's tests (unit, store
# conformance, real-server integration tests, real third-party clients) and the scheduler's
# oracle suites. Installs what the tests need when it is missing, so a fresh machine passes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are reused across clones and runs: keep the target directory outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/liveplan/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace --no-fail-fast

for oracle in crates/*/oracle/run.sh; do
  [ -f "$oracle" ] || continue
  echo "== $oracle"
  bash "$oracle"
done
echo "== all tests passed"
