//! The real `helm` (v3), built once from the Go module in `tests/helm` and cached under
//! `target/fairway-helm/bin/helm`, the way [`crate::gobuild`] builds the apiserver.
//!
//! The module holds no code of its own: its `go.mod` names `helm.sh/helm/v3/cmd/helm` as
//! a `tool` (Go 1.24+), which pins helm and all its dependencies in `go.sum`. Helm v3's
//! command lives in a `main` package that cannot be imported, so we build that package
//! as it is. The cache is keyed by a stamp of `go.mod` and `go.sum`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::gobuild::{tail, target_dir};
use crate::kubectl::Output;

/// The Go module that builds helm, relative to this crate.
const GO_MODULE: &str = "helm";
/// The package built: helm's own command.
const PACKAGE: &str = "helm.sh/helm/v3/cmd/helm";
/// The module's inputs: a change to either invalidates the cached binary.
const INPUTS: &[&str] = &["go.mod", "go.sum"];
/// What helm's Makefile stamps in: its version, and the Kubernetes version `lint` and
/// `template` assume without a cluster (else v1.20, older than the chart's kubeVersion).
/// 1.36 is the tests' apiserver (tests/kube). Part of the stamp.
const LDFLAGS: &str = "-X helm.sh/helm/v3/internal/version.version=v3.22.0 \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=36 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=36";

/// The chart in this repository.
pub const CHART_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/fairway");

/// Why helm could not be had or run. Every message says how to get it.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error(
        "cannot run `go` ({source}): the tests build a real helm from the Go module \
         helm.sh/helm/v3 (tests/helm); install Go 1.26 or newer (https://go.dev/dl) and make \
         sure `go` is on PATH"
    )]
    GoMissing { source: std::io::Error },

    #[error(
        "`go build` of helm failed ({status}); the module proxy must be reachable (GOPROXY) \
         or the modules cached (`cd tests/helm && go mod download`). Last lines:\n{stderr}"
    )]
    GoBuild { status: String, stderr: String },

    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
}

impl HelmError {
    fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> HelmError {
        move |source| HelmError::Io { step, source }
    }
}

/// Returns the cached helm binary, building it first when missing or stale. An
/// exclusive file lock makes concurrent callers wait for one build.
pub fn ensure_helm() -> Result<PathBuf, HelmError> {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join(GO_MODULE);
    let out = target_dir().join("fairway-helm");
    let bin = out.join("bin");
    fs::create_dir_all(&bin).map_err(HelmError::io("create target/fairway-helm"))?;
    let lock =
        fs::File::create(out.join("build.lock")).map_err(HelmError::io("create the build lock"))?;
    lock.lock().map_err(HelmError::io("take the build lock"))?;

    let helm = bin.join("helm");
    let stamp_path = out.join("stamp");
    let stamp = stamp(&module)?;
    let fresh = helm.exists() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if !fresh {
        go_build(&module, &helm)?;
        fs::write(&stamp_path, &stamp).map_err(HelmError::io("write the build stamp"))?;
    }
    Ok(helm)
}

fn stamp(module: &Path) -> Result<String, HelmError> {
    let mut all = String::from(LDFLAGS);
    for input in INPUTS {
        let text = fs::read_to_string(module.join(input))
            .map_err(HelmError::io("read the helm Go module inputs"))?;
        all.push_str(&text);
    }
    Ok(all)
}

fn go_build(module: &Path, helm: &Path) -> Result<(), HelmError> {
    eprintln!(
        "fairway-tests: building helm from {} (the first build takes several minutes)",
        module.display()
    );
    let output = Command::new("go")
        .current_dir(module)
        .args(["build", "-trimpath", "-ldflags", LDFLAGS, "-o"])
        .arg(helm)
        .arg(PACKAGE)
        .output()
        .map_err(|source| HelmError::GoMissing { source })?;
    if !output.status.success() {
        return Err(HelmError::GoBuild {
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 40),
        });
    }
    Ok(())
}

/// The helm binary of this test process (built once), or a panic naming the reason:
/// every caller is a test.
pub fn helm_binary() -> &'static Path {
    static HELM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match HELM.get_or_init(|| ensure_helm().map_err(|e| e.to_string())) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `helm ARGS` with its config, cache and data under `target/fairway-helm/home`
/// (never the user's), against `kubeconfig` when given.
pub fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Result<Output, HelmError> {
    let home = target_dir().join("fairway-helm/home");
    let mut command = Command::new(helm_binary());
    command
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT")
        .stdin(Stdio::null());
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        // No cluster: `lint` and `template` must not reach for ~/.kube/config.
        None => command.env("KUBECONFIG", "/dev/null"),
    };
    let out = command.output().map_err(HelmError::io("run helm"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
