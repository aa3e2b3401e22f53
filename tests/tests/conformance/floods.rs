//! HTTP/2 abuse with the Python `h2` package (`tests/abuse/h2_flood.py`) against the
//! proxy's h2c prior-knowledge listener: rapid reset (CVE-2023-44487, reconnecting
//! whenever the proxy ends a connection), a never-ending CONTINUATION block, and
//! smuggling through the HTTP/2 -> HTTP/1.1 translation (`downgrade`), while
//! [`Stack::while_probing`] sends normal requests and samples the proxy's RSS.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::stack::{H1_HOST, Probes, Stack};
use crate::tools::{abuse_script, python_with_h2};

/// Each flood's own time budget (the script stops at it).
pub const FLOOD_SECONDS: u64 = 10;
/// The script's hard limit on top of its budget (start-up, drain).
const SCRIPT_LIMIT: Duration = Duration::from_secs(FLOOD_SECONDS + 20);

/// What one flood did to the proxy.
#[derive(Debug)]
pub struct FloodRun {
    /// The script's JSON line.
    pub report: Value,
    pub probes: Probes,
    /// Requests the backend received during the flood, probes included.
    pub backend_requests: usize,
}

/// Runs `h2_flood.py MODE` against the proxy's listener (authority `h1.test`).
pub async fn run(stack: &mut Stack, mode: &str, budget: &[&str]) -> FloodRun {
    let python = python_with_h2();
    let before_backend = stack.h1.count();
    let mut command = Command::new(&python);
    command
        .arg(abuse_script("h2_flood.py"))
        .arg(mode)
        .arg(stack.listen.ip().to_string())
        .arg(stack.listen.port().to_string())
        .arg(H1_HOST)
        .arg(format!("--seconds={FLOOD_SECONDS}"))
        .args(budget)
        .kill_on_drop(true);
    let (output, probes) = stack
        .while_probing(tokio::time::timeout(SCRIPT_LIMIT, command.output()))
        .await;
    let output = output
        .unwrap_or_else(|_| panic!("h2_flood.py {mode} ran past {SCRIPT_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "h2_flood.py {mode} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("h2_flood.py printed no JSON ({e}): {stdout}"));
    FloodRun {
        report,
        probes,
        backend_requests: stack.h1.count() - before_backend,
    }
}
