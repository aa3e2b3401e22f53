#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: the
# proxy's hot-path measure (repeatable whatever else the machine does, unlike req/s).
#
#   bench/callgrind.sh                 # fairway-proxy as it ships (`dist` profile)
#   PEERS=1 bench/callgrind.sh         # and nginx and HAProxy, the same way, one run
#   PROFILE=release bench/callgrind.sh # the plain release build
#   REQUESTS=20000 bench/callgrind.sh
#
# Starts the benchmark's pods (one nginx on 127.0.0.11-14:28080, bench/conf), the
# controller on a static directory, and each proxy under callgrind with instrumentation
# off (one worker, bench/conf's configs; nginx without a master process, so the worker
# is the process measured); sends 1,000 warm-up requests with `h2load --h1 -c8`, turns
# instrumentation on, sends REQUESTS more, dumps, and prints the total divided by
# REQUESTS (for fairway also the top functions). The count still moves by a few
# percent with how many requests each event-loop turn serves (machine load); compare
# within one sitting. It counts user space only: the kernel's share (most of the CPU
# time on loopback) is bench/proxy.sh's CPU-per-request figure.
# Needs: valgrind, h2load, nginx, haproxy (bench/install.sh), curl.
# Output: target/bench/callgrind/.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-dist}
REQUESTS=${REQUESTS:-10000}
PEERS=${PEERS:-}
for bin in valgrind callgrind_control callgrind_annotate h2load curl; do
  command -v "$bin" >/dev/null || { echo "$bin missing: apt-get install valgrind nghttp2-client curl" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx missing: run bench/install.sh" >&2; exit 1; }
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -z "$PEERS" ] || [ -x "$HAPROXY" ] || { echo "haproxy missing: run bench/install.sh" >&2; exit 1; }
cargo build --profile "$PROFILE" -p fairway-proxy
cargo build --release -p fairway-controller
proxy=target/$PROFILE/fairway-proxy
[ "$PROFILE" = dev ] && proxy=target/debug/fairway-proxy

out=$PWD/target/bench/callgrind
rm -rf "$out" && mkdir -p "$out/static" "$out/body" "$out/nginx-body" "$out/nginx-proxy-temp"
sed -e "s#@@RUN@@#$out#g" -e 's#@@BACKEND_WORKERS@@#1#' -e 's#@@PORT@@#28080#g' \
    -e 's#@@H2PORT@@#28081#g' -e 's#@@STATUS_PORT@@#28099#g' \
    bench/conf/backend-nginx.conf > "$out/backend.conf"
sed 's#@@PORT@@#28080#g' bench/conf/fairway/orders.yaml.in > "$out/static/orders.yaml"
cp bench/conf/fairway/route.yaml "$out/static/"
sed -e "s#@@RUN@@#$out#g" -e 's#@@PORT@@#28080#g' -e 's#@@NGINX_PORT@@#28150#g' \
    -e 's#@@NGINX_H2PORT@@#28151#g' -e 's#^master_process on;#master_process off;#' \
    bench/conf/nginx-proxy.conf > "$out/nginx-proxy.conf"
sed -e 's#@@HAPROXY_PORT@@#28160#' -e 's#@@HAPROXY_H2PORT@@#28161#' -e 's#@@PORT@@#28080#g' \
    bench/conf/haproxy.cfg > "$out/haproxy.cfg"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$NGINX" -c "$out/backend.conf" -p "$out" >"$out/backend.log" 2>&1 &
pids+=($!)
RUST_LOG=warn target/release/fairway-controller --static-dir "$out/static" \
  --grpc-addr 127.0.0.1:28100 --admin-addr 127.0.0.1:28101 --no-auth >"$out/controller.log" 2>&1 &
pids+=($!)
sleep 1

load() { h2load --h1 -n "$2" -c8 -H ':authority: orders.bench' "http://127.0.0.1:$1/" | grep -E "status codes"; }

# measure NAME PORT READY-URL COMMAND...: prints NAME's instructions per request.
measure() {
  local name=$1 port=$2 ready=$3
  shift 3
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out/$name.out" "$@" >"$out/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    curl -sf "$ready" >/dev/null && break
    sleep 0.3
  done
  curl -sf "$ready" >/dev/null || { echo "$name never became ready: $out/$name.log" >&2; exit 1; }
  load "$port" 1000 >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  local codes
  codes=$(load "$port" "$REQUESTS")
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill "$pid" 2>/dev/null || true
  echo "$codes" | grep -q "^status codes: $REQUESTS 2xx" || { echo "$name: not every request succeeded: $codes" >&2; exit 1; }
  dump=$(ls -t "$out/$name.out".* | head -1)
  local total
  total=$(callgrind_annotate --auto=no "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$name: $((total / REQUESTS)) instructions per request ($total over $REQUESTS)"
}

echo "profile $PROFILE, commit $(git rev-parse --short HEAD)"
measure fairway 28140 http://127.0.0.1:28190/ready \
  "$proxy" --controller http://127.0.0.1:28100 --controller-plaintext --workers 1 \
  --listen 127.0.0.1:28140 --admin-addr 127.0.0.1:28190 --id callgrind --node bench
fairway_dump=$dump
if [ -n "$PEERS" ]; then
  measure nginx 28150 http://127.0.0.1:28150/ \
    "$NGINX" -c "$out/nginx-proxy.conf" -p "$out"
  measure haproxy 28160 http://127.0.0.1:28160/ \
    "$HAPROXY" -db -f "$out/haproxy.cfg"
fi
echo "fairway's top functions, inclusive, per request:"
callgrind_annotate --auto=no --inclusive=yes "$fairway_dump" | sed 's/,//g' \
  | awk -v n="$REQUESTS" '$1 ~ /^[0-9]+$/ && $1 > 0 { printf "%8d  %s\n", $1 / n, $NF ~ /^\[/ ? $(NF-1) : $NF }' \
  | sed 's#/root/.cargo/registry/src/[^/]*/##' | head -40
