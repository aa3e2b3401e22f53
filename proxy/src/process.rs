//! The whole proxy process: [`run`] wires the parts together and owns their lifetimes.
//!
//! Reading order of a start: one rustls `CryptoProvider` (ring), the shared
//! [`TableHandle`] and [`Metrics`], both listeners bound (so a bad address fails before
//! anything runs), then four tasks: discovery (fills the table), the HTTP server
//! (reads it per request), admin (probes, metrics, debug) and the health checker
//! (Routes' active checks, feeding the balancers).
//!
//! Shutdown, in order: `/ready` turns 503; the server stops accepting and lets in-flight
//! requests finish within `--shutdown-grace`; discovery keeps the table current during
//! that drain (pods may leave meanwhile); then discovery and admin stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinError;
use tracing::{info, warn};

use crate::accept::{self, ServeError, ServerConfig};
use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::discovery::{Client, DiscoveryConfig};
use crate::logs::Chain;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::table::TableHandle;

/// Slack on top of `--shutdown-grace` for the server to close its connections after
/// the grace ends; past it we stop waiting.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(2);

/// Captured connections waiting for the server's loop: it only spawns a task each, so
/// a short queue suffices; a full one holds the next accept back.
const CAPTURED_QUEUE: usize = 64;

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("binding {flag} {addr}: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("the proxy server stopped without being asked to")]
    ServerStopped,
    #[error("the proxy server task panicked: {0}")]
    ServerTask(#[source] JoinError),
    #[error("in-flight requests were still running {0:?} after shutdown began")]
    ShutdownTimeout(Duration),
}

pub use fairway_process::install_crypto_provider;

/// Every listening socket, bound before anything runs.
#[derive(Debug)]
pub struct Listeners {
    proxy: Vec<TcpListener>,
    /// `--outbound-listen`, the sidecar's captured connections (empty: none).
    outbound: Vec<TcpListener>,
    admin: TcpListener,
}

impl Listeners {
    /// Binds each `--listen` address and `--admin-addr`. `[::1]` is skipped, with a
    /// warning, in a pod without IPv6 (its loopback has no `::1`) as long as another
    /// address was bound: the chart lists it beside 127.0.0.1 for dual-stack pods, and
    /// the same values must start a sidecar in an IPv4-only pod.
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let proxy = bind_all("--listen", &config.listen).await?;
        let outbound = match &config.outbound {
            Some(outbound) => bind_all("--outbound-listen", &outbound.listen).await?,
            None => Vec::new(),
        };
        Ok(Listeners {
            proxy,
            outbound,
            admin: bind("--admin-addr", config.admin_addr).await?,
        })
    }

    /// The first proxy address bound (resolves port 0).
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.first()?.local_addr().ok()
    }

    /// Every proxy address bound, in `--listen` order (resolves port 0).
    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.proxy
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The outbound listeners' bound addresses (resolves port 0).
    pub fn outbound_addrs(&self) -> Vec<SocketAddr> {
        self.outbound
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The admin server's bound address (resolves port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }
}

/// Whether binding `addr` failed only because the host (a pod's network namespace) has
/// no IPv6 loopback: IPv6 switched off (`EADDRNOTAVAIL`) or not built in
/// (`EAFNOSUPPORT`).
fn no_ipv6_loopback(addr: SocketAddr, error: &std::io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    addr.ip() == std::net::Ipv6Addr::LOCALHOST
        && (error.kind() == std::io::ErrorKind::AddrNotAvailable
            || error.raw_os_error() == Some(EAFNOSUPPORT))
}

/// Runs the proxy until `shutdown` completes, then shuts down gracefully (module docs).
/// Returns once every part has stopped.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listeners = Listeners::bind(&config).await?;
    run_on(listeners, config, shutdown).await
}

