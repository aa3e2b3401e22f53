#!/usr/bin/env bash
# User-space instructions per proxied gRPC unary call, counted by valgrind's callgrind:
# bench/callgrind.sh's measure for bench/grpc.sh's load (ghz calling grpc.health.v1
# Check at concurrency 64 over one HTTP/2 connection, grpc-go pods, h2c both sides).
#
#   bench/callgrind-grpc.sh               # fairway-proxy as it ships (`dist` profile)
#   PEERS=1 bench/callgrind-grpc.sh       # and HAProxy and nginx, the same way
#   CALLS=20000 bench/callgrind-grpc.sh
#
# Run bench/grpc.sh once first: it builds target/ghz and target/grpcserver. Each proxy
# runs under callgrind with instrumentation off; 2,000 warm-up calls, instrumentation on,
# CALLS more, dump, total ÷ CALLS (for fairway also its top functions, inclusive).
# User space only, as bench/callgrind.sh. Output: target/bench/callgrind-grpc/.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-dist}
CALLS=${CALLS:-10000}
PEERS=${PEERS:-}
for bin in valgrind callgrind_control callgrind_annotate curl target/ghz target/grpcserver; do
  command -v "$bin" >/dev/null || { echo "$bin missing (valgrind, curl: apt-get; ghz, grpcserver: bench/grpc.sh)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --profile "$PROFILE" -p fairway-proxy
cargo build --release -p fairway-controller
proxy=target/$PROFILE/fairway-proxy

out=$PWD/target/bench/callgrind-grpc
rm -rf "$out" && mkdir -p "$out/static" "$out/nginx-body"
sed 's#@@PORT@@#28480#g' bench/conf/fairway/orders.yaml.in > "$out/static/orders.yaml"
cp bench/conf/fairway/route-grpc.yaml "$out/static/route.yaml"
sed -e "s#@@RUN@@#$out#g" -e 's#@@PORT@@#28480#g' -e 's#@@NGINX_PORT@@#28450#g' \
    bench/conf/nginx-grpc.conf > "$out/nginx-grpc.conf"
sed -e 's#@@HAPROXY_PORT@@#28460#' -e 's#@@PORT@@#28480#g' bench/conf/haproxy-grpc.cfg > "$out/haproxy-grpc.cfg"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
GOMAXPROCS=1 target/grpcserver 127.0.0.11:28480 127.0.0.12:28480 127.0.0.13:28480 127.0.0.14:28480 \
  >"$out/pods.log" 2>&1 &
pids+=($!)
RUST_LOG=warn target/release/fairway-controller --static-dir "$out/static" \
  --grpc-addr 127.0.0.1:28400 --admin-addr 127.0.0.1:28401 --no-auth >"$out/controller.log" 2>&1 &
pids+=($!)
sleep 1

# load PORT CALLS: prints ghz's status line(s). Bounded: a call to a proxy that is not
# listening yet waits for ghz's connect timeout, and no run may hang the script.
load() {
  timeout 300 target/ghz --connect-timeout 2s --insecure --proto bench/grpcserver/health.proto --call grpc.health.v1.Health.Check -d '{}' \
    --authority orders.bench -c 64 --connections 1 -n "$2" "127.0.0.1:$1" | grep -E '^\s+\[\w+\]\s+[0-9]+ responses'
}

# answers PORT: one call succeeds (captured whole: `grep -q` in a pipe would end the
# pipe early, which pipefail reports as a failure).
answers() { [[ "$(load "$1" 1 2>/dev/null || true)" == *"[OK]"* ]]; }

# measure NAME PORT COMMAND...: prints NAME's instructions per call.
measure() {
  local name=$1 port=$2
  shift 2
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out/$name.out" "$@" >"$out/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  # Ready when one call succeeds (under valgrind a proxy takes seconds to listen).
  for _ in $(seq 1 30); do
    answers "$port" && break
    sleep 0.3
  done
  answers "$port" || { echo "$name never answered: $out/$name.log" >&2; exit 1; }
  load "$port" 2000 >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  local codes
  codes=$(load "$port" "$CALLS")
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill "$pid" 2>/dev/null || true
  echo "$codes" | grep -qE "^\s+\[OK\]\s+$CALLS responses" && [ "$(echo "$codes" | wc -l)" = 1 ] \
    || { echo "$name: not every call succeeded: $codes" >&2; exit 1; }
  dump=$(ls -t "$out/$name.out".* | head -1)
  local total
  total=$(callgrind_annotate --auto=no "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$name: $((total / CALLS)) instructions per call ($total over $CALLS)"
}

echo "profile $PROFILE, commit $(git rev-parse --short HEAD)"
measure fairway 28440 \
  "$proxy" --controller http://127.0.0.1:28400 --controller-plaintext --workers 1 \
  --listen 127.0.0.1:28440 --admin-addr 127.0.0.1:28490 --id callgrind --node bench
fairway_dump=$dump
if [ -n "$PEERS" ]; then
  measure haproxy 28460 "$HAPROXY" -db -f "$out/haproxy-grpc.cfg"
  measure nginx 28450 "$NGINX" -c "$out/nginx-grpc.conf" -p "$out"
fi
echo "fairway's top functions, inclusive, per call:"
set +o pipefail  # `head` ends the listing early; that is not a failure
callgrind_annotate --auto=no --inclusive=yes "$fairway_dump" | sed 's/,//g' \
  | awk -v n="$CALLS" '$1 ~ /^[0-9]+$/ && $1 > 0 { printf "%8d  %s\n", $1 / n, $NF ~ /^\[/ ? $(NF-1) : $NF }' \
  | sed 's#/root/.cargo/registry/src/[^/]*/##' | head -50
