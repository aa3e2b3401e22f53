//! Connections in: the proxy's listener, serving HTTP/1.1 and HTTP/2 with prior
//! knowledge (h2c) on one port, and the sidecar's captured connections.
//!
//! Where to start: [`serve`] runs the accept loop (`listener`); each connection starts in
//! `downstream`, Fairway's own HTTP/1.1 loop for the common request, which hands anything
//! else (HTTP/2, chunked uploads, malformed heads) to hyper, replaying what it read
//! (`rewind`). `captured` is the sidecar's side: a connection redirected by the capture
//! rules, its original destination recovered, detected as HTTP (served here like any
//! other) or passed through untouched. Every request goes on to [`crate::forward`].

pub mod captured;
mod downstream;
mod listener;
mod rewind;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use crate::forward::{Shared, SharedBudget};
use crate::metrics::Metrics;
use crate::pool::{Pools, spawn_follower};
use crate::table::TableHandle;

/// Default cap on concurrent downstream connections: far above what one proxy pod
/// serves, low enough that a flood cannot exhaust file descriptors (ulimit 64k+).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a client has to send a complete request head: generous for slow
/// mobile links, short enough that slowloris cannot pin connections.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a request head's bytes (nginx's large_client_header_buffers is 4×8 KiB;
/// Envoy's default is 60 KiB): larger heads answer `431`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default cap on the number of request headers (Envoy's default is 100): more answer `431`.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default time in-flight requests get to finish after shutdown starts.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The listener's limits, typed. Built from the command line's `Config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Concurrent downstream connections; past it, accepts wait for a free slot.
    pub max_connections: usize,
    /// Time to receive a complete request head (HTTP/1.1), against slowloris.
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// Time in-flight requests get to finish once shutdown starts (drain included).
    pub shutdown_grace: Duration,
    /// Time, once shutdown starts, during which the proxy still accepts and serves but
    /// closes each client connection after its next response (see [`serve`]).
    pub drain_delay: Duration,
    /// Request tracing; `None`: off.
    pub trace: Option<crate::trace::TraceConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: Duration::ZERO,
            trace: None,
        }
    }
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed in a way that is not per-connection (e.g. it was closed).
    #[error("accepting connections on {listen}: {source}")]
    Accept {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves proxied traffic on `listener` until `shutdown` completes, then drains: for
/// `config.drain_delay` it still accepts and serves, but every client connection closes
/// after its next response (HTTP/1.1 `Connection: close`, HTTP/2 `GOAWAY`), so keep-alive
/// clients reconnect, to the proxy replacing this one, while the listener is still there
/// for the stragglers kube-proxy sends meanwhile. Then it stops accepting, lets in-flight
/// requests finish within what is left of `config.shutdown_grace`, and returns. Requests are routed with the current table of `table` (read per request);
/// the upstream pools follow the table's changes for as long as this runs.
pub async fn serve(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_pools(
        config,
        vec![listener],
        table,
        metrics,
        Arc::new(Pools::new()),
        shutdown,
    )
    .await
}

/// [`serve`] on every one of `listeners` (`--listen` repeated), with the caller's
/// [`Pools`], so it can read pool statistics (`/debug`). The listeners share the
/// connection cap and the drain.
pub async fn serve_with_pools(
    config: ServerConfig,
    listeners: Vec<tokio::net::TcpListener>,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let parts = (table, metrics, pools);
    serve_with_captured(config, listeners, None, parts, shutdown).await
}

/// A connection the sidecar's outbound side captured and found to speak HTTP, handed
/// to the server with the bytes detection read.
#[derive(Debug)]
pub struct Captured {
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    /// The connection's first bytes, parsed before anything more is read.
    pub read: bytes::BytesMut,
}

/// [`serve_with_pools`], also serving the connections that arrive on `captured` (the
/// sidecar's, see [`captured`]) until the sender is gone or the server stops.
pub async fn serve_with_captured(
    config: ServerConfig,
    listeners: Vec<tokio::net::TcpListener>,
    captured: Option<tokio::sync::mpsc::Receiver<Captured>>,
    (table, metrics, pools): (Arc<TableHandle>, Arc<Metrics>, Arc<Pools>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    for listener in &listeners {
        if let Ok(listen) = listener.local_addr() {
            tracing::info!(%listen, "proxy listening (HTTP/1.1 and h2c)");
        }
    }
    let follower = AbortOnDrop(spawn_follower(
        Arc::clone(&pools),
        Arc::clone(&table),
        Arc::clone(&metrics),
    ));
    let shared = Arc::new(Shared {
        table,
        pools,
        metrics,
        budget: SharedBudget::new(Instant::now()),
        max_headers: config.max_headers,
        tracer: config.trace.clone().map(crate::trace::Tracer::spawn),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let phases = listener::Phases {
        draining: drain_rx,
        stop: stop_rx,
    };
    // Boxed so it can be dropped below: each loop holds a slot while it waits to accept.
    let loops = listeners.into_iter().map(|listener| {
        listener::accept_loop(
            &config,
            listener,
            Arc::clone(&shared),
            phases.clone(),
            Arc::clone(&slots),
        )
    });
    let captured = captured.map(|captured| {
        listener::captured_loop(
            &config,
            captured,
            Arc::clone(&shared),
            phases.clone(),
            Arc::clone(&slots),
        )
    });
    let mut accepting = Box::pin(async move {
        let captured = async move {
            if let Some(captured) = captured {
                captured.await;
            }
        };
        futures::future::join(futures::future::join_all(loops), captured).await;
    });
    tokio::select! {
        () = accepting.as_mut() => {}
        () = shutdown => {
            drain_tx.send_replace(true);
            if !config.drain_delay.is_zero() {
                tracing::info!(delay = ?config.drain_delay, "draining: closing client connections after their next response");
                tokio::select! {
                    () = accepting.as_mut() => {}
                    () = tokio::time::sleep(config.drain_delay) => {}
                }
            }
        }
    }
    // Stop accepting and ask every connection to finish.
    drop(accepting);
    stop_tx.send_replace(true);
    drain_tx.send_replace(true);
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let grace = config.shutdown_grace.saturating_sub(config.drain_delay);
    match tokio::time::timeout(grace, slots.acquire_many(all)).await {
        Ok(_) => tracing::info!("every connection finished"),
        Err(_) => tracing::warn!(
            grace = ?config.shutdown_grace,
            "connections still open after the shutdown grace; stopping anyway"
        ),
    }
    drop(follower);
    Ok(())
}

/// Aborts a background task when the server stops.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
