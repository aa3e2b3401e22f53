#!/usr/bin/env bash
# The proxy benchmark, one run: direct, fairway-proxy, Envoy, nginx, HAProxy on the same
# pods with the same load generator. About 7 minutes (3 rounds, HTTP/1.1 and h2c).
# Results: target/bench/proxy/
# (results.json, results.md, per-run logs and generated configs), the chart:
# docs/img/proxy-bench.svg. Arguments go to bench/proxy.py (--help lists them).
#   bench/install.sh        # once: wrk, h2load, nginx, haproxy, Envoy
#   bench/proxy.sh          # builds the binaries (proxy: `dist` profile), then runs
#   bench/proxy.sh --contend 1   # the same with a CPU hog sharing the proxies' core
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in wrk h2load taskset ss python3; do
  command -v "$bin" >/dev/null || { echo "$bin missing: run bench/install.sh" >&2; exit 1; }
done
for bin in nginx haproxy; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "$bin missing: run bench/install.sh" >&2; exit 1; }
done
bench/envoy-path.sh >/dev/null || { echo "Envoy missing: run bench/install.sh" >&2; exit 1; }
# Always (a no-op when up to date), so a run never measures a stale binary: the proxy
# as it ships (the `dist` profile: fat LTO), the controller as a plain release build.
cargo build --profile dist -p fairway-proxy
cargo build --release -p fairway-controller
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/proxy.py "$@"
