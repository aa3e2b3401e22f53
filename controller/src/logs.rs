//! Structured logs: `tracing` to stdout, one JSON object per line (`--log-format json`,
//! the default, for log pipelines) or human-readable text. `RUST_LOG` overrides the
//! default filter. Text has colour only when stdout is a terminal: a log file or a
//! collector must not receive escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Info for Fairway; the HTTP, gRPC and Kubernetes stacks log per-connection noise at
/// info/debug.
pub const DEFAULT_LOG_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn,tonic=warn,kube=warn";

/// A global subscriber was already installed (e.g. by an embedding binary or a test).
#[derive(Debug, thiserror::Error)]
#[error("installing the log subscriber: {0}")]
pub struct LogInitError(String);

/// Installs the process-wide subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) -> Result<(), LogInitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| LogInitError(e.to_string()))
}
