#!/usr/bin/env bash
# What matching costs on the request path (issue 20): user-space instructions per
# proxied HTTP/1.1 request, counted by callgrind as bench/callgrind.sh does, for the
# benchmark Route as it is (host and prefix), with a header condition, and with a
# regular expression on the path, in one sitting; with BASELINE=PATH also another
# fairway-proxy binary (say, a build from before matching) on the host-and-prefix Route.
#
#   bench/callgrind-routes.sh
#   BASELINE=/path/to/old/fairway-proxy bench/callgrind-routes.sh
#   PROFILE=release REQUESTS=20000 bench/callgrind-routes.sh
#
# Needs: valgrind, h2load, nginx (bench/install.sh), curl. Output: target/bench/callgrind-routes/.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
REQUESTS=${REQUESTS:-10000}
BASELINE=${BASELINE:-}
for bin in valgrind callgrind_control callgrind_annotate h2load curl; do
  command -v "$bin" >/dev/null || { echo "$bin missing: apt-get install valgrind nghttp2-client curl" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx missing: run bench/install.sh" >&2; exit 1; }
cargo build --profile "$PROFILE" -p fairway-proxy --bin fairway-proxy
cargo build --release -p fairway-controller --bin fairway-controller
proxy=target/$PROFILE/fairway-proxy

out=$PWD/target/bench/callgrind-routes
rm -rf "$out" && mkdir -p "$out/body"
sed -e "s#@@RUN@@#$out#g" -e 's#@@BACKEND_WORKERS@@#1#' -e 's#@@PORT@@#28080#g' \
    -e 's#@@H2PORT@@#28081#g' -e 's#@@STATUS_PORT@@#28099#g' \
    bench/conf/backend-nginx.conf > "$out/backend.conf"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$NGINX" -c "$out/backend.conf" -p "$out" >"$out/backend.log" 2>&1 &
pids+=($!)

# measure NAME ROUTE-FILE PATH [HEADER] [PROXY]: NAME's instructions per request, with
# its own controller on a static directory holding ROUTE-FILE.
measure() {
  local name=$1 route=$2 path=$3 header=${4:-x-none: 1} bin=${5:-$proxy}
  mkdir -p "$out/$name"
  sed 's#@@PORT@@#28080#g' bench/conf/fairway/orders.yaml.in > "$out/$name/orders.yaml"
  cp "bench/conf/fairway/$route" "$out/$name/route.yaml"
  RUST_LOG=warn target/release/fairway-controller --static-dir "$out/$name" \
    --grpc-addr 127.0.0.1:28100 --admin-addr 127.0.0.1:28101 --no-auth >"$out/$name-controller.log" 2>&1 &
  local ctl=$!
  pids+=("$ctl")
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out/$name.out" "$bin" --controller http://127.0.0.1:28100 \
    --controller-plaintext --workers 1 --listen 127.0.0.1:28140 --admin-addr 127.0.0.1:28190 \
    --id callgrind --node bench >"$out/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:28190/ready >/dev/null && break
    sleep 0.3
  done
  curl -sf http://127.0.0.1:28190/ready >/dev/null || { echo "$name never became ready: $out/$name.log" >&2; exit 1; }
  local load=(h2load --h1 -c8 -H ':authority: orders.bench' -H "$header" "http://127.0.0.1:28140$path")
  "${load[@]}" -n 1000 >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  local codes
  codes=$("${load[@]}" -n "$REQUESTS" | grep -E "status codes")
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill "$pid" "$ctl" 2>/dev/null || true
  wait "$pid" "$ctl" 2>/dev/null || true
  echo "$codes" | grep -q "^status codes: $REQUESTS 2xx" || { echo "$name: not every request succeeded: $codes" >&2; exit 1; }
  local dump total
  dump=$(ls -t "$out/$name.out".* | head -1)
  total=$(callgrind_annotate --auto=no "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$name: $((total / REQUESTS)) instructions per request ($total over $REQUESTS)"
}

echo "profile $PROFILE, commit $(git rev-parse --short HEAD), $REQUESTS requests each"
if [ -n "$BASELINE" ]; then
  measure baseline-prefix route.yaml / "" "$BASELINE"
fi
measure prefix route.yaml /
measure header route-header.yaml / "x-tenant: gold"
measure regex route-regex.yaml /items/42
