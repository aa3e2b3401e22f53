//! HTTP upgrades through the proxy: WebSocket over HTTP/1.1 (RFC 9110 section 7.8,
//! RFC 6455) and over HTTP/2 (RFC 8441 extended CONNECT, sent to the pod as an HTTP/1.1
//! upgrade, as Envoy does).
//!
//! Where it sits: `service` asks [`admit`] whether a request is an upgrade the matched
//! Route lets through. If so, [`proxy`] picks a pod like any request, but by open
//! upgraded connections ([`Pick::Upgrade`]); opens a connection of its own to the pod
//! (never pooled: after `101` it is a byte pipe); and checks the pod's answer. On `101`
//! it answers the client (`101`, or `200` to an extended CONNECT) and spawns the
//! `tunnel` that copies bytes once both sides have switched. Any other answer goes to
//! the client as a normal response.
//!
//! What is refused, and why: an upgrade with a request body (`400`: those bytes would
//! sit between the head and the new protocol, a smuggling shape); a `101` naming a
//! protocol other than the one asked for and allowed (`502`: a pod switching to `h2c`
//! would let the client speak HTTP/2 past the proxy); an upgrade to a Route whose pods
//! speak HTTP/2 (`502`: extended CONNECT to pods is not implemented). A protocol the
//! Route does not allow is not refused: the request goes on without its upgrade, as a
//! server that does not speak a protocol ignores `Upgrade` (RFC 9110 section 7.8), and
//! so do upgrades on HTTP/1.0 requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use fairway_proto::model::{AppProtocol, EndpointAddr, EndpointSetKey, Route, Upgrades};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::errors::ProxyError;
use super::forward::{UpstreamError, authority_of};
use super::headers;
use super::service::{Answer, EndGuard, Failed, Shared, pick};
use super::tunnel;
use crate::balance::{Outcome, Pick};
use crate::body::{ProxyBody, RawFields, RequestBody};
use crate::pool::{ConnectError, connect_tcp};
use crate::table::{BackendState, Table};

/// How the client asked to switch protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Connection: upgrade` and `Upgrade: <protocols>` on an HTTP/1.1 request.
    Http1,
    /// An HTTP/2 `CONNECT` with `:protocol` (RFC 8441).
    ExtendedConnect,
}

/// An upgrade the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub via: Via,
    /// The protocols offered, in the client's order, as sent (`websocket`, `foo/2`).
    pub protocols: Vec<String>,
}

/// The upgrade `request` asks for, if any. HTTP/1.0 requests never upgrade (RFC 9110
/// section 7.8: `Upgrade` is ignored there).
pub fn asked<B>(request: &Request<B>) -> Option<Ask> {
    if request.version() == Version::HTTP_2 {
        let protocol = request.extensions().get::<hyper::ext::Protocol>()?;
        return (request.method() == Method::CONNECT).then(|| Ask {
            via: Via::ExtendedConnect,
            protocols: vec![protocol.as_str().to_owned()],
        });
    }
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let headers = request.headers();
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let protocols: Vec<String> = headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .map(str::to_owned)
        .collect();
    (!protocols.is_empty()).then_some(Ask {
        via: Via::Http1,
        protocols,
    })
}

/// Comma-separated tokens of a header value, trimmed; non-UTF-8 values have none.
fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// What to do with an upgrade request.
#[derive(Debug)]
pub enum Admit {
    /// Tunnel it, switching to this protocol (as the client spelt it).
    Tunnel(String),
    /// Serve it as a plain request: the upgrade is dropped with the hop-by-hop fields.
    Plain,
    /// Answer with this error.
    Refuse(ProxyError),
}

