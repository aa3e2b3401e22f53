//! What the pod gets and what the client gets back, for each pairing of the client's
//! way of asking (HTTP/1.1 `Upgrade`, or an HTTP/2 extended CONNECT) and the pod's
//! protocol (HTTP/1.1, or HTTP/2 with extended CONNECT). Pure.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CONNECTION, HOST, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use super::{Via, name_of, tokens};
use crate::headers;
use crate::request::UpstreamBody;
use crate::response::ProxyBody;

/// RFC 6455 section 1.3: appended to the key before hashing it into the accept value.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn is_websocket(protocol: &str) -> bool {
    name_of(protocol).eq_ignore_ascii_case("websocket")
}

/// The client's fields less hop-by-hop ones, with `X-Forwarded-*`.
fn forwarded_fields(parts: &http::request::Parts, client: &HeaderValue) -> HeaderMap {
    let mut headers = parts.headers.clone();
    headers::edit_request(&mut headers, None, Some(client));
    headers.remove(HOST);
    headers
}

fn path_of(parts: &http::request::Parts) -> PathAndQuery {
    parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// The request an HTTP/1.1 pod gets: the client's head less its hop-by-hop fields, with
/// `X-Forwarded-*`, `Host`, and the upgrade asked for again. An extended CONNECT becomes
/// the HTTP/1.1 WebSocket handshake it stands for (RFC 8441 section 5), with a key of
/// our own (HTTP/2 clients send none).
pub fn http1_request(
    parts: &http::request::Parts,
    authority: &str,
    protocol: &str,
    via: Via,
    client: &HeaderValue,
) -> Request<UpstreamBody> {
    let mut headers = forwarded_fields(parts, client);
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
            if is_websocket(protocol) {
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
    let mut request = Request::new(UpstreamBody::empty());
    *request.method_mut() = method;
    *request.uri_mut() = Uri::from(path_of(parts));
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// The request an HTTP/2 pod gets: an extended CONNECT (RFC 8441 section 4) with
/// `:protocol`, and the client's fields less hop-by-hop ones and less the HTTP/1.1
/// handshake's key, which HTTP/2 does not use.
pub fn http2_request(
    parts: &http::request::Parts,
    authority: &str,
    protocol: &str,
    client: &HeaderValue,
) -> Option<Request<UpstreamBody>> {
    let mut headers = forwarded_fields(parts, client);
    headers.remove(SEC_WEBSOCKET_KEY);
    if is_websocket(protocol) && !headers.contains_key(SEC_WEBSOCKET_VERSION) {
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(Authority::try_from(authority).ok()?);
    uri.path_and_query = Some(path_of(parts));
    let mut request = Request::new(UpstreamBody::empty());
    *request.method_mut() = Method::CONNECT;
    *request.uri_mut() = Uri::from_parts(uri).ok()?;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    // Sent as `:protocol`, lowercase as RFC 8441's registry names it.
    request.extensions_mut().insert(hyper::ext::Protocol::from(
        protocol.to_ascii_lowercase().as_str(),
    ));
    Some(request)
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 section 4.1).
fn websocket_key() -> HeaderValue {
    let key: [u8; 16] = rand::random();
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Sec-WebSocket-Accept` for a client's `key` (RFC 6455 section 4.2.2): what an HTTP/1.1
/// client checks, which an HTTP/2 pod does not send.
pub fn websocket_accept(key: &[u8]) -> HeaderValue {
    let mut input = key.to_vec();
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let encoded = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Checks that an HTTP/1.1 pod's `101` switched to `protocol`; the error is what the pod
/// named instead.
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

/// What the client gets once the pod switched: `101` with the upgrade for an HTTP/1.1
/// client, `200` for an extended CONNECT (RFC 8441 section 5), with the pod's fields less
/// hop-by-hop ones and less the other protocol's handshake fields. `client_key` is the
/// HTTP/1.1 client's `Sec-WebSocket-Key`, answered here when the pod spoke HTTP/2.
pub fn client_response(
    pod: &HeaderMap,
    pod_http2: bool,
    via: Via,
    protocol: &str,
    client_key: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    let mut headers = pod.clone();
    let upgrade = headers.get(UPGRADE).cloned();
    headers::strip_response(&mut headers);
    let mut response = Response::new(ProxyBody::full(Bytes::new()));
    match via {
        Via::Http1 => {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            let upgrade = upgrade.or_else(|| HeaderValue::from_str(protocol).ok());
            if let Some(upgrade) = upgrade {
                headers.insert(UPGRADE, upgrade);
            }
            if pod_http2
                && is_websocket(protocol)
                && let Some(key) = client_key
            {
                headers.insert(SEC_WEBSOCKET_ACCEPT, websocket_accept(key.as_bytes()));
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
