# syntax=docker/dockerfile:1
# fairway-controller: build from the repository root with
#   docker build -f docker/controller.Dockerfile -t ghcr.io/fairway-dev/fairway-controller:0.1.0 .
# Multi-stage: a Rust builder, then distroless/cc (glibc, no shell, no package manager)
# running as the nonroot user (uid 65532), as the Helm chart's securityContext expects.
# The image also carries the kubectl plugin, built from the same commit, for users to copy
# out (docs/operations.md#kubectl-fairway); the container never runs it.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: Cargo needs every member's manifest. protoc comes vendored
# (protoc-bin-vendored), so the builder needs nothing beyond the Rust image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fairway-controller \
      --bin fairway-controller --bin kubectl-fairway \
 && cp target/release/fairway-controller target/release/kubectl-fairway /

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /fairway-controller /kubectl-fairway /usr/local/bin/
USER 65532:65532
# gRPC Discovery, admin (/live, /ready, /metrics).
EXPOSE 18000 9090
ENTRYPOINT ["/usr/local/bin/fairway-controller"]
