//! The admin HTTP server (design.md section 5): `GET /live`, `GET /ready` (200 once the
//! first full sync is published, else 503), `GET /metrics` (Prometheus text) and
//! `GET /debug/routes` (JSON: the served table, statuses, connected proxies and the
//! versions they applied). Anything else is 404.
//!
//! The live page: `GET /` is a self-contained HTML document (`admin/page.html`, in the
//! binary: no build step, no CDN) that follows `GET /api/v1/events` ([`events`]: server-
//! sent events); `GET /api/v1/status` ([`status`]) is the same document once, for
//! `kubectl fairway` and scripts. All read-only; who can reach the port is
//! docs/security.md's business.

pub mod events;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use fairway_proto::{Endpoint, EndpointSet, Route, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::grpc::{Proxies, ProxyInfo};
use crate::index::{ComputedStatus, ConditionState};
use crate::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};
use crate::state::IndexHandle;
use crate::store::Store;

/// A failed `accept` (out of file descriptors, usually) is retried after this pause,
/// rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    pub index: Arc<IndexHandle>,
    pub store: Arc<Store>,
    pub proxies: Arc<Proxies>,
    pub metrics: Arc<Metrics>,
    /// Open `/api/v1/events` streams.
    pub event_streams: events::EventStreams,
}

type Body = Full<Bytes>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The live page, served as it is.
const PAGE: &str = include_str!("admin/page.html");
/// Only the page's own inline script and style, and requests back to this origin.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     frame-ancestors 'none'";

/// The `/api/v1/status` document now.
pub fn status_document(state: &AdminState) -> String {
    let latest = state.store.latest();
    let statuses = state.index.read(|index| index.statuses());
    let reports = state.proxies.loads(
        std::time::Instant::now(),
        crate::grpc::server::REPORT_MAX_AGE,
    );
    let view = status::status(&latest, &statuses, &state.proxies.list(), &reports);
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_string(&view).unwrap_or_default()
}

