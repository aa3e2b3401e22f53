#!/usr/bin/env bash
# Bounded fuzz run of every cargo-fuzz target in fuzz/: `fuzz/run.sh [SECONDS]` (default
# 60 per target). Installs cargo-fuzz under target/tools if missing. Uses the nightly
# toolchain when rustup has one, else the stable compiler with RUSTC_BOOTSTRAP=1 (the
# sanitizer flags cargo-fuzz passes are nightly-only). Starts from the committed seeds
# (fuzz/corpus/TARGET) plus what earlier runs found (target/fuzz/corpus/TARGET); a crash
# leaves its input in target/fuzz/artifacts/TARGET/ and fails the run. Ends with one
# line per target: runs, seconds, corpus size. See docs/security.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
targets=(discovery_decode table_deltas route_request)
# Per-input limits: a slow input (-timeout, s) or one that takes too much memory at once
# (-malloc_limit_mb) or in total (-rss_limit_mb) counts as a crash.
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256)

tools=$PWD/target/tools
export PATH="$tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --root "$tools"
fi
# FAIRWAY_FUZZ_STABLE=1 takes the stable path even where a nightly exists (to check it).
if [ -z "${FAIRWAY_FUZZ_STABLE:-}" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  toolchain=nightly
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  toolchain="stable with RUSTC_BOOTSTRAP=1"
fi
echo "fuzz/run.sh: ${seconds}s per target, $toolchain, $(rustc --version)"

work=$PWD/target/fuzz
summary=()
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  log="$work/$t.log"
  set +e
  # New inputs go to the first corpus directory (ours, under target/), never to the
  # committed seeds.
  "${fuzz[@]}" run --fuzz-dir fuzz --target-dir "$work/build" "$t" \
    "$work/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" "${limits[@]}" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  corpus=$(find "$work/corpus/$t" -type f | wc -l)
  seeds=$(find "fuzz/corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "fuzz/run.sh: $t FAILED (exit $rc); log tail:" >&2
    tail -n 40 "$log" >&2
    summary+=("$t: FAILED after $runs runs, artifacts in $work/artifacts/$t/")
  else
    summary+=("$t: $runs runs in ${seconds}s, corpus $corpus found + $seeds seeds")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
