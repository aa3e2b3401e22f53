//! Gateway API's own CRDs, installed into a test cluster: the `HTTPRoute` (and
//! `BackendTLSPolicy`) CRD of the release the controller is pinned to (`fairway_controller::httproute::PINNED_RELEASE`),
//! standard or experimental channel, taken from the Go module `sigs.k8s.io/gateway-api`
//! (its `config/crd/standard/` and `config/crd/experimental/`), so the tests meet the
//! real schema, defaults and CEL rules rather than a copy of ours.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use fairway_controller::httproute::PINNED_RELEASE;

use crate::cluster::TestCluster;
use crate::kubectl::kubectl;

/// The Go module that ships the CRDs.
pub const MODULE: &str = "sigs.k8s.io/gateway-api";
/// The HTTPRoute CRD inside the module, in the channel's directory.
const HTTPROUTE_CRD: &str = "gateway.networking.k8s.io_httproutes.yaml";
/// The BackendTLSPolicy CRD, in the same directory (standard channel since v1.4).
const BACKEND_TLS_POLICY_CRD: &str = "gateway.networking.k8s.io_backendtlspolicies.yaml";

/// A Gateway API release channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Standard,
    /// A superset of the standard channel (e.g. `rules[].retry`).
    Experimental,
}

impl Channel {
    fn dir(self) -> &'static str {
        match self {
            Channel::Standard => "config/crd/standard",
            Channel::Experimental => "config/crd/experimental",
        }
    }
}

/// The standard HTTPRoute CRD file of the pinned release: [`crd_file`].
pub fn httproute_crd() -> Result<PathBuf, String> {
    crd_file(Channel::Standard)
}

/// The HTTPRoute CRD file of the pinned release in `channel`, downloaded into Go's
/// module cache first if needed (the module proxy must be reachable then). `Err` says
/// how to get it.
pub fn crd_file(channel: Channel) -> Result<PathBuf, String> {
    crd_file_named(channel, HTTPROUTE_CRD)
}

/// The CRD file `file` of the pinned release in `channel`, as [`crd_file`].
fn crd_file_named(channel: Channel, file: &str) -> Result<PathBuf, String> {
    let module = format!("{MODULE}@{PINNED_RELEASE}");
    let out = Command::new("go")
        .args(["mod", "download", "-json", &module])
        // Outside any module: the download must not touch a go.mod.
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| format!("cannot run `go` ({e}): install Go and put it on PATH"))?;
    let how = format!(
        "run `go mod download {module}` with the module proxy reachable (GOPROXY) to cache it"
    );
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("go mod download {module} failed: {stderr}{how}"));
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("go mod download -json {module}: {e}"))?;
    let dir = info["Dir"]
        .as_str()
        .ok_or_else(|| format!("go mod download -json {module} names no Dir; {how}"))?;
    let crd = PathBuf::from(dir).join(channel.dir()).join(file);
    match crd.exists() {
        true => Ok(crd),
        false => Err(format!("{} is missing from {module}", crd.display())),
    }
}

/// Installs the standard HTTPRoute CRD into `cluster` and waits for it to be
/// Established, once per test binary. Panics with the reason: every caller is a test.
pub fn install(cluster: &TestCluster) {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(cluster, Channel::Standard, HTTPROUTE_CRD, &INSTALLED);
}

/// Installs the standard BackendTLSPolicy CRD into `cluster`, as [`install`] does
/// HTTPRoute's.
pub fn install_backend_tls_policy(cluster: &TestCluster) {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(
        cluster,
        Channel::Standard,
        BACKEND_TLS_POLICY_CRD,
        &INSTALLED,
    );
}

/// [`install`] of the experimental channel's HTTPRoute CRD (a superset: scenarios that
/// need only the standard one keep working after it).
pub fn install_experimental(cluster: &TestCluster) {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    install_once(cluster, Channel::Experimental, HTTPROUTE_CRD, &INSTALLED);
}

fn install_once(
    cluster: &TestCluster,
    channel: Channel,
    file: &str,
    once: &OnceLock<Result<(), String>>,
) {
    // `gateway.networking.k8s.io_NAME.yaml` defines `crd/NAME.gateway.networking.k8s.io`.
    let plural = file
        .trim_start_matches("gateway.networking.k8s.io_")
        .trim_end_matches(".yaml");
    let installed = once.get_or_init(|| {
        let crd = crd_file_named(channel, file)?;
        let crd = crd.display().to_string();
        let run = |args: &[&str], what: &str| -> Result<(), String> {
            let out = kubectl(cluster, args, None).map_err(|e| e.to_string())?;
            match out.success {
                true => Ok(()),
                false => Err(format!("{what} failed:\n{}{}", out.stdout, out.stderr)),
            }
        };
        // Server-side: the CRD is too large for client-side apply's annotation.
        run(
            &["apply", "--server-side", "-f", &crd],
            &format!("kubectl apply the {plural} CRD"),
        )?;
        let name = format!("crd/{plural}.gateway.networking.k8s.io");
        let established = [
            "wait",
            "--for=condition=Established",
            &name,
            "--timeout=60s",
        ];
        run(&established, &format!("wait for {name} to be Established"))
    });
    if let Err(e) = installed {
        panic!("Gateway API CRDs: {e}");
    }
}
