#!/usr/bin/env bash
# The sidecar's captured path against the explicit one and direct (issue 17): wrk
# through the real nftables capture rules in a network namespace of its own. About 2
# minutes (3 rounds). Needs root. Results: target/bench/capture/ (results.json,
# results.md, per-run logs). Arguments go to bench/capture.py (--help lists them).
#   bench/install.sh        # once: wrk, nginx
#   bench/capture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in wrk taskset python3 unshare setpriv nft ip; do
  command -v "$bin" >/dev/null || { echo "$bin missing: run bench/install.sh (nft: apt-get install nftables)" >&2; exit 1; }
done
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx missing: run bench/install.sh" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench/capture.sh needs root (a network namespace and nftables)" >&2; exit 1; }
# The proxy as it ships (`dist`), as bench/proxy.sh builds it; the rest plain release.
cargo build --profile dist -p fairway-proxy --bin fairway-proxy
cargo build --release -p fairway-controller --bin fairway-controller
cargo build --release -p fairway-proxy --bin fairway-capture
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/capture.py "$@"
