# syntax=docker/dockerfile:1
# fairway-capture: the sidecar's init step (issue 17). Build from the repository root with
#   docker build -f docker/capture.Dockerfile -t ghcr.io/fairway-dev/fairway-capture:0.1.0 .
# It installs the pod's outbound capture rules with nft, then exits. Unlike the other
# images it ships Debian's nftables (`nft` and its libraries): the rules are applied by
# nft as one transaction rather than by netlink code of our own (docs/install.md, "Fix
# a gateway without changing it", says why). It runs as root with NET_ADMIN only while
# the pod starts (docs/security.md, "The capture init step").

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fairway-proxy --bin fairway-capture \
 && cp target/release/fairway-capture /fairway-capture

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /fairway-capture /usr/local/bin/fairway-capture
ENTRYPOINT ["/usr/local/bin/fairway-capture"]
CMD ["install"]
