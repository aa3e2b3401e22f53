//! Writing a response to the client over HTTP/1.1: how its body is framed (pure), the
//! head (pure), then the body as the pod sends it, with backpressure.
//!
//! Head and the body's first bytes leave in one write when the body is already there
//! (the usual case: the pod's head and body arrived together); after that, whatever is
//! buffered is written whenever the body has nothing ready, so the client never waits
//! on bytes the proxy holds.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut as _, BytesMut};
use http::header::{CONTENT_LENGTH, DATE};
use http::{Response, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::h1::{chunk, last_chunk, put_fields, put_framing};
use crate::headers::ResponseHops;
use crate::response::{BoxError, ProxyBody};

/// Buffered response bytes past which they are written before more is taken from the
/// pod: bounds memory per slow client (the pod waits, as with nginx's buffers).
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// How the response body is delimited on the wire: no body (a `HEAD` request; `1xx`,
/// `204`, `304`), `Content-Length` (the pod's own, or the body's known size), or chunked
/// (the size being unknown; trailers go at its end). The same three ways as a request's.
pub(crate) use crate::h1::BodyFraming as Framing;

/// The framing for `response` to a request that was (`head`) or was not a `HEAD`.
/// A `Content-Length` the pod sent is kept; a known size gets one; else chunked.
pub fn framing(head: bool, response: &Response<ProxyBody>) -> Framing {
    let status = response.status();
    if head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    // An HTTP/1.1 pod's own Content-Length is its body's exact size (the decoder's).
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared.or_else(|| response.body().size_hint().exact()) {
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// Appends the status line and headers, with `framing`'s header in place of any the
/// response carried, a `Date` when it has none, and `Connection: close` when `close`.
pub fn head(response: &Response<ProxyBody>, framing: Framing, close: bool, buf: &mut BytesMut) {
    let status = response.status();
    buf.reserve(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.put_slice(b"\r\n");
    // A HEAD response keeps the pod's Content-Length: it describes the GET's body.
    let keep_length = framing == Framing::None;
    put_fields(response.headers(), buf, !keep_length);
    let mut dated = response.headers().contains_key(DATE);
    if let Some(fields) = response.body().fields() {
        // An HTTP/1.1 pod's fields, each line copied as it came, less the hop-by-hop ones.
        let hops = ResponseHops::of(fields);
        for (name, line) in fields.lines() {
            if hops.contains(name) || (!keep_length && name.eq_ignore_ascii_case(b"content-length"))
            {
                continue;
            }
            dated |= name.eq_ignore_ascii_case(b"date");
            buf.put_slice(line);
            buf.put_slice(b"\r\n");
        }
    }
    put_framing(framing, buf);
    if !dated {
        buf.put_slice(b"date: ");
        put_date(buf);
        buf.put_slice(b"\r\n");
    }
    if close {
        buf.put_slice(b"connection: close\r\n");
    }
    buf.put_slice(b"\r\n");
}

/// Why writing a response stopped; the connection closes either way.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing to the client: {0}")]
    Write(#[source] std::io::Error),
    #[error("the pod's body failed: {0}")]
    Body(#[source] BoxError),
    #[error("the body did not match its Content-Length of {declared} bytes")]
    Length { declared: u64 },
}

/// Writes `response` (head, then body) to `out`, using `buf` as the write buffer.
pub async fn write<W: AsyncWrite + Unpin>(
    out: &mut W,
    buf: &mut BytesMut,
    response: Response<ProxyBody>,
    head_request: bool,
    close: bool,
) -> Result<(), WriteError> {
    let framing = framing(head_request, &response);
    buf.clear();
    head(&response, framing, close, buf);
    let mut body = response.into_body();
    // The declared length (none: chunked) and how much of the body went out.
    let declared = match framing {
        Framing::None => {
            // Dropping the body ends the pod's exchange (its connection goes back to the
            // pool or closes, per its framing).
            drop(body);
            return flush(out, buf).await;
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    let mut written = 0u64;
    let mut trailers = None;
    loop {
        // Take what is ready without waiting; write out before waiting for more.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                flush(out, buf).await?;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(WriteError::Body)?;
        match frame.into_data() {
            Ok(data) => match declared {
                Some(declared) => {
                    written += data.len() as u64;
                    if written > declared {
                        return Err(WriteError::Length { declared });
                    }
                    buf.put_slice(&data);
                }
                None => chunk(&data, buf),
            },
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
        if buf.len() >= WRITE_HIGH_WATER {
            flush(out, buf).await?;
        }
    }
    match declared {
        Some(declared) if written != declared => return Err(WriteError::Length { declared }),
        Some(_) => {}
        None => last_chunk(trailers.as_ref(), buf),
    }
    flush(out, buf).await
}

async fn flush<W: AsyncWrite + Unpin>(out: &mut W, buf: &mut BytesMut) -> Result<(), WriteError> {
    if !buf.is_empty() {
        out.write_all(buf).await.map_err(WriteError::Write)?;
        buf.clear();
    }
    Ok(())
}

thread_local! {
    /// The `Date` value, formatted once a second per thread.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn put_date(buf: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == 29 {
                cache.1.copy_from_slice(formatted.as_bytes());
                cache.0 = second;
            }
        }
        buf.put_slice(&cache.1);
    });
}

/// The `400` for a head whose request target `http` refused, closing the connection
/// (hyper answers the same head `400` too, with an empty body).
pub fn bad_request(buf: &mut BytesMut) {
    const BODY: &str = "MalformedRequest: the request target is not a valid URI\n";
    buf.clear();
    let _ = write!(
        buf.writer(),
        "HTTP/1.1 400 Bad Request\r\nfairway-error: MalformedRequest\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
}

#[cfg(test)]
#[path = "respond_tests.rs"]
mod tests;
