# syntax=docker/dockerfile:1
# fairway: the root binary, for the drain hook's init container (`fairway copy-hook DIR`
# copies it with its loader and libraries into an emptyDir; docs/operations.md,
# "Draining pods"). Build from the repository root with
#   docker build -f docker/fairway.Dockerfile -t ghcr.io/fairway-dev/fairway:0.1.0 .
# Like the other images: distroless/cc (glibc, no shell), the nonroot user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fairway --bin fairway \
 && cp target/release/fairway /

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /fairway /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fairway"]
