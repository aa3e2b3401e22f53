//! Writing a request to a pod over HTTP/1.1: the head, and the body's framing. Pure:
//! everything goes into a buffer the connection then writes in one go.

use std::io::Write as _;

use bytes::{BufMut, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request};

use crate::fields::is_hop_by_hop;
use crate::request::{RawFields as _, UpstreamBody};

/// How a message body is delimited on the wire (a request's here; the downstream
/// writer uses it for responses too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body and no header saying so (GET, HEAD, ...).
    None,
    Length(u64),
    Chunked,
}

/// The framing for `request`: a known size goes as `Content-Length`, trailers or an
/// unknown size as chunked. An empty body says `Content-Length: 0` only where a body is
/// expected (POST, PUT, PATCH) or the client said so itself.
pub fn framing(request: &Request<UpstreamBody>) -> Framing {
    let body = request.body();
    if body.has_trailers() {
        return Framing::Chunked;
    }
    match http_body::Body::size_hint(body).exact() {
        Some(0) => {
            let expects_body = matches!(
                *request.method(),
                Method::POST | Method::PUT | Method::PATCH
            );
            let said = request.headers().contains_key(CONTENT_LENGTH)
                || request
                    .body()
                    .fields()
                    .is_some_and(|f| f.get_all("content-length").next().is_some());
            if expects_body || said {
                Framing::Length(0)
            } else {
                Framing::None
            }
        }
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// Appends the request line and headers (origin-form target, the caller having set
/// `Host`) with `framing`'s header in place of any the client sent. The client's raw
/// fields, if the request carries them, are copied line by line, less the fixed
/// hop-by-hop ones (the service checked nothing else in them needs editing).
pub fn head(request: &Request<UpstreamBody>, framing: Framing, buf: &mut BytesMut) {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    buf.reserve(256);
    buf.put_slice(request.method().as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    if let Some(raw) = request.body().raw() {
        for (name, line) in raw.fields.lines() {
            if !is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"content-length") {
                buf.put_slice(line);
                buf.put_slice(b"\r\n");
            }
        }
        if let Some(client) = &raw.forwarded_for {
            buf.put_slice(b"x-forwarded-for: ");
            buf.put_slice(client.as_bytes());
            buf.put_slice(b"\r\nx-forwarded-proto: http\r\n");
        }
    }
    put_fields(request.headers(), buf, true);
    put_framing(framing, buf);
    buf.put_slice(b"\r\n");
}

/// Appends the header line `framing` calls for (none for [`Framing::None`]). Shared with
/// the downstream response writer, whose bodies are framed the same three ways.
pub(crate) fn put_framing(framing: Framing, buf: &mut BytesMut) {
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            buf.put_slice(b"content-length: ");
            // itoa, not `write!`: the formatting machinery costs more than the digits.
            buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
            buf.put_slice(b"\r\n");
        }
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// Appends `headers` as `name: value` lines, without the framing headers when
/// `skip_framing` (the caller writes its own).
pub(crate) fn put_fields(headers: &HeaderMap, buf: &mut BytesMut, skip_framing: bool) {
    for (name, value) in headers {
        if skip_framing && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
}

/// Appends one chunk of a chunked body (empty data writes nothing: a zero-size chunk
/// would end the body).
pub fn chunk(data: &[u8], buf: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    let _ = write!(buf.writer(), "{:x}\r\n", data.len());
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

/// Appends the last chunk and the trailers, ending a chunked body.
pub fn last_chunk(trailers: Option<&HeaderMap>, buf: &mut BytesMut) {
    buf.put_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        put_fields(trailers, buf, true);
    }
    buf.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderValue;
    use http::header::HOST;

    use super::*;
    use crate::request::Replayable;

    fn request(method: Method, body: UpstreamBody) -> Request<UpstreamBody> {
        let mut r = Request::new(body);
        *r.method_mut() = method;
        *r.uri_mut() = "/a?b=1".parse().expect("uri");
        r.headers_mut()
            .insert(HOST, HeaderValue::from_static("orders.shop"));
        r
    }

    fn replayable(data: &'static str, trailers: Option<HeaderMap>) -> UpstreamBody {
        UpstreamBody::Replayable(Replayable::new(Bytes::from(data), trailers))
    }

    #[test]
    fn heads_carry_exactly_one_framing_header() {
        let mut r = request(Method::POST, replayable("hello", None));
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        r.headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let mut buf = BytesMut::new();
        head(&r, framing(&r), &mut buf);
        assert_eq!(
            &buf[..],
            b"POST /a?b=1 HTTP/1.1\r\nhost: orders.shop\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn framing_per_body() {
        assert_eq!(
            framing(&request(Method::GET, UpstreamBody::empty())),
            Framing::None
        );
        assert_eq!(
            framing(&request(Method::PUT, UpstreamBody::empty())),
            Framing::Length(0)
        );
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("1"));
        let r = request(Method::POST, replayable("abc", Some(trailers)));
        assert_eq!(framing(&r), Framing::Chunked);
    }

    #[test]
    fn chunks_and_trailers() {
        let mut buf = BytesMut::new();
        chunk(b"hello world!!!!!", &mut buf);
        chunk(b"", &mut buf);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("1"));
        last_chunk(Some(&trailers), &mut buf);
        assert_eq!(&buf[..], b"10\r\nhello world!!!!!\r\n0\r\nx-sum: 1\r\n\r\n");
    }
}
