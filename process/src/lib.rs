//! What both binaries, `fairway-controller` and `fairway-proxy`, do as processes, in one
//! copy: structured logs ([`logs`]), the TLS crypto provider, the stop signal, and
//! error chains for log lines. Nothing here knows about routes, tables or requests.

pub mod logs;

pub use logs::{Chain, LogFormat, LogInitError};

/// Installs ring as the process's rustls `CryptoProvider`: rustls (via tonic and kube)
/// refuses to guess when more than one could be compiled in. Installing twice (e.g. the
/// `fairway` binary running controller and proxy in one process, or a test) is
/// harmless.
pub fn install_crypto_provider() {
    // `Err` only means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Completes on SIGTERM (Kubernetes' stop signal) or Ctrl-C (SIGINT), logging which.
/// `who` names the process in the warning when SIGTERM cannot be listened for.
pub async fn shutdown_signal(who: &'static str) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the {who}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("interrupt received");
    }
}