/// [`run`] on listeners bound already (tests and embedders bind port 0 and need the
/// address before the proxy starts).
pub async fn run_on(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    install_crypto_provider();
    let table = Arc::new(TableHandle::default());
    let metrics = Arc::new(Metrics::new(config.endpoint_labels));
    let listening: Vec<String> = listeners
        .proxy_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let Listeners {
        proxy: proxy_listeners,
        outbound: outbound_listener,
        admin: admin_listener,
    } = listeners;
    info!(
        id = %config.id,
        listen = %listening.join(","),
        admin = %local(&admin_listener, config.admin_addr),
        controller = %config.controller,
        "fairway-proxy starting",
    );

    // Discovery and admin outlive the server's drain; they stop on `stop_rest`.
    let (stop_rest, rest_stopped) = watch::channel(false);
    let discovery = Client::new(
        DiscoveryConfig::from(&config),
        Arc::clone(&table),
        Arc::clone(&metrics),
    );
    let discovery = tokio::spawn(discovery.run(stopped(rest_stopped.clone())));
    // Created here, not in the server, so `/debug/routes` can show pool sizes.
    let pools = Arc::new(Pools::new());
    let admin_state = AdminState::new(
        Arc::clone(&table),
        Arc::clone(&metrics),
        Some(admin::pool_stats_fn(Arc::clone(&pools))),
    );
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        stopped(rest_stopped.clone()),
    ));

    // Captured connections pass through to where they were going whatever the table
    // holds, so this starts at once; it stops accepting with the rest below.
    // Captured HTTP connections to a known Service reach the server on this channel.
    let (captured_tx, captured_rx) = tokio::sync::mpsc::channel(CAPTURED_QUEUE);
    let (outbound, captured_rx) = match (outbound_listener, config.outbound.clone()) {
        (listeners, Some(outbound)) if !listeners.is_empty() => {
            let addrs: Vec<String> = listeners
                .iter()
                .filter_map(|l| Some(l.local_addr().ok()?.to_string()))
                .collect();
            info!(outbound = %addrs.join(","), "capturing outbound connections");
            let task = tokio::spawn(crate::accept::captured::serve(
                outbound,
                listeners,
                (Arc::clone(&table), Arc::clone(&metrics)),
                captured_tx,
                stopped(rest_stopped),
            ));
            (Some(task), Some(captured_rx))
        }
        _ => (None, None),
    };

    // Probes Routes' health checks; stopped with the rest below.
    let health = crate::health::spawn(&table, Arc::clone(&metrics));

    let (stop_server, server_stopped) = watch::channel(false);
    let mut server = tokio::spawn(accept::serve_with_captured(
        ServerConfig::from(&config),
        proxy_listeners,
        captured_rx,
        (table, metrics, pools),
        stopped(server_stopped),
    ));

    let result = tokio::select! {
        () = shutdown => {
            info!(grace_ms = config.shutdown_grace.as_millis() as u64, "shutting down: draining in-flight requests");
            admin_state.set_draining();
            let _ = stop_server.send(true);
            let bound = config.shutdown_grace + SHUTDOWN_SLACK;
            match tokio::time::timeout(bound, &mut server).await {
                Ok(joined) => server_result(joined),
                Err(_) => {
                    server.abort();
                    Err(RunError::ShutdownTimeout(bound))
                }
            }
        }
        joined = &mut server => {
            // The server only returns after a shutdown; anything else is a failure.
            Err(server_result(joined).err().unwrap_or(RunError::ServerStopped))
        }
    };

    health.abort();
    let _ = stop_rest.send(true);
    let tasks = [
        ("discovery", Some(discovery)),
        ("admin", Some(admin)),
        ("outbound", outbound),
    ];
    for (name, task) in tasks.into_iter().filter_map(|(n, t)| Some((n, t?))) {
        if let Err(error) = task.await {
            warn!(task = name, %error, "task ended abnormally during shutdown");
        }
    }
    match &result {
        Ok(()) => info!("fairway-proxy stopped"),
        Err(error) => warn!(error = %Chain(error), "fairway-proxy stopped with an error"),
    }
    result
}

fn server_result(joined: Result<Result<(), ServeError>, JoinError>) -> Result<(), RunError> {
    joined
        .map_err(RunError::ServerTask)?
        .map_err(RunError::from)
}

/// Binds every address of `flag`, skipping `[::1]` with a warning in a pod without IPv6
/// as long as another address was bound ([`Listeners::bind`]).
async fn bind_all(flag: &'static str, addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, RunError> {
    let mut bound = Vec::with_capacity(addrs.len());
    let mut skipped = None;
    for &addr in addrs {
        match bind(flag, addr).await {
            Ok(listener) => bound.push(listener),
            Err(RunError::Bind { source, .. }) if no_ipv6_loopback(addr, &source) => {
                skipped = Some((addr, source));
            }
            Err(error) => return Err(error),
        }
    }
    match skipped {
        Some((addr, source)) if bound.is_empty() => {
            return Err(RunError::Bind { flag, addr, source });
        }
        Some((addr, error)) => {
            warn!(%addr, %error, flag, "no IPv6 loopback in this pod; serving on the other addresses");
        }
        None => {}
    }
    Ok(bound)
}

async fn bind(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { flag, addr, source })
}

fn local(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

/// Completes once `rx` turns true (or its sender is gone, which also means "stop").
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Completes on SIGTERM (Kubernetes' stop signal) or Ctrl-C.
pub async fn shutdown_signal() {
    fairway_process::shutdown_signal("proxy").await;
}

#[cfg(test)]
mod tests;
