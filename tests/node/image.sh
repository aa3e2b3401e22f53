#!/usr/bin/env bash
# Writes a single-layer OCI image archive without docker: a layer tar of ROOTFS, the
# image config, the manifest, index.json and oci-layout, as `ctr images import` reads.
#
#   image.sh OUT.tar NAME:TAG ROOTFS USER ENTRYPOINT_JSON [PORT...]
#
#   e.g. image.sh proxy.tar fairway.local/fairway-proxy:test rootfs 65532:65532 \
#          '["/usr/local/bin/fairway-proxy"]' 4140 4191
#
# The layer is uncompressed (ctr imports it as is) and reproducible: sorted names,
# owner root, mtime 0, so the same ROOTFS gives the same digest.
set -euo pipefail

main() {
  local out=$1 name=$2 rootfs=$3 user=$4 entrypoint=$5
  shift 5
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/blobs/sha256"

  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  local layer layer_size
  layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/blobs/sha256/$layer"

  local ports="" p
  for p in "$@"; do ports="$ports${ports:+,}\"$p/tcp\":{}"; done
  printf '{"architecture":"amd64","os":"linux","config":{"User":"%s","Entrypoint":%s,"ExposedPorts":{%s},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"tests/node/image.sh"}]}' \
    "$user" "$entrypoint" "$ports" "$layer" >"$work/config.json"
  local config config_size
  config=$(blob "$work" config.json)
  config_size=$(stat -c %s "$work/blobs/sha256/$config")

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
  local manifest manifest_size
  manifest=$(blob "$work" manifest.json)
  manifest_size=$(stat -c %s "$work/blobs/sha256/$manifest")

  # io.containerd.image.name: the full reference ctr registers the image under.
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$name" "${name##*:}" >"$work/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
}

# Moves FILE into blobs/sha256 under its digest and prints the digest.
blob() {
  local digest
  digest=$(sha256sum "$1/$2" | cut -d' ' -f1)
  mv "$1/$2" "$1/blobs/sha256/$digest"
  echo "$digest"
}

main "$@"
