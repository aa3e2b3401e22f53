//! Every way a request can fail at the proxy, with its exact status, its
//! machine-readable reason (the `fairway-error` header and a metric label) and a body
//! that names the route and the reason.

use std::time::Duration;

use bytes::Bytes;
use fairway_proto::model::{EndpointAddr, RouteKey};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::pod::UpstreamError;
use crate::pool::ConnectError;
use crate::response::ProxyBody;
use crate::route::RouteError;
use crate::table::ResolveError;

/// The response header that carries [`ProxyError::reason`].
pub const FAIRWAY_ERROR: HeaderName = HeaderName::from_static("fairway-error");

/// What to do about an unknown host. Most often the client uses the proxy as
/// `HTTP_PROXY`, which sends *every* plain-HTTP call here, Routes or not.
const UNKNOWN_HOST_HINT: &str = "add a Route listing this host in spec.hosts, or, if this \
     client sends its calls through Fairway as HTTP_PROXY/http_proxy, add the host to \
     NO_PROXY and no_proxy so it is reached directly";

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Routing or picking failed: unknown host (`404`), no rule (`404`), no backend or
    /// endpoint (`503`).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Neither an absolute-form URI nor a `Host` header / `:authority` (`400`).
    #[error("the request names no host (no Host header, :authority or absolute URI)")]
    MissingHost,
    /// Both `Content-Length` and `Transfer-Encoding` (`400`): a request-smuggling shape.
    /// The connection closes after the answer.
    #[error("the request has both Content-Length and Transfer-Encoding")]
    ConflictingFraming,
    /// `CONNECT` tunnels are not proxied (`405`).
    #[error("CONNECT tunnels are not supported")]
    ConnectMethod,
    /// An HTTP/2 request with more headers than allowed (`431`; hyper enforces the
    /// HTTP/1.1 limit itself).
    #[error("{count} request headers, more than the limit of {max}")]
    TooManyHeaders { count: usize, max: usize },
    /// No connection to any picked endpoint, after retries (`502`).
    #[error("route {route}: {source}")]
    ConnectFailed {
        route: RouteKey,
        #[source]
        source: ConnectError,
    },
    /// The pod closed or broke the connection before response headers (`502`).
    #[error("route {route}: endpoint {endpoint} failed before responding: {source}")]
    UpstreamReset {
        route: RouteKey,
        endpoint: EndpointAddr,
        #[source]
        source: UpstreamError,
    },
    /// The last try got no response headers within the route's per-try timeout, and no
    /// retry was allowed (`504`).
    #[error(
        "route {route}: endpoint {endpoint} sent no response within the per-try timeout of {timeout:?}"
    )]
    TryTimeout {
        route: RouteKey,
        endpoint: EndpointAddr,
        timeout: Duration,
    },
    /// No response headers within the route's request timeout, all tries together (`504`).
    #[error("route {route}: no response within the request timeout of {timeout:?}")]
    Timeout { route: RouteKey, timeout: Duration },
    /// A gRPC call got no response headers within its deadline: its `grpc-timeout`,
    /// capped by the route's `timeouts.grpcMaximum` (`504`; `DEADLINE_EXCEEDED`).
    #[error(
        "route {route}: no response within the call's deadline of {timeout:?} (grpc-timeout, \
         at most timeouts.grpcMaximum)"
    )]
    Deadline { route: RouteKey, timeout: Duration },
    /// An HTTP/1.1 upgrade request with a body (`400`): those bytes would sit between
    /// the head and the new protocol.
    #[error("an Upgrade request must not carry a body")]
    UpgradeWithBody,
    /// An extended CONNECT (RFC 8441) for a protocol the Route does not list in
    /// `upstream.upgrades` (`400`).
    #[error("route {route}: upgrades to {protocol:?} are not allowed (spec.upstream.upgrades)")]
    UpgradeNotAllowed { route: RouteKey, protocol: String },
    /// The pod answered `101` naming another protocol than the one asked for (`502`).
    #[error(
        "route {route}: endpoint {endpoint} switched to {offered:?}, not the protocol asked for"
    )]
    UpgradeMismatch {
        route: RouteKey,
        endpoint: EndpointAddr,
        offered: String,
    },
    /// An upgrade to an HTTP/2 pod that does not advertise extended CONNECT (RFC 8441),
    /// the only way to carry it over HTTP/2 (`502`).
    #[error(
        "route {route}: endpoint {endpoint} speaks HTTP/2 and does not advertise extended \
         CONNECT (RFC 8441), so the upgrade cannot reach it (set spec.upstream.protocol: HTTP1 \
         if the pod also speaks HTTP/1.1)"
    )]
    UpgradeToHttp2 {
        route: RouteKey,
        endpoint: EndpointAddr,
    },
    /// The client's own request body failed (it went away or sent a broken body) (`400`).
    #[error("route {route}: reading the request body: {source}")]
    ClientBody {
        route: RouteKey,
        #[source]
        source: hyper::Error,
    },
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Resolve(ResolveError::NoRoute(_)) => StatusCode::NOT_FOUND,
            ProxyError::Resolve(ResolveError::Unresolved { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::Resolve(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::MissingHost
            | ProxyError::ConflictingFraming
            | ProxyError::ClientBody { .. }
            | ProxyError::UpgradeWithBody
            | ProxyError::UpgradeNotAllowed { .. } => StatusCode::BAD_REQUEST,
            ProxyError::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::ConnectFailed { .. }
            | ProxyError::UpstreamReset { .. }
            | ProxyError::UpgradeMismatch { .. }
            | ProxyError::UpgradeToHttp2 { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. }
            | ProxyError::TryTimeout { .. }
            | ProxyError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Machine-readable reason: the `fairway-error` header value and a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Resolve(e) => e.reason(),
            ProxyError::MissingHost => "MissingHost",
            ProxyError::ConflictingFraming => "ConflictingFraming",
            ProxyError::ConnectMethod => "ConnectUnsupported",
            ProxyError::TooManyHeaders { .. } => "TooManyHeaders",
            // A certificate that does not verify is no network fault: its own reasons.
            ProxyError::ConnectFailed {
                source: ConnectError::TlsHandshake { .. },
                ..
            } => "TlsHandshake",
            ProxyError::ConnectFailed {
                source: ConnectError::TlsConfig { .. },
                ..
            } => "TlsConfig",
            ProxyError::ConnectFailed { .. } => "ConnectFailed",
            ProxyError::UpstreamReset { .. } => "UpstreamReset",
            ProxyError::Timeout { .. } => "Timeout",
            ProxyError::TryTimeout { .. } => "TryTimeout",
            ProxyError::Deadline { .. } => "Deadline",
            ProxyError::ClientBody { .. } => "ClientBody",
            ProxyError::UpgradeWithBody => "UpgradeWithBody",
            ProxyError::UpgradeNotAllowed { .. } => "UpgradeNotAllowed",
            ProxyError::UpgradeMismatch { .. } => "UpgradeMismatch",
            ProxyError::UpgradeToHttp2 { .. } => "UpgradeToHttp2",
        }
    }

    /// The route the request matched, when it got that far.
    pub fn route(&self) -> Option<&RouteKey> {
        match self {
            ProxyError::Resolve(ResolveError::NoRoute(RouteError::NoRule { route, .. }))
            | ProxyError::Resolve(ResolveError::NoBackend { route })
            | ProxyError::Resolve(ResolveError::NoEndpoint { route, .. })
            | ProxyError::Resolve(ResolveError::Unresolved { route, .. })
            | ProxyError::ConnectFailed { route, .. }
            | ProxyError::UpstreamReset { route, .. }
            | ProxyError::Timeout { route, .. }
            | ProxyError::TryTimeout { route, .. }
            | ProxyError::Deadline { route, .. }
            | ProxyError::ClientBody { route, .. }
            | ProxyError::UpgradeNotAllowed { route, .. }
            | ProxyError::UpgradeMismatch { route, .. }
            | ProxyError::UpgradeToHttp2 { route, .. } => Some(route),
            _ => None,
        }
    }

    /// The response: the status, `fairway-error: <reason>`, and a one-line plain-text
    /// body `<reason>: <message>` (the message names the route, or the unknown host).
    pub fn to_response(&self) -> Response<ProxyBody> {
        let body = match self {
            // Include the cause: "connection refused" is what an operator needs to see.
            ProxyError::ConnectFailed { source, .. } => {
                format!("{}: {self}: {}\n", self.reason(), source_chain(source))
            }
            ProxyError::Resolve(ResolveError::NoRoute(RouteError::UnknownHost(_))) => {
                format!("{}: {self}: {UNKNOWN_HOST_HINT}\n", self.reason())
            }
            _ => format!("{}: {self}\n", self.reason()),
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(FAIRWAY_ERROR, HeaderValue::from_static(self.reason()));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut next = error.source();
    while let Some(e) = next {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use fairway_proto::model::EndpointSetKey;

    use super::*;

    fn route() -> RouteKey {
        RouteKey {
            namespace: "shop".into(),
            name: "orders".into(),
        }
    }

    #[test]
    fn statuses_reasons_and_bodies() {
        let set = EndpointSetKey {
            namespace: "shop".into(),
            service: "orders".into(),
            port: NonZeroU16::new(8080).expect("non-zero"),
        };
        let cases = [
            (
                ProxyError::Resolve(ResolveError::NoRoute(RouteError::UnknownHost(
                    "nope.shop".into(),
                ))),
                404,
                "UnknownHost",
                "nope.shop",
            ),
            (
                ProxyError::Resolve(ResolveError::NoRoute(RouteError::UnknownHost(
                    "api.example.com".into(),
                ))),
                404,
                "UnknownHost",
                "add the host to NO_PROXY and no_proxy",
            ),
            (
                ProxyError::Resolve(ResolveError::NoEndpoint {
                    route: route(),
                    set,
                }),
                503,
                "NoEndpoint",
                "shop/orders",
            ),
            (
                ProxyError::Timeout {
                    route: route(),
                    timeout: Duration::from_millis(250),
                },
                504,
                "Timeout",
                "shop/orders",
            ),
            (
                ProxyError::TooManyHeaders { count: 3, max: 2 },
                431,
                "TooManyHeaders",
                "limit of 2",
            ),
        ];
        for (error, status, reason, named) in cases {
            let response = error.to_response();
            assert_eq!(response.status().as_u16(), status, "{error}");
            assert_eq!(
                response.headers()[FAIRWAY_ERROR],
                reason,
                "the header carries the reason"
            );
            let ProxyBody::Full(Some(body)) = response.into_body() else {
                panic!("an error response has a body");
            };
            let body = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(
                body.starts_with(reason) && body.contains(named),
                "body {body:?} must name the reason and {named:?}"
            );
        }
    }
}
