//! Which protocol a captured connection speaks, from its first bytes: HTTP/1.x (a
//! request line), HTTP/2 with prior knowledge (the connection preface) or anything else,
//! which is passed through untouched.
//!
//! [`detect`] decides from the bytes read so far and is pure; [`sniff`] reads until it
//! decides, under one deadline, because a server-speaks-first protocol (MySQL, SMTP)
//! sends nothing until the server's greeting: waiting longer would stall it.
//! Modelled on linkerd2-proxy's `detect` (peek with a deadline, fall back to opaque TCP).

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface a prior-knowledge client sends first (RFC 9113 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest request line waited for. A longer first line is not refused: it is
/// passed through, so no client breaks because of detection.
pub const MAX_REQUEST_LINE: usize = 8192;

/// Longest method token: every registered method is under 20 bytes, so a longer first
/// word is some other protocol, known before a whole line arrives.
const MAX_METHOD: usize = 24;

/// The first read's buffer: a request line and usually its whole head fit.
const READ_CHUNK: usize = 4096;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.0 or HTTP/1.1 request line.
    Http1,
    /// The HTTP/2 prior-knowledge preface.
    Http2,
    /// Anything else, including nothing before the deadline or the client's end.
    Opaque,
}

/// [`detect`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detect {
    Known(Protocol),
    /// Every byte so far fits HTTP: more are needed to tell.
    NeedMore,
}

/// The protocol `buf` (a connection's first bytes) speaks, or [`Detect::NeedMore`] while
/// the bytes are a prefix of an HTTP/1 request line or of the HTTP/2 preface.
pub fn detect(buf: &[u8]) -> Detect {
    let shared = buf.len().min(H2_PREFACE.len());
    if buf[..shared] == H2_PREFACE[..shared] {
        return if buf.len() >= H2_PREFACE.len() {
            Detect::Known(Protocol::Http2)
        } else {
            Detect::NeedMore
        };
    }
    request_line(buf)
}

/// Where the request-line scan is (RFC 9112 3: method SP request-target SP version).
#[derive(Clone, Copy)]
enum Part {
    Method,
    Target,
    /// Bytes of the version matched so far.
    Version(usize),
    /// After the version: only the line's end may follow.
    Cr,
}

fn request_line(buf: &[u8]) -> Detect {
    const VERSION: &[u8] = b"HTTP/1.";
    let opaque = Detect::Known(Protocol::Opaque);
    let mut part = Part::Method;
    let mut start = 0;
    for (i, &b) in buf.iter().enumerate() {
        part = match part {
            Part::Method if b == b' ' && i > 0 => {
                start = i + 1;
                Part::Target
            }
            Part::Method if is_tchar(b) && i < MAX_METHOD => Part::Method,
            Part::Target if b == b' ' && i > start => Part::Version(0),
            // Visible ASCII only: a control byte or obs-text is no request-target.
            Part::Target if (0x21..0x7f).contains(&b) => Part::Target,
            Part::Version(n) if n < VERSION.len() && b == VERSION[n] => Part::Version(n + 1),
            Part::Version(n) if n == VERSION.len() && matches!(b, b'0' | b'1') => Part::Cr,
            Part::Cr if b == b'\r' => Part::Cr,
            // A bare LF ends a line too (RFC 9112 2.2 lets a recipient accept it).
            Part::Cr if b == b'\n' => return Detect::Known(Protocol::Http1),
            _ => return opaque,
        };
        // Only one CR may stand before the LF.
        if matches!(part, Part::Cr) && b == b'\r' && buf.get(i.wrapping_sub(1)) == Some(&b'\r') {
            return opaque;
        }
    }
    if buf.len() >= MAX_REQUEST_LINE {
        opaque
    } else {
        Detect::NeedMore
    }
}

/// RFC 9110 5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The largest first request head read to learn where it goes; a larger one is passed
/// through, never refused.
pub const MAX_FIRST_HEAD: usize = 16 * 1024;

/// Header fields parsed in a first head; more makes it [`FirstRequest::Unroutable`].
const MAX_FIRST_FIELDS: usize = 64;

/// Where the first request of an HTTP connection goes, from its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstRequest {
    /// The head is complete: the authority (an absolute-form target's, else `Host`) and
    /// the path to route by.
    Routable { authority: String, path: String },
    /// More bytes are needed.
    Partial,
    /// No authority, a malformed or oversized head: nothing to route by.
    Unroutable,
}

/// The first request in `buf` (a connection's first bytes), parsed with httparse.
pub fn first_request(buf: &[u8]) -> FirstRequest {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIRST_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_FIRST_HEAD => FirstRequest::Partial,
        Ok(httparse::Status::Partial) | Err(_) => FirstRequest::Unroutable,
        Ok(httparse::Status::Complete(_)) => {
            let target = request.path.unwrap_or("/");
            // Absolute form (`GET http://orders.shop/x`): its authority wins over `Host`.
            if let Ok(uri) = target.parse::<http::Uri>()
                && let Some(authority) = uri.authority()
            {
                return FirstRequest::Routable {
                    authority: authority.as_str().to_owned(),
                    path: uri.path().to_owned(),
                };
            }
            let host = request
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("host"))
                .and_then(|f| std::str::from_utf8(f.value).ok());
            match host {
                Some(host) => FirstRequest::Routable {
                    authority: host.trim().to_owned(),
                    path: target.to_owned(),
                },
                None => FirstRequest::Unroutable,
            }
        }
    }
}

/// What [`sniff`] learnt about a connection.
#[derive(Debug)]
pub struct Sniffed {
    pub protocol: Protocol,
    /// For HTTP/1 and HTTP/2: where the first request goes ([`FirstRequest::Partial`]
    /// when the deadline or the client's end came first). For the rest: `Unroutable`.
    pub first: FirstRequest,
    /// Every byte read, which the caller must send on first.
    pub read: BytesMut,
}

/// Reads from `io` until [`detect`] decides and, for HTTP/1 and HTTP/2, until the first
/// request's head is complete; the client ending its side or `timeout` passing ends the wait
/// (undecided bytes are [`Protocol::Opaque`]). An error is the client's connection
/// failing before that.
pub async fn sniff<R: AsyncRead + Unpin>(io: &mut R, timeout: Duration) -> io::Result<Sniffed> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut read = BytesMut::with_capacity(READ_CHUNK);
    let mut protocol = None;
    loop {
        if protocol.is_none()
            && let Detect::Known(known) = detect(&read)
        {
            protocol = Some(known);
        }
        let first = match protocol {
            Some(Protocol::Http1) => Some(first_request(&read)),
            Some(Protocol::Http2) => Some(super::h2_first::first_request(&read)),
            _ => None,
        };
        match (protocol, first) {
            (Some(_), Some(FirstRequest::Partial)) => {}
            (Some(protocol), Some(first)) => {
                return Ok(Sniffed {
                    protocol,
                    first,
                    read,
                });
            }
            (Some(protocol), None) => {
                let first = FirstRequest::Unroutable;
                return Ok(Sniffed {
                    protocol,
                    first,
                    read,
                });
            }
            (None, _) => {}
        }
        if read.capacity() == read.len() {
            read.reserve(READ_CHUNK);
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut read)).await {
            Ok(Ok(0)) | Err(_) => {
                let protocol = protocol.unwrap_or(Protocol::Opaque);
                let first = match protocol {
                    Protocol::Http1 | Protocol::Http2 => FirstRequest::Partial,
                    Protocol::Opaque => FirstRequest::Unroutable,
                };
                return Ok(Sniffed {
                    protocol,
                    first,
                    read,
                });
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
    }
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
