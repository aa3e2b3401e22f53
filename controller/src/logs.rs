//! Structured logs, as in every Fairway binary ([`fairway_process::logs`]), with this
//! binary's default filter. `RUST_LOG` overrides it.

pub use fairway_process::logs::{Chain, LogInitError};

use crate::config::LogFormat;

/// Info for Fairway; the HTTP, gRPC and Kubernetes stacks log per-connection noise at
/// info/debug.
pub const DEFAULT_LOG_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn,tonic=warn,kube=warn";

/// Installs the process-wide subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) -> Result<(), LogInitError> {
    fairway_process::logs::init(format, DEFAULT_LOG_FILTER)
}
