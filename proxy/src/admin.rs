//! The admin server on `--admin-addr`: `GET /live`, `GET /ready`, `GET /metrics`,
//! `GET /debug/routes` (design.md 5). Plain HTTP/1.1 on its own port, so probes and
//! scrapes never queue behind proxied traffic.
//!
//! `/ready` is 200 once a first table is applied and until shutdown starts, then 503
//! again, so Kubernetes stops sending new traffic during the grace period. `/live` is
//! 200 for as long as the process serves at all.

mod debug;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, warn};

pub use debug::{PoolStatsFn, pool_stats_fn};

use crate::metrics::Metrics;
use crate::table::TableHandle;

/// OpenMetrics text, which prometheus-client writes (Prometheus scrapes it natively).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const JSON_CONTENT_TYPE: &str = "application/json";

/// What the admin endpoints read. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    pool_stats: Option<PoolStatsFn>,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.table.is_ready())
            .field("pool_stats", &self.pool_stats.is_some())
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// `pool_stats`, when given, adds each endpoint's pool to `/debug/routes`.
    pub fn new(
        table: Arc<TableHandle>,
        metrics: Arc<Metrics>,
        pool_stats: Option<PoolStatsFn>,
    ) -> AdminState {
        AdminState {
            table,
            metrics,
            pool_stats,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Shutdown started: `/ready` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn is_ready(&self) -> bool {
        self.table.is_ready() && !self.draining.load(Ordering::Relaxed)
    }
}

/// Pause after a failed accept: the usual cause is running out of descriptors, which
/// only time (connections closing) fixes; retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves the admin endpoints on `listener` until `shutdown` completes. Connections
/// still open then are closed: admin requests are short and safe to cut. Accept errors
/// are logged and retried, never fatal: probes must keep working.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "admin accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, %error, "admin connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}

/// Answers one admin request. Pure apart from reading the shared state.
pub fn respond<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" if state.table.is_ready() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no route table from the controller yet\n",
        ),
        "/metrics" => {
            let loads = state.table.load().load(Instant::now());
            let body = state.metrics.encode_with_shares(&loads);
            with_type(StatusCode::OK, METRICS_CONTENT_TYPE, body)
        }
        "/debug/routes" => {
            let table = state.table.load();
            let pools = state.pool_stats.as_ref().map(|f| f());
            let body = debug::routes(&table, pools.as_ref(), Instant::now());
            with_type(StatusCode::OK, JSON_CONTENT_TYPE, body)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, TEXT_CONTENT_TYPE, body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests;
