//! gRPC at the proxy's edge: which requests are gRPC, the deadline a call carries
//! (`grpc-timeout`), and the errors the proxy makes as gRPC statuses.
//!
//! A gRPC client reads a response without `grpc-status` through gRPC's HTTP-to-status
//! table (grpc-go `internal/transport/http_util.go`): 404 becomes `UNIMPLEMENTED`, 502,
//! 503 and 504 `UNAVAILABLE`, whatever happened. So every error the proxy makes for a
//! gRPC request is a trailers-only response (HTTP 200, `grpc-status`, `grpc-message`)
//! whose code says what happened ([`code`]; the table is in docs/routes.md). Pure:
//! nothing here reads a clock or a socket.

use std::time::Duration;

use fairway_proto::model::Timeouts;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use super::errors::{FAIRWAY_ERROR, ProxyError};
use crate::pod::UpstreamError;
use crate::response::ProxyBody;
use crate::table::ResolveError;

pub use crate::metrics::grpc::{GRPC_STATUS, status as grpc_status};
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The gRPC status codes the proxy answers with (the numbers are the wire values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Cancelled = 1,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Internal = 13,
    Unavailable = 14,
}

impl Code {
    fn value(self) -> HeaderValue {
        HeaderValue::from(self as u16)
    }

    /// The wire number.
    pub fn number(self) -> u32 {
        self as u32
    }
}

/// Whether `request` is a gRPC call: HTTP/2 with `content-type: application/grpc`,
/// alone or followed by `+format` or `;params`. gRPC-Web (`application/grpc-web`) is not:
/// its clients read errors from HTTP/1.1 bodies.
pub fn is_grpc(version: Version, headers: &HeaderMap) -> bool {
    if version != Version::HTTP_2 {
        return false;
    }
    let Some(rest) = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.as_bytes().strip_prefix(b"application/grpc"))
    else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// The `grpc-timeout` header's value (gRPC over HTTP/2: 1 to 8 ASCII digits and a unit,
/// `H`, `M`, `S`, `m`, `u` or `n`); `None` when absent or malformed, as gRPC servers
/// treat a malformed one as no deadline.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How long the proxy waits for response headers, all tries together; `None`: no limit.
///
/// HTTP: `timeouts.request` (zero: none). gRPC: the client's `grpc-timeout`, never
/// longer than `timeouts.grpcMaximum` when set; `timeouts.request` does not apply, since
/// a unary server sends its headers with its reply and the client already said how long
/// it allows.
pub fn limit(timeouts: &Timeouts, grpc: Option<Option<Duration>>) -> Option<Duration> {
    match grpc {
        None => (!timeouts.request.is_zero()).then_some(timeouts.request),
        Some(asked) => match (asked, timeouts.grpc_maximum) {
            (Some(a), Some(m)) => Some(a.min(m)),
            (a, m) => a.or(m),
        },
    }
}

/// The gRPC status for an error the proxy made (docs/routes.md, "gRPC").
pub fn code(error: &ProxyError) -> Code {
    match error {
        // A name that resolves to nothing is UNAVAILABLE to a gRPC client dialing
        // directly; UNIMPLEMENTED (what a 404 reads as) would blame a missing method.
        ProxyError::Resolve(ResolveError::Unresolved { .. }) => Code::Internal,
        ProxyError::Resolve(_)
        | ProxyError::ConnectFailed { .. }
        | ProxyError::UpstreamReset { .. }
        | ProxyError::UpgradeMismatch { .. }
        | ProxyError::UpgradeToHttp2 { .. } => Code::Unavailable,
        // Retry policies retry UNAVAILABLE: a pod that ran out the clock must not be
        // asked again as if it had been down.
        ProxyError::Timeout { .. }
        | ProxyError::TryTimeout { .. }
        | ProxyError::Deadline { .. } => Code::DeadlineExceeded,
        ProxyError::ClientBody { .. } => Code::Cancelled,
        ProxyError::TooManyHeaders { .. } => Code::ResourceExhausted,
        ProxyError::MissingHost
        | ProxyError::ConflictingFraming
        | ProxyError::ConnectMethod
        | ProxyError::UpgradeWithBody
        | ProxyError::UpgradeNotAllowed { .. } => Code::Internal,
    }
}

/// The trailers-only response for `error`: HTTP 200, `content-type: application/grpc`,
/// `grpc-status`, `grpc-message` (`<reason>: <message>`, percent-encoded) and
/// `fairway-error: <reason>`; no body.
pub fn error_response(error: &ProxyError) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Full(None));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, code(error).value());
    let message = match hint(error) {
        Some(hint) => format!("{}: {error}: {hint}", error.reason()),
        None => format!("{}: {error}", error.reason()),
    };
    let message = percent_encode(&message);
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.insert(FAIRWAY_ERROR, HeaderValue::from_static(error.reason()));
    response
}

/// The `grpc-status` of a trailers-only response (headers that end the stream, so no
/// response message was sent); `None` for any other response.
pub fn trailers_only_status(headers: &HeaderMap, end_of_stream: bool) -> Option<u32> {
    if !end_of_stream {
        return None;
    }
    grpc_status(headers)
}

/// What a pod's `grpc-retry-pushback-ms` asks of a retry (gRFC A6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushback {
    /// No header: retry at once.
    None,
    /// Wait this long before the retry.
    Wait(Duration),
    /// A negative or malformed value: the pod asks not to be retried.
    Refuse,
}

/// Reads `grpc-retry-pushback-ms`.
pub fn pushback(headers: &HeaderMap) -> Pushback {
    let Some(value) = headers.get(GRPC_RETRY_PUSHBACK_MS) else {
        return Pushback::None;
    };
    match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(ms) => Pushback::Wait(Duration::from_millis(ms)),
        None => Pushback::Refuse,
    }
}

/// What a gRPC call sent to a pod over HTTP/1.1 (a Route left on `HTTP1`, or `Auto`
/// without `appProtocol`) needs: gRPC servers speak HTTP/2 only.
const HTTP1_HINT: &str = "gRPC needs HTTP/2 to the pod, and this route spoke HTTP/1.1: set \
     spec.upstream.protocol: HTTP2 on the Route, or appProtocol: grpc on the Service port";

/// What to add to an error's message so the user can fix its cause.
fn hint(error: &ProxyError) -> Option<&'static str> {
    match error {
        ProxyError::UpstreamReset {
            source: UpstreamError::Http1(_),
            ..
        } => Some(HTTP1_HINT),
        _ => None,
    }
}

/// The trailers that end a gRPC response whose pod failed mid-stream: `UNAVAILABLE`, as
/// a client connected straight to the pod reports a broken connection.
pub fn broken_stream_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, Code::Unavailable.value());
    trailers.insert(
        GRPC_MESSAGE,
        HeaderValue::from_static("UpstreamReset: the pod's stream broke off"),
    );
    trailers.insert(FAIRWAY_ERROR, HeaderValue::from_static("UpstreamReset"));
    trailers
}

/// The trailers that end a gRPC response whose pod turned terminating and whose Route's
/// `drainTimeout` passed: `UNAVAILABLE`, which clients retry, and the pick sends the
/// retry to another pod.
pub fn drained_stream_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, Code::Unavailable.value());
    trailers.insert(
        GRPC_MESSAGE,
        HeaderValue::from_static(
            "Drained: the pod is terminating and the Route's drainTimeout passed",
        ),
    );
    trailers.insert(FAIRWAY_ERROR, HeaderValue::from_static("Drained"));
    trailers
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`
/// itself, as `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[path = "grpc/tests.rs"]
mod tests;
