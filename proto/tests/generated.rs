//! Verifies that the checked-in gRPC code, `src/gen/fairway.discovery.v1.rs`, is exactly
//! what `tonic-prost-build` produces from `fairway/discovery/v1/discovery.proto`.
//!
//! After editing the `.proto`, refresh the checked-in file with:
//!
//! ```text
//! FAIRWAY_BLESS=1 cargo test -p fairway-proto --test generated
//! ```
//!
//! `protoc` comes from `protoc-bin-vendored`, so no system protoc is needed and every
//! machine generates the same bytes.

use std::path::{Path, PathBuf};

/// The package's generated file name: tonic-prost-build names it after the package.
const GENERATED: &str = "fairway.discovery.v1.rs";

#[test]
fn generated_code_matches_proto() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let checked_in = manifest.join("src").join("gen").join(GENERATED);

    let out = tempfile::tempdir().expect("create a temporary directory");
    generate(&manifest, out.path());
    let fresh = std::fs::read_to_string(out.path().join(GENERATED))
        .expect("tonic-prost-build wrote no fairway.discovery.v1.rs");

    if std::env::var_os("FAIRWAY_BLESS").is_some() {
        std::fs::write(&checked_in, &fresh).expect("write the generated file");
        return;
    }

    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    if current != fresh {
        let line = first_difference(&current, &fresh);
        panic!(
            "{} is out of date with the .proto (first difference at line {line}).\n\
             Refresh it with:\n\n    \
             FAIRWAY_BLESS=1 cargo test -p fairway-proto --test generated\n\n\
             and commit the result.",
            checked_in.display()
        );
    }
}

/// Runs protoc (vendored) and tonic-prost-build, client and server, into `out`.
fn generate(manifest: &Path, out: &Path) {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc for this platform");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_with_config(
            config,
            &[manifest.join("fairway/discovery/v1/discovery.proto")],
            &[manifest.to_path_buf()],
        )
        .expect("protoc or tonic-prost-build failed on discovery.proto");
}

/// The 1-based line where two texts first differ, for a useful failure message.
fn first_difference(a: &str, b: &str) -> usize {
    a.lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| a.lines().count().min(b.lines().count()))
        + 1
}
