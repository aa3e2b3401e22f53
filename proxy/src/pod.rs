//! One try: shape the request for the picked endpoint's protocol, take a connection
//! from that endpoint's pool, send, and wait for response headers.

use fairway_proto::model::EndpointAddr;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};

use crate::h1;
use crate::headers;
use crate::pool::{ConnSettings, ConnectError, Pools, Sender};
use crate::request::{RawFields, UpstreamBody};
use crate::response::ProxyBody;

/// Why a try produced no response. Where the request is afterwards is [`send`]'s to say.
#[derive(Debug)]
pub enum TryError {
    /// No connection to the endpoint; the request is untouched.
    Connect(ConnectError),
    /// Nothing reached the pod: the request (back in its slot) may go elsewhere whatever
    /// its method.
    NotSent(UpstreamError),
    /// Sent (at least partly), then the connection failed before response headers.
    Sent(UpstreamError),
    /// The client's request body broke off while it was being sent: not the pod's fault.
    ClientBody(hyper::Error),
    /// No response headers within the route's per-try timeout; the request went with
    /// the abandoned try.
    TimedOut(std::time::Duration),
}

impl TryError {
    /// The variant's name, for traces.
    pub fn name(&self) -> &'static str {
        match self {
            TryError::Connect(_) => "Connect",
            TryError::NotSent(_) => "NotSent",
            TryError::Sent(_) => "Sent",
            TryError::ClientBody(_) => "ClientBody",
            TryError::TimedOut(_) => "TimedOut",
        }
    }
}

/// A failed exchange with a pod, by protocol.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Http1(h1::Error),
    #[error(transparent)]
    Http2(hyper::Error),
    /// The HTTP/1.1 exchange of an upgrade (its own connection, hyper's client).
    #[error(transparent)]
    Upgrade(hyper::Error),
}

/// The pool seam: where one try goes. The proxy sends over its per-endpoint [`Pools`];
/// the request service's unit tests send to a recording fake (`forward/fake.rs`), so
/// retries, errors and what reaches a pod are tested without sockets. Generic, not
/// `dyn`: the request path pays no allocation or indirect call for the seam.
pub trait Upstream: Send + Sync + 'static {
    /// One try of the request in `slot` at `addr`; the contract of [`send`].
    fn send(
        &self,
        addr: EndpointAddr,
        settings: &ConnSettings,
        slot: &mut Option<Request<UpstreamBody>>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, TryError>> + Send;
}

