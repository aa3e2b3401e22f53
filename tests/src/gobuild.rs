//! Builds the real `kube-apiserver` and `etcd` from the Go module in `tests/kube`, once,
//! and caches them under `target/fairway-kube/`.
//!
//! The cache is keyed by a stamp of the module's inputs (go.mod, go.sum, the two
//! `main.go` files): change any and the next test run rebuilds. Go's own build cache
//! (`GOCACHE`) makes a rebuild after a cold build cheap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ClusterError;

/// The Go module that builds the binaries, relative to this crate.
const GO_MODULE: &str = "kube";
/// The module's inputs: a change to any of them invalidates the cached binaries.
const INPUTS: &[&str] = &[
    "go.mod",
    "go.sum",
    "cmd/kube-apiserver/main.go",
    "cmd/etcd/main.go",
];

/// Paths of the built binaries.
#[derive(Clone, Debug)]
pub struct KubeBinaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Returns the cached binaries, building them first when missing or stale.
///
/// Several test binaries (and developers) may call this at once: an exclusive file lock
/// makes the second wait for the first build instead of racing it.
pub fn ensure_binaries() -> Result<KubeBinaries, ClusterError> {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join(GO_MODULE);
    let out = target_dir().join("fairway-kube");
    let bin = out.join("bin");
    fs::create_dir_all(&bin).map_err(ClusterError::io("create target/fairway-kube"))?;
    let lock = fs::File::create(out.join("build.lock"))
        .map_err(ClusterError::io("create the build lock"))?;
    lock.lock()
        .map_err(ClusterError::io("take the build lock"))?;

    let bins = KubeBinaries {
        kube_apiserver: bin.join("kube-apiserver"),
        etcd: bin.join("etcd"),
    };
    let stamp_path = out.join("stamp");
    let stamp = stamp(&module)?;
    let fresh = bins.kube_apiserver.exists()
        && bins.etcd.exists()
        && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if !fresh {
        go_build(&module, &bin)?;
        fs::write(&stamp_path, &stamp).map_err(ClusterError::io("write the build stamp"))?;
    }
    Ok(bins)
}

/// The concatenated inputs: exact, and cheap next to a Go build.
fn stamp(module: &Path) -> Result<String, ClusterError> {
    let mut all = String::new();
    for input in INPUTS {
        let text = fs::read_to_string(module.join(input))
            .map_err(ClusterError::io("read the Go module inputs"))?;
        all.push_str(&text);
    }
    Ok(all)
}

fn go_build(module: &Path, bin: &Path) -> Result<(), ClusterError> {
    eprintln!(
        "fairway-tests: building kube-apiserver and etcd from {} (the first build takes several minutes)",
        module.display()
    );
    let output = Command::new("go")
        .current_dir(module)
        .args(["build", "-trimpath", "-o"])
        .arg(bin)
        .args(["./cmd/kube-apiserver", "./cmd/etcd"])
        .output()
        .map_err(|source| ClusterError::GoMissing { source })?;
    if !output.status.success() {
        return Err(ClusterError::GoBuild {
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 40),
        });
    }
    Ok(())
}

/// The last `lines` lines of a log, for error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
