#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: the
# proxy's hot-path measure (repeatable whatever else the machine does, unlike req/s).
#
#   bench/callgrind.sh                 # the proxy as it ships (`dist` profile)
#   PROFILE=release bench/callgrind.sh # the plain release build
#   REQUESTS=20000 bench/callgrind.sh
#
# Starts the benchmark's pods (one nginx on 127.0.0.11-14:28080, bench/conf), the
# controller on a static directory and fairway-proxy under callgrind with
# instrumentation off; sends 1,000 warm-up requests with `h2load --h1 -c8`, turns
# instrumentation on, sends REQUESTS more, dumps, and prints the total divided by
# REQUESTS with the top functions. The count still moves by a few percent with how
# many requests each event-loop turn serves (machine load); compare within one sitting.
# Needs: valgrind, h2load, nginx (bench/install.sh), curl. Output: target/bench/callgrind/.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-dist}
REQUESTS=${REQUESTS:-10000}
for bin in valgrind callgrind_control callgrind_annotate h2load curl; do
  command -v "$bin" >/dev/null || { echo "$bin missing: apt-get install valgrind nghttp2-client curl" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx missing: run bench/install.sh" >&2; exit 1; }
cargo build --profile "$PROFILE" -p fairway-proxy
cargo build --release -p fairway-controller
proxy=target/$PROFILE/fairway-proxy
[ "$PROFILE" = dev ] && proxy=target/debug/fairway-proxy

out=$PWD/target/bench/callgrind
rm -rf "$out" && mkdir -p "$out/static" "$out/body"
sed -e "s#@@RUN@@#$out#g" -e 's#@@BACKEND_WORKERS@@#1#' -e 's#@@PORT@@#28080#g' \
    -e 's#@@H2PORT@@#28081#g' -e 's#@@STATUS_PORT@@#28099#g' \
    bench/conf/backend-nginx.conf > "$out/backend.conf"
sed 's#@@PORT@@#28080#g' bench/conf/fairway/orders.yaml.in > "$out/static/orders.yaml"
cp bench/conf/fairway/route.yaml "$out/static/"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$NGINX" -c "$out/backend.conf" -p "$out" >"$out/backend.log" 2>&1 &
pids+=($!)
RUST_LOG=warn target/release/fairway-controller --static-dir "$out/static" \
  --grpc-addr 127.0.0.1:28100 --admin-addr 127.0.0.1:28101 --no-auth >"$out/controller.log" 2>&1 &
pids+=($!)
sleep 1
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
  "$proxy" --controller http://127.0.0.1:28100 --controller-plaintext --workers 1 \
  --listen 127.0.0.1:28140 --admin-addr 127.0.0.1:28190 --id callgrind --node bench >"$out/proxy.log" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:28190/ready >/dev/null && break
  sleep 0.3
done
curl -sf http://127.0.0.1:28190/ready >/dev/null || { echo "the proxy never became ready: $out/proxy.log" >&2; exit 1; }

load() { h2load --h1 -n "$1" -c8 -H ':authority: orders.bench' http://127.0.0.1:28140/ | grep -E "status codes"; }
load 1000 >/dev/null
callgrind_control -i on "$proxy_pid" >/dev/null
codes=$(load "$REQUESTS")
callgrind_control -d "$proxy_pid" >/dev/null
sleep 1
echo "$codes"
echo "$codes" | grep -q "^status codes: $REQUESTS 2xx" || { echo "not every request succeeded" >&2; exit 1; }
dump=$(ls -t "$out"/callgrind.out.* | head -1)
total=$(callgrind_annotate --auto=no "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "profile $PROFILE, commit $(git rev-parse --short HEAD): $((total / REQUESTS)) instructions per request ($total over $REQUESTS)"
echo "top functions, inclusive, per request:"
callgrind_annotate --auto=no --inclusive=yes "$dump" | sed 's/,//g' \
  | awk -v n="$REQUESTS" '$1 ~ /^[0-9]+$/ && $1 > 0 { printf "%8d  %s\n", $1 / n, $NF ~ /^\[/ ? $(NF-1) : $NF }' \
  | sed 's#/root/.cargo/registry/src/[^/]*/##' | head -40