/// Answers one request. Pure apart from reading the shared state.
pub fn handle(state: &AdminState, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return respond(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    match path {
        "/live" => respond(StatusCode::OK, TEXT, "live\n"),
        "/ready" if state.store.is_ready() => respond(StatusCode::OK, TEXT, "ready\n"),
        "/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not ready: the first full sync is not published yet\n",
        ),
        "/metrics" => match state.metrics.encode(&state.proxies, &state.store.latest()) {
            Ok(text) => respond(StatusCode::OK, METRICS_CONTENT_TYPE, text),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("encoding metrics: {e}\n"),
            ),
        },
        "/debug/routes" => {
            let body = debug_routes(state).to_string();
            respond(StatusCode::OK, "application/json", body)
        }
        "/api/v1/status" => respond(StatusCode::OK, "application/json", status_document(state)),
        "/" => {
            let mut page = respond(StatusCode::OK, "text/html; charset=utf-8", PAGE);
            let headers = page.headers_mut();
            headers.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            );
            headers.insert(
                hyper::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            page
        }
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// `"EPOCH.SEQUENCE"`, as the proxy's `/debug/routes` prints it: a string, because the
/// epoch is a random 64-bit number that jq and JavaScript would round as a JSON number.
fn version(v: Version) -> Value {
    Value::String(v.to_string())
}

fn route_json(route: &Route) -> Value {
    json!({
        "key": route.key.to_string(),
        "hosts": route.hosts,
        "rules": route.rules.iter().map(|rule| json!({
            "pathPrefix": rule.path_prefix,
            "backends": rule.backends.iter().map(|b| json!({
                "endpointSet": b.endpoint_set.to_string(),
                "weight": b.weight,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "loadBalancer": {
            "policy": format!("{:?}", route.load_balancer.policy),
            "slowStartMs": route.load_balancer.slow_start.map(|d| d.as_millis() as u64),
        },
        "upstream": {
            "protocol": format!("{:?}", route.upstream.protocol),
            "maxConnectionsPerEndpoint": route.upstream.max_connections_per_endpoint,
            "idleTimeoutMs": route.upstream.idle_timeout.as_millis() as u64,
            "maxConnectionAgeMs": route.upstream.max_connection_age.map(|d| d.as_millis() as u64),
            "maxRequestsPerConnection": route.upstream.max_requests_per_connection,
        },
        "timeouts": {
            "requestMs": route.timeouts.request.as_millis() as u64,
            "connectMs": route.timeouts.connect.as_millis() as u64,
        },
        "retries": {
            "attempts": route.retries.attempts,
            "budgetPercent": route.retries.budget_percent,
        },
    })
}

fn endpoint_json(ep: &Endpoint) -> Value {
    let state = if ep.ready {
        "ready"
    } else if ep.serving && ep.terminating {
        "terminating"
    } else {
        "not-ready"
    };
    json!({
        "address": ep.addr.to_string(),
        "state": state,
        "ready": ep.ready,
        "serving": ep.serving,
        "terminating": ep.terminating,
        "zone": ep.zone,
        "node": ep.node,
        "pod": ep.pod,
        "hintsForZones": ep.hints_for_zones,
        "hintsForNodes": ep.hints_for_nodes,
    })
}

fn set_json(set: &EndpointSet) -> Value {
    json!({
        "key": set.key.to_string(),
        "appProtocol": set.app_protocol,
        "endpoints": set.endpoints.values().map(endpoint_json).collect::<Vec<_>>(),
    })
}

fn condition_json(c: &ConditionState) -> Value {
    json!({"status": c.status.as_str(), "reason": c.reason.as_str(), "message": c.message})
}

fn status_json(key: String, s: &ComputedStatus) -> Value {
    json!({
        "route": key,
        "observedGeneration": s.observed_generation,
        "accepted": condition_json(&s.accepted),
        "resolvedRefs": condition_json(&s.resolved_refs),
        "endpoints": {"ready": s.endpoints.ready, "serving": s.endpoints.serving, "total": s.endpoints.total},
    })
}

fn proxy_json(p: &ProxyInfo, latest: Version) -> Value {
    let connected = p
        .connected_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({
        "id": p.id,
        "node": p.node,
        "zone": p.zone,
        "connectedAtUnixMs": connected.as_millis() as u64,
        "lastSent": p.last_sent.map(version),
        "applied": p.last_acked.map(version),
        "lagVersions": p.lag(latest),
        "lastNack": p.last_nack.as_ref().map(|(v, error)| json!({"version": version(*v), "error": error})),
    })
}

/// The `/debug/routes` document. `routes` and `endpointSets` are the published table
/// (what proxies receive); `statuses` come from the index (every Route, valid or not).
pub fn debug_routes(state: &AdminState) -> Value {
    let latest = state.store.latest();
    let statuses = state.index.read(|index| index.statuses());
    json!({
        "version": version(latest.version),
        "ready": !latest.is_initial(),
        "routes": latest.table.routes.values().map(|r| route_json(r)).collect::<Vec<_>>(),
        "endpointSets": latest.table.endpoint_sets.values().map(|s| set_json(s)).collect::<Vec<_>>(),
        "statuses": statuses.iter().map(|(k, s)| status_json(k.to_string(), s)).collect::<Vec<_>>(),
        "proxies": state.proxies.list().iter().map(|p| proxy_json(p, latest.version)).collect::<Vec<_>>(),
    })
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves; open
/// connections are then closed (admin requests are short and idempotent).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let response = if request.method() == Method::GET
                                && request.uri().path() == "/api/v1/events"
                            {
                                events::respond(state.clone())
                            } else {
                                handle(&state, request.method(), request.uri().path())
                                    .map(BodyExt::boxed_unsync)
                            };
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        });
                        if let Err(e) = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(error = %e, "admin connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next() => {}
        }
    }
    connections.shutdown().await;
}
