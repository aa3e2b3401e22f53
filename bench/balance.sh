#!/usr/bin/env bash
# The balancing benchmark of issue 18, one run: open-loop load at 50/80/90% of four
# unlike pods' capacity (one 3x slower, one stalling 200 ms every 2 s) through
# fairway-proxy (RoundRobin, LeastRequest, PeakEwma, Prequal), Envoy LEAST_REQUEST, nginx
# least_conn and HAProxy leastconn, one worker each. About 6 minutes per round.
# Results: target/bench/balance/ (results.json, results.md, a run-* directory with logs).
# Arguments go to bench/balance.py (--help lists them).
#   bench/install.sh              # once: nginx, haproxy, Envoy
#   bench/balance.sh              # builds fairway and bench/lbload, then runs
#   bench/balance.sh --rounds 3 --loads 0.8
# bench/lbload (pods and load, Go standard library) is built into target/ with its Go
# cache under target/go, so nothing lands in the tree. Only loopback addresses; every
# process is stopped by its own id.
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in go taskset python3; do
  command -v "$bin" >/dev/null || { echo "$bin missing" >&2; exit 1; }
done
for bin in nginx haproxy; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "$bin missing: run bench/install.sh" >&2; exit 1; }
done
bench/envoy-path.sh >/dev/null || { echo "Envoy missing: run bench/install.sh" >&2; exit 1; }
cargo build --profile dist -p fairway-proxy
cargo build --release -p fairway-controller
export GOPATH=$PWD/target/go GOCACHE=$PWD/target/go/cache GOMODCACHE=$PWD/target/go/pkg/mod GOFLAGS=-modcacherw
(cd bench/lbload && go build -o ../../target/lbload .)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/balance.py "$@"
