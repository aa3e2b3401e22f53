#!/usr/bin/env bash
# The WebSocket benchmark of issue 25, one run: WebSocket echo straight to a pod and
# through fairway-proxy, Envoy, nginx and HAProxy (one worker each, pinned to CPU 0;
# the client and the echo pods on CPU 1), the same pods and the same client for all.
# Per target and round: messages/s and p50/p90/p99 at 64 connections with 64-byte
# messages (closed loop), and the proxy's RSS with 4,000 idle WebSockets. About 4
# minutes (3 rounds; 8 with 5). Results: target/bench/websocket/ (results.json, results.md, a
# run-* directory with logs and generated configs). Arguments go to
# bench/websocket.py (--help lists them).
#   bench/install.sh                       # once: nginx, haproxy, Envoy
#   bench/websocket.sh                     # builds fairway and bench/wsload, then runs
#   bench/websocket.sh --rounds 5 --idle 8000
#   PROFILE=dist bench/websocket.sh        # the proxy as it ships (fat LTO)
# bench/wsload (Go, gorilla/websocket) is both the echo pods and the client; it is
# built into target/wsload with its Go caches under target/go, so nothing lands in
# the tree. Only loopback addresses; every process is stopped by its own id.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
for bin in go taskset python3; do
  command -v "$bin" >/dev/null || { echo "$bin missing" >&2; exit 1; }
done
for bin in nginx haproxy; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "$bin missing: run bench/install.sh" >&2; exit 1; }
done
bench/envoy-path.sh >/dev/null || { echo "Envoy missing: run bench/install.sh" >&2; exit 1; }
# Always (a no-op when up to date), so a run never measures a stale binary. One
# command for both: built apart, cargo unifies features differently and rebuilds half
# the dependency tree for each.
cargo build --profile "$PROFILE" -p fairway-proxy -p fairway-controller
export GOPATH=$PWD/target/go GOCACHE=$PWD/target/go/cache GOMODCACHE=$PWD/target/go/pkg/mod GOFLAGS=-modcacherw
(cd bench/wsload && go build -o ../../target/wsload .)
# 4,000 idle WebSockets: ~8,000 descriptors in the proxy, 4,000 in the client and in
# the pods. Raise the soft limit as far as the hard one allows (websocket.py checks
# what fits and says so if --idle does not).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-file limit $(ulimit -n); load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/websocket.py --profile "$PROFILE" "$@"
