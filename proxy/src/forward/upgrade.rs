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
//! the client as a normal response. `shape` builds the messages (pure), `pod` talks to
//! the pod, `open` follows the upgraded connection to its end.
//!
//! What is refused, and why: an upgrade with a request body (`400`: those bytes would
//! sit between the head and the new protocol, a smuggling shape); a `101` naming a
//! protocol other than the one asked for and allowed (`502`: a pod switching to `h2c`
//! would let the client speak HTTP/2 past the proxy); an upgrade to an HTTP/2 pod that
//! does not advertise extended CONNECT (`502`). A protocol the
//! Route does not allow is not refused: the request goes on without its upgrade, as a
//! server that does not speak a protocol ignores `Upgrade` (RFC 9110 section 7.8), and
//! so do upgrades on HTTP/1.0 requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{AppProtocol, Route, Upgrades};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderValue, SEC_WEBSOCKET_KEY, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{Method, Request, StatusCode, Version};

use super::affinity;
use super::errors::ProxyError;
use super::filters;
use super::pick::{EndGuard, pick};
use super::service::{Answer, Failed, Shared};
use super::view;
use crate::balance::{Outcome, Pick};
use crate::headers;
use crate::pod::{UpstreamError, authority_of};
use crate::pool::ConnectError;
use crate::request::{RawFields, RequestBody};
use crate::response::ProxyBody;
use crate::route::RequestView;
use crate::table::{KeyOf, Resolved, Table};
use crate::tls::TlsConfigError;

mod open;
mod pod;
mod shape;

pub use shape::{client_response, http1_request, http2_request, switched_to};

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
    let headers = view::RequestHeaders {
        map: request.headers(),
        fields: request.body().fields(),
    };
    let route = authority_of(request)
        .ok_or(ProxyError::MissingHost)
        .and_then(|authority| {
            (table.route(authority, &view::of(request, &headers))).map_err(ProxyError::Resolve)
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
pub async fn proxy<U: Sync>(
    shared: &Shared<U>,
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
    let client_key = parts.headers.get(SEC_WEBSOCKET_KEY).cloned();
    // The route is chosen on the request as the client sent it (hyper's path: every
    // field in the map).
    let headers = view::RequestHeaders {
        map: &parts.headers,
        fields: None,
    };
    let request_view = RequestView {
        method: Some(parts.method.as_str()),
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers: &headers,
    };
    let table = shared.table.load();
    // Only refused connections are tried again: nothing reached a pod, and an upgrade
    // has no body to replay.
    let mut attempts_left = None;
    // Affinity for the first try only: a retry follows a refused connection, and the
    // key would lead straight back to the pod that refused it.
    let keyed = affinity::key_of(&parts.headers, None, client);
    loop {
        let key_of: KeyOf<'_> = if attempts_left.is_none() {
            &keyed
        } else {
            &|_| None
        };
        let resolved = pick(
            &table,
            Pick::Upgrade,
            &authority,
            &request_view,
            key_of,
            Instant::now(),
        )
        .map_err(|e| (ProxyError::Resolve(e), None, None))?;
        let (target, addr) = match resolved {
            Resolved::Pod(target, addr) => (target, addr),
            Resolved::Redirect { route, rule } => {
                return Ok(filters::redirect(&parts.uri, &authority, route, rule));
            }
        };
        let route = Arc::clone(&target.route);
        let failed = |error| (error, Some(Arc::clone(&route)), Some(addr));
        let attempts_left = attempts_left.get_or_insert(route.retries.attempts);
        let backend = Arc::clone(&target.backend);
        let pod_http2 = target.protocol == AppProtocol::H2c;
        let tls = target.tls.is_some();
        let mut guard = EndGuard::new(target, addr, start);
        if tls {
            // Refused here, not as a failed connect: the pod did nothing wrong, so no
            // retry and no mark against it in the balancer.
            guard.end(Outcome::Cancelled);
            let source = ConnectError::TlsConfig {
                addr,
                source: TlsConfigError::Upgrade,
            };
            let route = route.key.clone();
            return Err(failed(ProxyError::ConnectFailed { route, source }));
        }
        let connect = route.timeouts.connect;
        let exchange = async {
            if pod_http2 {
                let Some(request) = http2_request(&parts, &authority, &protocol, client) else {
                    return Err(pod::Exchange::NoExtendedConnect);
                };
                pod::http2(addr, connect, request).await
            } else {
                let request = http1_request(&parts, &authority, &protocol, via, client);
                pod::http1(addr, connect, request).await
            }
        };
        let answered = match deadline(&route) {
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or(Err(pod::Exchange::TimedOut(limit))),
            None => exchange.await,
        };
        let response = match answered {
            Ok(response) => response,
            Err(pod::Exchange::Connect(source)) => {
                guard.end(Outcome::ConnectFailure);
                if *attempts_left > 0 {
                    *attempts_left -= 1;
                    continue;
                }
                return Err(failed(ProxyError::ConnectFailed {
                    route: route.key.clone(),
                    source,
                }));
            }
            Err(pod::Exchange::Failed(source)) => {
                guard.end(Outcome::Reset);
                return Err(failed(ProxyError::UpstreamReset {
                    route: route.key.clone(),
                    endpoint: addr,
                    source: UpstreamError::Upgrade(source),
                }));
            }
            Err(pod::Exchange::TimedOut(timeout)) => {
                guard.end(Outcome::Timeout);
                return Err(failed(ProxyError::Timeout {
                    route: route.key.clone(),
                    timeout,
                }));
            }
            Err(pod::Exchange::NoExtendedConnect) => {
                guard.end(Outcome::Cancelled);
                return Err(failed(ProxyError::UpgradeToHttp2 {
                    route: route.key.clone(),
                    endpoint: addr,
                }));
            }
        };
        let switched = if pod_http2 {
            response.status().is_success()
        } else {
            response.status() == StatusCode::SWITCHING_PROTOCOLS
        };
        if !switched {
            // The pod declined: its answer is the client's, as for any request.
            guard.end(if response.status().is_server_error() {
                Outcome::Status5xx
            } else {
                Outcome::Success
            });
            let mut response = response.map(|body| ProxyBody::Upstream {
                body,
                lease: None,
                grpc: None,
            });
            headers::strip_response(response.headers_mut());
            return Ok(Answer {
                response,
                route: Some(route),
                endpoint: Some(addr),
            });
        }
        if !pod_http2 && let Err(offered) = switched_to(response.headers(), &protocol) {
            guard.end(Outcome::Status5xx);
            return Err(failed(ProxyError::UpgradeMismatch {
                route: route.key.clone(),
                endpoint: addr,
                offered,
            }));
        }
        // The time to the switch is this pick's latency sample (peak-EWMA).
        guard.end(Outcome::Success);
        let answer = client_response(
            response.headers(),
            pod_http2,
            via,
            &protocol,
            client_key.as_ref(),
        );
        let tunnel = open::Tunnel {
            open: open::Opened::new(backend, addr),
            route: Arc::clone(&route),
            metrics: Arc::clone(&shared.metrics),
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

/// The request timeout bounds the wait for the pod's switch, not the tunnel.
fn deadline(route: &Route) -> Option<Duration> {
    Some(route.timeouts.request).filter(|t| !t.is_zero())
}

#[cfg(test)]
mod tests;
