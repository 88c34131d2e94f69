#!/usr/bin/env bash
# MPXJ differential test of liveplan's CPM engine.
#
#   crates/cpm/oracle/run.sh [COUNT] [SEED] [TASKS]
#
# Generates COUNT random networks (default 500, seed 1, 3..40 tasks each unless TASKS
# is given) with the Rust example `oracle_gen`, schedules each with MPXJ's
# MicrosoftScheduler and compares every output field of every task. Exits non-zero on
# any mismatch. Needs Java (installed with apt-get when missing and running as root)
# and installs MPXJ + JPype into a virtualenv under a cache directory outside the repo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache=${LIVEPLAN_ORACLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/liveplan-oracle}
venv=$cache/venv
count=${1:-500}
seed=${2:-1}
tasks=${3:-0}

if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "oracle: java is required (e.g. apt-get install default-jre-headless)" >&2
    exit 2
  fi
fi

if ! "$venv/bin/python" -c 'import mpxj, jpype' >/dev/null 2>&1; then
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "mpxj==16.10.0" "jpype1==1.7.1"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo run -q -p liveplan-cpm --example oracle_gen -- "$work/networks.json" "$count" "$seed" "$tasks")
"$venv/bin/python" "$here/mpxj_oracle.py" "$work/networks.json" --report "$work/report.txt"