/// Decides what to do with `ask`, made by `request`, with the current `table`. Pure.
pub fn admit<B: RawFields>(table: &Table, request: &Request<B>, ask: &Ask) -> Admit {
    let route = authority_of(request)
        .ok_or(ProxyError::MissingHost)
        .and_then(|authority| {
            table
                .route(authority, request.uri().path())
                .map_err(ProxyError::Resolve)
        });
    let route = match (route, ask.via) {
        (Ok(route), _) => route,
        // The normal path answers these the same way, with its metrics.
        (Err(_), Via::Http1) => return Admit::Plain,
        (Err(error), Via::ExtendedConnect) => return Admit::Refuse(error),
    };
    if ask.via == Via::Http1 && has_body(request.headers()) {
        return Admit::Refuse(ProxyError::UpgradeWithBody);
    }
    match choose(&ask.protocols, &route.upstream.upgrades) {
        Some(protocol) => Admit::Tunnel(protocol.to_owned()),
        None if ask.via == Via::Http1 => Admit::Plain,
        None => Admit::Refuse(ProxyError::UpgradeNotAllowed {
            route: route.key.clone(),
            protocol: ask.protocols.join(", "),
        }),
    }
}

/// The first offered protocol the Route allows; `h2c` never (see the module comment).
fn choose<'a>(offered: &'a [String], allowed: &Upgrades) -> Option<&'a str> {
    offered
        .iter()
        .map(String::as_str)
        .filter(|p| !name_of(p).eq_ignore_ascii_case("h2c"))
        .find(|p| allowed.allows(p))
}

/// A protocol's name without its version (`foo/2` -> `foo`).
fn name_of(protocol: &str) -> &str {
    protocol.split('/').next().unwrap_or(protocol).trim()
}

/// Whether an HTTP/1.1 request head announces a body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// Tunnels `request` (admitted for `protocol`): pick, connect, ask the pod, answer.
pub async fn proxy(
    shared: &Shared,
    client: &HeaderValue,
    mut request: Request<RequestBody>,
    via: Via,
    protocol: String,
    start: Instant,
) -> Result<Answer, Failed> {
    // Taken now, while the request still has its extensions: resolves once hyper has
    // written our `101` (or `200`) and hands over the client's connection.
    let downstream = hyper::upgrade::on(&mut request);
    let authority =
        authority_of(&request)
            .map(str::to_owned)
            .ok_or((ProxyError::MissingHost, None, None))?;
    let (parts, _) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let table = shared.table.load();
    // Only refused connections are tried again: nothing reached a pod, and an upgrade
    // has no body to replay.
    let mut attempts_left = None;
    loop {
        let (target, addr) = pick(&table, Pick::Upgrade, &authority, &path, Instant::now())
            .map_err(|e| (ProxyError::Resolve(e), None, None))?;
        let route = Arc::clone(&target.route);
        let failed = |error| (error, Some(Arc::clone(&route)), Some(addr));
        let attempts_left = attempts_left.get_or_insert(route.retries.attempts);
        if target.protocol == AppProtocol::H2c {
            target
                .backend
                .on_end(addr, Duration::ZERO, Outcome::Cancelled, Instant::now());
            return Err(failed(ProxyError::UpgradeToHttp2 {
                route: route.key.clone(),
            }));
        }
        let backend = Arc::clone(&target.backend);
        let mut guard = EndGuard::new(target, addr, start);
        let upstream = upstream_request(&parts, &authority, &protocol, via, client);
        let exchange = exchange(addr, &route, upstream);
        let answered = match deadline(&route) {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Err(Exchange::TimedOut(limit))),
            None => exchange.await,
        };
        let response = match answered {
            Ok(response) => response,
            Err(Exchange::Connect(source)) => {
                guard.end(Outcome::ConnectFailure);
                if *attempts_left > 0 {
                    *attempts_left -= 1;
                    continue;
                }
                let route_key = route.key.clone();
                return Err(failed(ProxyError::ConnectFailed {
                    route: route_key,
                    source,
                }));
            }
            Err(Exchange::Failed(source)) => {
                guard.end(Outcome::Reset);
                return Err(failed(ProxyError::UpstreamReset {
                    route: route.key.clone(),
                    endpoint: addr,
                    source: UpstreamError::Upgrade(source),
                }));
            }
            Err(Exchange::TimedOut(timeout)) => {
                guard.end(Outcome::Timeout);
                return Err(failed(ProxyError::Timeout {
                    route: route.key.clone(),
                    timeout,
                }));
            }
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The pod declined: its answer is the client's, as for any request.
            guard.end(if response.status().is_server_error() {
                Outcome::Status5xx
            } else {
                Outcome::Success
            });
            let mut response = response.map(|body| ProxyBody::Upstream { body, lease: None });
            headers::strip_response(response.headers_mut());
            return Ok(Answer {
                response,
                route: Some(route),
                endpoint: Some(addr),
            });
        }
        if let Err(offered) = switched_to(response.headers(), &protocol) {
            guard.end(Outcome::Status5xx);
            return Err(failed(ProxyError::UpgradeMismatch {
                route: route.key.clone(),
                endpoint: addr,
                offered,
            }));
        }
        // The time to `101` is this pick's latency sample (peak-EWMA).
        guard.end(Outcome::Success);
        let answer = downstream_response(response.headers(), via);
        let tunnel = Tunnel {
            open: Opened::new(backend, addr),
            route: Arc::clone(&route),
            shared_metrics: Arc::clone(&shared.metrics),
            tables: shared.table.subscribe(),
        };
        tokio::spawn(tunnel.run(downstream, hyper::upgrade::on(response)));
        return Ok(Answer {
            response: answer,
            route: Some(route),
            endpoint: Some(addr),
        });
    }
}

