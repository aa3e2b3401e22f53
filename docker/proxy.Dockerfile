# syntax=docker/dockerfile:1
# fairway-proxy: build from the repository root with
#   docker build -f docker/proxy.Dockerfile -t ghcr.io/fairway-dev/fairway-proxy:0.1.0 .
# Multi-stage: a Rust builder, then distroless/cc (glibc, no shell, no package manager)
# running as the nonroot user (uid 65532), as the Helm chart's securityContext expects.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: Cargo needs every member's manifest. protoc comes vendored
# (protoc-bin-vendored), so the builder needs nothing beyond the Rust image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p fairway-proxy --bin fairway-proxy \
 && cp target/dist/fairway-proxy /fairway-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /fairway-proxy /usr/local/bin/fairway-proxy
USER 65532:65532
# HTTP (HTTP/1.1 and HTTP/2 prior knowledge), admin (/live, /ready, /metrics).
EXPOSE 4140 4191
ENTRYPOINT ["/usr/local/bin/fairway-proxy"]