impl Upstream for Pools {
    fn send(
        &self,
        addr: EndpointAddr,
        settings: &ConnSettings,
        slot: &mut Option<Request<UpstreamBody>>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, TryError>> + Send {
        send(self, addr, settings, slot)
    }
}

/// Sends the request in `slot` to `addr` over its pool and returns the response, whose
/// body holds the connection's lease while it streams.
///
/// HTTP/1.1 only borrows the request: it stays in `slot` whatever happens, for a retry
/// without a copy (a streamed body is spent once sent, which the retry rules check).
/// hyper's HTTP/2 takes it, and gives it back into `slot` only when nothing was sent.
/// An empty `slot` (the caller has nothing to send) is `NotSent`.
pub async fn send(
    pools: &Pools,
    addr: EndpointAddr,
    settings: &ConnSettings,
    slot: &mut Option<Request<UpstreamBody>>,
) -> Result<Response<ProxyBody>, TryError> {
    let mut lease = pools
        .checkout(addr, settings)
        .await
        .map_err(TryError::Connect)?;
    match lease.sender() {
        Sender::Http1(conn) => {
            let Some(request) = slot.as_mut() else {
                return Err(TryError::NotSent(UpstreamError::Http1(h1::Error::Closed)));
            };
            shape_http1(request);
            let version = request.version();
            match h1::send(conn, request).await {
                Ok((head, framing)) => {
                    // The fields stay raw in the body (see `ProxyBody::fields`).
                    let mut response = Response::new(ProxyBody::http1(lease, framing, head.fields));
                    *response.status_mut() = head.status;
                    *response.version_mut() = version;
                    Ok(response)
                }
                Err(h1::SendError::NotSent(error)) => {
                    Err(TryError::NotSent(UpstreamError::Http1(error)))
                }
                Err(h1::SendError::Sent(h1::Error::RequestBody(error))) => {
                    Err(TryError::ClientBody(error))
                }
                Err(h1::SendError::Sent(error)) => Err(TryError::Sent(UpstreamError::Http1(error))),
            }
        }
        Sender::Http2(sender) => {
            let Some(mut request) = slot.take() else {
                return Err(TryError::NotSent(UpstreamError::Http1(h1::Error::Closed)));
            };
            // hyper's HTTP/2 writes a map: the client's raw fields go into it first.
            if let Some(raw) = request.body_mut().take_raw() {
                let client = raw.forwarded_for.as_ref();
                headers::edit_request(request.headers_mut(), Some(&raw.fields), client);
            }
            shape_http2(&mut request);
            match sender.try_send_request(request).await {
                Ok(response) => Ok(response.map(|body| ProxyBody::upstream(body, lease))),
                Err(mut error) => match error.take_message() {
                    Some(request) => {
                        *slot = Some(request);
                        Err(TryError::NotSent(UpstreamError::Http2(error.into_error())))
                    }
                    None if error.error().is_user() => {
                        Err(TryError::ClientBody(error.into_error()))
                    }
                    None => Err(TryError::Sent(UpstreamError::Http2(error.into_error()))),
                },
            }
        }
    }
}

/// The host the request is for: an absolute URI's authority (also where HTTP/2's
/// `:authority` lands), else the `Host` header, in the map or among the raw fields.
pub fn authority_of<B: RawFields>(request: &Request<B>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str());
    }
    if let Some(host) = request.headers().get(HOST) {
        return host.to_str().ok();
    }
    let host = request.body().fields()?.get_all("host").next()?;
    // What `HeaderValue::to_str` accepts: visible ASCII and spaces.
    std::str::from_utf8(host)
        .ok()
        .filter(|h| h.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
}

/// HTTP/1.1 upstream: origin-form URI, and a `Host` header naming the authority the
/// client asked for (RFC 9112 §3.2.2: an absolute URI's authority overrides `Host`).
fn shape_http1(request: &mut Request<UpstreamBody>) {
    *request.version_mut() = Version::HTTP_11;
    let uri = request.uri();
    if let Some(authority) = uri.authority() {
        let host = HeaderValue::from_str(authority.as_str());
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if let Ok(host) = host {
            request.headers_mut().insert(HOST, host);
        }
        *request.uri_mut() = Uri::from(path);
    }
}

/// HTTP/2 upstream: `:scheme`, `:authority` and `:path` from an absolute URI (hyper
/// requires it); `Host` goes, its value now being `:authority`.
fn shape_http2(request: &mut Request<UpstreamBody>) {
    *request.version_mut() = Version::HTTP_2;
    if request.uri().authority().is_none() {
        let authority = request
            .headers()
            .get(HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok());
        if let Some(authority) = authority {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(authority);
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    } else if request.uri().scheme().is_none() {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request.headers_mut().remove(HOST);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<UpstreamBody> {
        let mut r = Request::new(UpstreamBody::empty());
        *r.uri_mut() = uri.parse().expect("uri");
        if let Some(h) = host {
            r.headers_mut()
                .insert(HOST, HeaderValue::from_str(h).expect("host"));
        }
        r
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_host() {
        let mut r = request("http://orders.shop:8080/x?y=1", Some("other"));
        shape_http1(&mut r);
        assert_eq!(r.uri(), "/x?y=1");
        assert_eq!(r.headers()[HOST], "orders.shop:8080");
        assert_eq!(authority_of(&r), Some("orders.shop:8080"));
    }

    #[test]
    fn http2_gets_an_absolute_uri_and_no_host() {
        let mut r = request("/x", Some("orders.shop"));
        shape_http2(&mut r);
        assert_eq!(r.uri(), "http://orders.shop/x");
        assert!(!r.headers().contains_key(HOST));
        assert_eq!(authority_of(&r), Some("orders.shop"));
        // And back to HTTP/1.1 on a retry that picked an HTTP/1.1 endpoint.
        shape_http1(&mut r);
        assert_eq!(r.uri(), "/x");
        assert_eq!(r.headers()[HOST], "orders.shop");
    }
}