/// The request timeout bounds the wait for the pod's `101`, not the tunnel.
fn deadline(route: &Route) -> Option<Duration> {
    Some(route.timeouts.request).filter(|t| !t.is_zero())
}

/// Why the exchange with the pod gave no response.
enum Exchange {
    Connect(ConnectError),
    Failed(hyper::Error),
    TimedOut(Duration),
}

/// Opens a connection of its own to `addr` and sends `request` on it.
async fn exchange(
    addr: EndpointAddr,
    route: &Route,
    request: Request<Empty<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, Exchange> {
    let stream = connect_tcp(addr, route.timeouts.connect)
        .await
        .map_err(Exchange::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Exchange::Failed)?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%addr, %error, "upgrade connection to the pod ended");
        }
    });
    sender.send_request(request).await.map_err(Exchange::Failed)
}

/// The request the pod gets: the client's head less its hop-by-hop fields, with
/// `X-Forwarded-*`, `Host`, and the upgrade asked for again. An extended CONNECT becomes
/// the HTTP/1.1 WebSocket handshake it stands for (RFC 8441 section 5), with a key of
/// our own (HTTP/2 clients send none).
pub fn upstream_request(
    parts: &http::request::Parts,
    authority: &str,
    protocol: &str,
    via: Via,
    client: &HeaderValue,
) -> Request<Empty<Bytes>> {
    let mut headers = parts.headers.clone();
    headers::edit_request(&mut headers, None, Some(client));
    headers.remove(HOST);
    if let Ok(host) = HeaderValue::from_str(authority) {
        headers.insert(HOST, host);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(upgrade) = HeaderValue::from_str(protocol) {
        headers.insert(UPGRADE, upgrade);
    }
    let method = match via {
        Via::Http1 => parts.method.clone(),
        Via::ExtendedConnect => {
            if name_of(protocol).eq_ignore_ascii_case("websocket") {
                if !headers.contains_key(SEC_WEBSOCKET_KEY) {
                    headers.insert(SEC_WEBSOCKET_KEY, websocket_key());
                }
                if !headers.contains_key(SEC_WEBSOCKET_VERSION) {
                    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                }
            }
            Method::GET
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method;
    *request.uri_mut() = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 section 4.1).
fn websocket_key() -> HeaderValue {
    let key: [u8; 16] = rand::random();
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Checks that a `101` switched to `protocol`; the error is what the pod named instead.
pub fn switched_to(headers: &HeaderMap, protocol: &str) -> Result<(), String> {
    let offered: Vec<&str> = headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .collect();
    match offered.as_slice() {
        [one] if name_of(one).eq_ignore_ascii_case(name_of(protocol)) => Ok(()),
        [] => Err("no Upgrade field".to_owned()),
        many => Err(many.join(", ")),
    }
}

/// The client's answer to a pod's `101`: `101` with the pod's fields (less hop-by-hop
/// ones) and the upgrade, or for an extended CONNECT `200` (RFC 8441 section 5), less
/// the HTTP/1.1 handshake's own fields.
pub fn downstream_response(pod: &HeaderMap, via: Via) -> Response<ProxyBody> {
    let mut headers = pod.clone();
    let upgrade = headers.get(UPGRADE).cloned();
    headers::strip_response(&mut headers);
    let mut response = Response::new(ProxyBody::full(Bytes::new()));
    match via {
        Via::Http1 => {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(upgrade) = upgrade {
                headers.insert(UPGRADE, upgrade);
            }
        }
        Via::ExtendedConnect => {
            *response.status_mut() = StatusCode::OK;
            headers.remove(SEC_WEBSOCKET_ACCEPT);
        }
    }
    *response.headers_mut() = headers;
    response
}

/// Counts an upgraded connection open in its balancer while it lives.
struct Opened {
    backend: Arc<BackendState>,
    addr: EndpointAddr,
}

impl Opened {
    fn new(backend: Arc<BackendState>, addr: EndpointAddr) -> Self {
        backend.upgrade_opened(addr);
        Opened { backend, addr }
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.backend.upgrade_closed(self.addr);
    }
}

/// One upgraded connection from the pod's `101` to its close.
struct Tunnel {
    open: Opened,
    route: Arc<Route>,
    shared_metrics: Arc<crate::metrics::Metrics>,
    tables: watch::Receiver<Arc<Table>>,
}

impl Tunnel {
    async fn run(self, client: hyper::upgrade::OnUpgrade, pod: hyper::upgrade::OnUpgrade) {
        let addr = self.open.addr;
        let (client, pod) = match tokio::try_join!(client, pod) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%addr, %error, "an upgrade did not complete");
                return;
            }
        };
        let metrics = &self.shared_metrics;
        let route = self.route.key.to_string();
        let series = metrics
            .upgrades
            .opened(&route, &metrics.endpoint_label(&addr.to_string()));
        let upgrades = &self.route.upstream.upgrades;
        let limits = tunnel::Limits {
            idle: Some(upgrades.idle_timeout).filter(|d| !d.is_zero()),
            lifetime: upgrades.max_lifetime,
        };
        let set = self.open.backend.set.clone();
        let drain = drained(self.tables, set, addr, self.route.upstream.drain_timeout);
        let started = Instant::now();
        let reason = tunnel::run(
            TokioIo::new(client),
            TokioIo::new(pod),
            limits,
            drain,
            |d, n| {
                series.bytes(d, n);
            },
        )
        .await;
        tracing::debug!(%addr, route, ?reason, "upgraded connection ended");
        metrics
            .upgrades
            .closed(&route, &series, reason, started.elapsed());
    }
}

/// Completes `grace` after the endpoint `addr` of `set` turned terminating or left the
/// table (a pod that is merely not ready keeps its tunnels: readiness flaps).
async fn drained(
    mut tables: watch::Receiver<Arc<Table>>,
    set: EndpointSetKey,
    addr: EndpointAddr,
    grace: Duration,
) {
    loop {
        let leaving = {
            let table = tables.borrow_and_update();
            table.version.is_some() && is_leaving(&table, &set, addr)
        };
        if leaving {
            tokio::time::sleep(grace).await;
            return;
        }
        if tables.changed().await.is_err() {
            // The proxy is stopping; the tunnel ends with it.
            return std::future::pending().await;
        }
    }
}

fn is_leaving(table: &Table, set: &EndpointSetKey, addr: EndpointAddr) -> bool {
    table
        .source
        .endpoint_sets
        .get(set)
        .and_then(|s| s.endpoints.get(&addr))
        .is_none_or(|e| e.terminating)
}

#[cfg(test)]
mod tests;
