#!/usr/bin/env bash
# Builds what a test node runs, into target/fairway-node (git-ignored):
#
#   build.sh                  bin/kube (tests/kube/cmd/kube), bin/coredns (tests/node/coredns),
#                             and the images module's programs with their images:
#                             images/pause.tar, images/backend.tar, images/gateway.tar,
#                             and images/curl.tar (the host's curl and its libraries: a
#                             client that reads http_proxy and no_proxy as users set them)
#   build.sh fairway DIR      images/fairway-controller.tar, images/fairway-proxy.tar,
#                             images/fairway.tar (the root binary: `fairway copy-hook` for
#                             the drain hook's init container) and images/fairway-capture.tar
#                             (the injector's capture step, with the host's nft) from the
#                             binaries in DIR (a cargo profile directory)
#
# Each Go output is cached under a stamp of its inputs: an unchanged module costs nothing,
# a changed one rebuilds from Go's build cache. The first kube build takes ~10 min on 2
# cores (design.md section 8).
set -euo pipefail

K8S_VERSION=v1.36.3
# Image references the node and the tests use; nothing is pulled (imagePullPolicy: Never).
PAUSE_REF=fairway.local/pause:1
TEST_TAG=test

main() {
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  out=${FAIRWAY_NODE_OUT:-$here/../../target/fairway-node}
  mkdir -p "$out/bin" "$out/images"
  command -v go >/dev/null || { echo "build.sh: 'go' not found: install Go 1.26 or newer (https://go.dev/dl)" >&2; exit 1; }
  # One build at a time, whoever asks (tests in parallel binaries, a developer).
  exec 9>"$out/build.lock"
  flock 9
  case "${1:-}" in
    "") go_parts ;;
    fairway) fairway_images "$2" ;;
    *) echo "usage: $0 [fairway DIR]" >&2; exit 2 ;;
  esac
}

go_parts() {
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  go_build kube "$here/../kube" ./cmd/kube "$ldflags" "$out/bin/kube"
  go_build coredns "$here/coredns" . "-s -w" "$out/bin/coredns"
  local prog
  for prog in pause backend gateway; do
    CGO_ENABLED=0 go_build "$prog" "$here/images" "./cmd/$prog" "-s -w" "$out/bin/$prog"
  done
  static_image "$out/images/pause.tar" "$PAUSE_REF" "$out/bin/pause" 65535:65535 /pause
  static_image "$out/images/backend.tar" "fairway.local/backend:$TEST_TAG" "$out/bin/backend" 65532:65532 /backend 8080
  static_image "$out/images/gateway.tar" "fairway.local/gateway:$TEST_TAG" "$out/bin/gateway" 65532:65532 /gateway
  echo "$PAUSE_REF" >"$out/images/pause.ref"
  command -v curl >/dev/null || { echo "build.sh: 'curl' not found: apt-get install -y curl" >&2; exit 1; }
  dynamic_image "$out/images/curl.tar" "fairway.local/curl:$TEST_TAG" "$(command -v curl)"
}

# go_build NAME MODULE PACKAGE LDFLAGS OUTPUT: skipped when the stamp of the module's
# go.mod, go.sum, Go files and flags is unchanged.
go_build() {
  local name=$1 module=$2 package=$3 ldflags=$4 output=$5
  local stamp
  stamp=$(cd "$module" && { cat go.mod go.sum 2>/dev/null; find . -name '*.go' | sort | xargs cat; echo "$ldflags ${CGO_ENABLED:-}"; } | sha256sum)
  if [ -x "$output" ] && [ "$(cat "$output.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "build.sh: building $name (go build $package)" >&2
  local start=$SECONDS
  (cd "$module" && nice go build -trimpath -ldflags "$ldflags" -o "$output" "$package")
  echo "$stamp" >"$output.stamp"
  echo "build.sh: $name built in $((SECONDS - start)) s" >&2
}

# An image of one static program at /NAME.
static_image() {
  local tar=$1 ref=$2 program=$3 user=$4 entry=$5
  shift 5
  [ "$tar" -nt "$program" ] && [ -f "$tar.ref" ] && [ "$(cat "$tar.ref")" = "$ref" ] && return 0
  local rootfs
  rootfs=$(mktemp -d)
  install -m 0755 "$program" "$rootfs$entry"
  "$here/image.sh" "$tar" "$ref" "$rootfs" "$user" "[\"$entry\"]" "$@"
  rm -rf "$rootfs"
  echo "$ref" >"$tar.ref"
}

# The two Fairway images, as docker/*.Dockerfile make them: the binary in
# /usr/local/bin (the controller's with the kubectl plugin beside it, for users to copy
# out), user 65532 (distroless "nonroot"), the same ports. Like distroless/cc,
# the image carries the dynamic loader and the shared libraries the binary needs (glibc
# resolves names through its built-in files/dns NSS, as the proxy must for the
# controller's Service name), not a statically linked glibc.
fairway_images() {
  local dir=$1
  dynamic_image "$out/images/fairway-controller.tar" "fairway.local/fairway-controller:$TEST_TAG" \
    "$dir/fairway-controller:$dir/kubectl-fairway" 18000 9090
  dynamic_image "$out/images/fairway-proxy.tar" "fairway.local/fairway-proxy:$TEST_TAG" \
    "$dir/fairway-proxy" 4140 4191
  if [ -x "$dir/fairway-capture" ]; then
    # The injector's capture init container: fairway-capture and the host's nft (with
    # their libraries), as docker/capture.Dockerfile's Debian image has them.
    command -v nft >/dev/null || { echo "build.sh: 'nft' not found: apt-get install -y nftables" >&2; exit 1; }
    dynamic_image "$out/images/fairway-capture.tar" "fairway.local/fairway-capture:$TEST_TAG" \
      "$dir/fairway-capture:$(command -v nft)"
  fi
  if [ -x "$dir/fairway" ]; then
    # Every pod's init container copies it: symbols too are weight nobody reads there.
    STRIP=--strip-all dynamic_image "$out/images/fairway.tar" "fairway.local/fairway:$TEST_TAG" "$dir/fairway"
  fi
}

# dynamic_image TAR REF PROGRAM[:PROGRAM...] [PORT...]: the first program is the
# entrypoint; all of them go to /usr/local/bin with the libraries each needs.
dynamic_image() {
  local tar=$1 ref=$2 programs=$3
  shift 3
  local program fresh=1
  local -a list
  IFS=: read -ra list <<<"$programs"
  for program in "${list[@]}"; do
    [ -x "$program" ] || { echo "build.sh: $program not built (cargo build --bin ${program##*/})" >&2; exit 1; }
    # A copied program (curl) keeps its old mtime: compare against the reference too.
    [ "$tar" -nt "$program" ] || fresh=0
  done
  [ "$fresh" = 1 ] && [ "$(cat "$tar.ref" 2>/dev/null)" = "$ref" ] && return 0
  local rootfs name=${list[0]##*/} lib
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  for program in "${list[@]}"; do
    # Debug info is most of a debug build's size and nothing a pod needs.
    objcopy "${STRIP:---strip-debug}" "$program" "$rootfs/usr/local/bin/${program##*/}"
    for lib in $(ldd "$program" | grep -o '/[^ ]*'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  "$here/image.sh" "$tar" "$ref" "$rootfs" 65532:65532 "[\"/usr/local/bin/$name\"]" "$@"
  rm -rf "$rootfs"
  echo "$ref" >"$tar.ref"
}

main "$@"
