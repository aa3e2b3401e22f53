//! Reading one request head off the front of the connection's buffer, and deciding
//! whether the fast loop may serve it. Pure: bytes in, a decision out.
//!
//! The fast loop takes the common shape only: HTTP/1.1, no `Transfer-Encoding`, at most
//! one `Content-Length` no larger than [`MAX_FAST_BODY`], no `Expect` or `Upgrade`, not
//! `CONNECT`; and it refuses an HTTP/1.1 head with both `Content-Length` and
//! `Transfer-Encoding` ([`Parsed::Conflicting`]). Everything else (HTTP/1.0, chunked uploads, malformed or oversized heads,
//! the HTTP/2 preface) is [`Parsed::Handoff`]: hyper serves the rest of the connection,
//! with the same answers (`400`, `431`, `405`, ...) it gave before this loop existed.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request, Uri, Version};

use crate::accept::DEFAULT_MAX_HEADERS;
use crate::fields::{Fields, Span, offset};
use crate::h1::has_token;
use crate::request::REPLAY_BUFFER_LIMIT;

/// Largest request body the fast loop reads in with its head; larger bodies stream
/// through hyper. The same bound as a retryable body: such a body is buffered anyway.
pub const MAX_FAST_BODY: u64 = REPLAY_BUFFER_LIMIT;

/// Header slots parsed in place; a head with more is handed off (hyper applies the
/// configured limit and answers `431`).
const SLOTS: usize = DEFAULT_MAX_HEADERS;

/// The limits a head is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head in bytes (`--max-header-bytes`).
    pub max_head: usize,
    /// Most header fields (`--max-headers`).
    pub max_headers: usize,
}

/// What the front of the buffer holds.
// Returned once per request and matched at once: boxing the head would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet: read more.
    Partial,
    /// A head the fast loop serves; it was removed from the buffer. `body` bytes of
    /// `Content-Length` body follow it.
    Request(Head),
    /// Not for the fast loop: hyper takes the connection from here, buffer untouched.
    Handoff,
    /// A head with both `Content-Length` and `Transfer-Encoding`, removed from the
    /// buffer: the loop answers `400 ConflictingFraming` and closes, reading no body.
    Conflicting(Head),
    /// A head httparse took but whose target `http` refuses; it was removed from the
    /// buffer, so the loop answers `400` and closes (as hyper does).
    Malformed,
}

/// A request head the fast loop serves.
#[derive(Debug)]
pub struct Head {
    /// Method, target and version; its `HeaderMap` starts empty (and allocates nothing
    /// unless the service has to edit the fields).
    pub request: Request<()>,
    /// The header fields as the client sent them (see [`crate::request::Replayable`]).
    pub fields: Fields,
    /// `Content-Length` of the body that follows (0: none).
    pub body: usize,
    /// The client asked to close after this exchange (`Connection: close`).
    pub close: bool,
}

/// Parses the head at the front of `buf`; see [`Parsed`].
pub fn parse(buf: &mut BytesMut, limits: Limits) -> Parsed {
    // Uninitialised slots: a fresh `[EMPTY_HEADER; 100]` would write 3 KiB per request.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; SLOTS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= limits.max_head => len,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_head => return Parsed::Partial,
        // Too large, too many headers, malformed: hyper's answer, as before.
        _ => return Parsed::Handoff,
    };
    if request.version != Some(1) || request.headers.len() > limits.max_headers {
        return Parsed::Handoff;
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Parsed::Handoff;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Handoff;
    };
    if method == Method::CONNECT {
        return Parsed::Handoff;
    }
    let mut body = 0;
    let mut lengths = 0;
    let mut close = false;
    // Any `Transfer-Encoding`, and anything else the loop leaves to hyper; decided after
    // every field was seen, so a `Content-Length` with it is caught in any order.
    let mut coded = false;
    let mut unusual = false;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            match parse_length(header.value) {
                Some(n) if n <= MAX_FAST_BODY => body = n as usize,
                _ => unusual = true,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(header.value, b"close");
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str().as_bytes()) {
            coded = true;
        } else if [EXPECT, UPGRADE]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            unusual = true;
        }
    }
    // Both framings (CL.TE, TE.CL): answered `400` here, before any body byte is read,
    // so no second parser has to look for them (RFC 9112 §6.1 allows the rejection).
    let conflicting = coded && lengths > 0;
    if !conflicting && (coded || unusual || lengths > 1) {
        return Parsed::Handoff;
    }
    let target = (offset(buf, target.as_bytes()), target.len());
    let spans: Vec<Span> = request
        .headers
        .iter()
        .map(|header| Span::of(buf, header))
        .collect();
    let head = buf.split_to(len).freeze();
    let Some(request) = build(method, &head, target) else {
        return Parsed::Malformed;
    };
    let fields = Fields::new(head, spans);
    if conflicting {
        return Parsed::Conflicting(Head {
            request,
            fields,
            body: 0,
            close: true,
        });
    }
    Parsed::Request(Head {
        request,
        fields,
        body,
        close,
    })
}

/// The request line as a request, the target a zero-copy slice of `head`. `None` when
/// the target is one `http` refuses although httparse took it. The header fields stay
/// raw (httparse checked names are tokens and values visible ASCII, obs-text, spaces
/// and tabs).
fn build(method: Method, head: &Bytes, target: (usize, usize)) -> Option<Request<()>> {
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    Some(request)
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), no sign, no list.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
