#!/usr/bin/env bash
# Builds the fuzz targets and runs each from its committed seed corpus (fuzz/corpus/<target>)
# for a fixed time. scripts/test.sh runs it with 15 seconds a target; README.md, "Fuzzing",
# has longer runs.
#
# Usage: bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 15 s, every target)
#        bash fuzz/run.sh --build-only                      (install cargo-fuzz if needed, build)
#
# A crash, panic, timeout or out-of-memory stops that target's run; its input is kept in
# fuzz/artifacts/<target>/ and the script exits 1 after running the other targets.
set -euo pipefail
cd "$(dirname "$0")"

build_only=false
if [ "${1:-}" = --build-only ]; then build_only=true; shift; fi
seconds="${1:-15}"
shift || true

# The fuzz build has flags of its own (coverage instrumentation, a sanitizer): it cannot share
# the workspace's target directory, and keeping it outside the clone lets runs reuse it.
export CARGO_TARGET_DIR="${LIVEPLAN_FUZZ_TARGET_DIR:-$HOME/.cache/liveplan/fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# cargo-fuzz hands rustc nightly-only flags (-Z sanitizer..., -Z llvm-plugins...); this lets the
# stable toolchain take them, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1
# AddressSanitizer by default, as cargo-fuzz builds; LIVEPLAN_FUZZ_SANITIZER=none for a build
# without it (it needs a target directory of its own: the flags differ).
sanitizer="${LIVEPLAN_FUZZ_SANITIZER:-address}"
# Optimized (release) by default, as cargo-fuzz builds; LIVEPLAN_FUZZ_PROFILE=dev builds without
# optimizations: slower per input, but a cold build takes minutes instead of most of an hour,
# which is what the CI smoke run needs on a fresh machine.
profile_flag=()
# How long one input may take before it counts as a hang: unoptimized code with
# AddressSanitizer runs some inputs 20 to 50 times slower (a 100,000-day task at 9999-12-31
# took 16 s in schedule_input), so the dev build gets a longer limit.
input_timeout=10
if [ "${LIVEPLAN_FUZZ_PROFILE:-release}" = dev ]; then profile_flag=(--dev); input_timeout=60; fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# -a: overflow checks and debug assertions on, so an overflow is a crash, not a wrap.
echo "== cargo fuzz build (sanitizer: $sanitizer)"
cargo fuzz build "${profile_flag[@]}" --sanitizer "$sanitizer" -a
if $build_only; then exit 0; fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# New inputs a run finds go to a scratch corpus, not into the committed one.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "$scratch/$target" "artifacts/$target"
  log="$scratch/$target.log"
  # -timeout: one input taking this long is a hang; -rss_limit_mb: one using this much leaks.
  if cargo fuzz run "${profile_flag[@]}" --sanitizer "$sanitizer" -a "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|new_units_added)|DONE' "$log" || true
  else
    tail -n 80 "$log" >&2
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "== fuzz targets passed"
