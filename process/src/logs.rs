//! Structured logs: `tracing` to stdout, one JSON object per line (`--log-format json`,
//! the default, for log pipelines) or human-readable text. `RUST_LOG` overrides the
//! binary's default filter.

use std::error::Error;
use std::fmt;
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    #[default]
    Json,
    /// Human-readable lines, for terminals.
    Text,
}

/// A global subscriber was already installed (e.g. by an embedding binary or a test).
#[derive(Debug, thiserror::Error)]
#[error("installing the log subscriber: {0}")]
pub struct LogInitError(String);

/// Installs the process-wide subscriber with `default_filter` unless `RUST_LOG` is set.
/// Call once, first thing in `main`.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LogInitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        // Colour only for a terminal: escape codes in a log file or `kubectl logs` are noise.
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| LogInitError(e.to_string()))
}

/// Displays an error with its whole `source()` chain (`outer: inner: root`), for logs:
/// a transport error's own message is often just "transport error".
#[derive(Debug)]
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_shows_every_cause() {
        let err = Outer(std::io::Error::other("root cause"));
        assert_eq!(Chain(&err).to_string(), "outer: root cause");
    }

    #[test]
    fn chain_of_an_error_without_a_source_is_its_message() {
        let err = std::io::Error::other("alone");
        assert_eq!(Chain(&err).to_string(), "alone");
    }
}
