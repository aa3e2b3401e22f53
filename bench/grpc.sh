#!/usr/bin/env bash
# The gRPC unary benchmark of issue 22, one run: ghz calling grpc.health.v1 Check on
# grpc-go pods straight and through fairway-proxy, Envoy, nginx (grpc_pass) and HAProxy
# (one worker each, pinned to CPU 0; ghz and the pods on CPU 1), the same pods and the
# same client for all. Per target and round: calls/s, p50/p90/p99 and the proxy's CPU
# per call at concurrency 64 on one HTTP/2 connection. About 4 minutes (3 rounds).
# Results: target/bench/grpc/ (results.json, results.md, a run-* directory with ghz's
# output, logs and generated configs). Arguments go to bench/grpc.py (--help lists them).
#   bench/install.sh                  # once: nginx, haproxy, Envoy
#   bench/grpc.sh                     # builds fairway, the pods and ghz, then runs
#   bench/grpc.sh --rounds 5 --concurrency 16 --connections 4
# bench/grpcserver (grpc-go) is the pods; ghz comes from its Go module, pinned in
# bench/ghz/go.mod. Both are built into target/ with their Go caches under target/go, so
# nothing lands in the tree. Only loopback addresses; every process is stopped by its
# own id. h2c without gRPC is bench/proxy.sh's (h2load).
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in go taskset python3; do
  command -v "$bin" >/dev/null || { echo "$bin missing" >&2; exit 1; }
done
for bin in nginx haproxy; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "$bin missing: run bench/install.sh" >&2; exit 1; }
done
bench/envoy-path.sh >/dev/null || { echo "Envoy missing: run bench/install.sh" >&2; exit 1; }
# Always (a no-op when up to date), so a run never measures a stale binary: the proxy
# as it ships (the `dist` profile: fat LTO), the controller as a plain release build,
# as bench/proxy.sh does.
cargo build --profile dist -p fairway-proxy
cargo build --release -p fairway-controller
export GOPATH=$PWD/target/go GOCACHE=$PWD/target/go/cache GOMODCACHE=$PWD/target/go/pkg/mod GOFLAGS=-modcacherw
(cd bench/grpcserver && go build -o ../../target/grpcserver .)
(cd bench/ghz && go build -o ../../target/ghz github.com/bojand/ghz/cmd/ghz)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 bench/grpc.py "$@"
