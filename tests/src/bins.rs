//! The workspace's own binaries, for tests that run them as processes (conformance,
//! upgrade): where this build put them, which flags they know, and loopback ports for
//! them to bind.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/debug` (or whichever profile built the calling test binary).
pub fn bin_dir() -> PathBuf {
    // A test binary is target/PROFILE/deps/NAME-HASH.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(PathBuf::from))
        .unwrap_or_else(|| crate::gobuild::target_dir().join("debug"))
}

/// The path of the workspace binary `name`; fails with how to build it when missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run ./tests/run.sh (or cargo build --workspace --bins) before \
         this test",
        path.display()
    );
    path
}

/// Whether `program --help` lists `flag`: the control-stream security flags are newer
/// than some tests, and plaintext loopback is what those runs want.
pub fn has_flag(program: &Path, flag: &str) -> bool {
    Command::new(program)
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// A free loopback port (bound, read, released just before the process binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("find a free loopback port: {e}"))
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
