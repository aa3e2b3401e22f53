#!/usr/bin/env bash
# Regenerates go.mod for the test cluster binaries from the Kubernetes release's own
# go.mod: every k8s.io module it requires at v0.0.0 is a staging module and gets a
# replace line pointing at the matching published version. Run after changing K8S.
set -euo pipefail
cd "$(dirname "$0")"
K8S=${K8S:-1.36.3}
STAGING=0.${K8S#1.}
modfile=$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
rm -f go.mod go.sum
go mod init fairway.dev/tests/kube >/dev/null 2>&1
go mod edit -go=1.26.0 -require="k8s.io/kubernetes@v$K8S"
for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$modfile" | sort -u); do
  go mod edit -replace="$m=$m@v$STAGING"
done
# etcd server at exactly the version Kubernetes pins for its client.
etcd=$(awk '$1 == "go.etcd.io/etcd/client/v3" {print $2; exit}' "$modfile")
go mod edit -require="go.etcd.io/etcd/server/v3@$etcd"
go mod tidy
