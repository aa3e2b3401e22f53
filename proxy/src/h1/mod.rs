//! Fairway's own HTTP/1.1 client side, for the pods.
//!
//! Why not hyper's client here: hyper drives each upstream connection from a task of its
//! own, so every request crosses a channel to that task and its response comes back over
//! a oneshot and a body channel: two extra task wake-ups and several allocations per
//! request, on the path that runs for every request. Here the request's own task writes
//! the request, and the downstream connection reads the response body straight from the
//! pod's socket (the response module's `ProxyBody`), the way pingora and nginx do it.
//! HTTP/2 to pods (h2c, gRPC) stays on hyper, whose multiplexing needs a task anyway.
//!
//! One limit, on purpose: a streamed request body is written to the end before the
//! response is read, so a pod that answers early (a `413` mid-upload) and stops reading
//! leaves the request to its timeout. Bodies that may be retried are small and go in the
//! same write as the head.
//!
//! Where to start: [`send`]; `encode` (request head and body framing) and `decode`
//! (response head, framing rules, body decoder) are pure and tested on bytes.

mod decode;
mod encode;
mod stream;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut as _, BytesMut};
use http::Request;
use http_body::Body as _;
use tokio::io::AsyncWriteExt as _;

pub(crate) use decode::has_token;
pub use decode::{
    BodyKind, Decoded, Decoder, Framing, Head, MAX_RESPONSE_HEAD, ends_in_chunked, parse_head,
};
pub(crate) use encode::{Framing as BodyFraming, chunk, last_chunk, put_fields, put_framing};
pub use stream::PodStream;

use crate::request::UpstreamBody;

/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange with a pod failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the request: {0}")]
    Write(#[source] io::Error),
    #[error("reading the response: {0}")]
    Read(#[source] io::Error),
    #[error("the pod closed the connection before the response was complete")]
    Closed,
    #[error("the response head is larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("parsing the response: {0}")]
    Parse(#[source] httparse::Error),
    #[error("malformed response: {0}")]
    Framing(&'static str),
    #[error("reading the client's request body: {0}")]
    RequestBody(#[source] hyper::Error),
}

/// How a failed [`send`] ended: before anything was written (the pod saw nothing, so
/// the request may go to another pod whatever its method), or after.
#[derive(Debug)]
pub enum SendError {
    NotSent(Error),
    Sent(Error),
}

/// One pooled connection to a pod: the socket and its buffers, reused request after
/// request.
#[derive(Debug)]
pub struct Conn {
    stream: PodStream,
    /// Response bytes read but not yet consumed.
    pub(crate) read: BytesMut,
    write: BytesMut,
}

impl Conn {
    pub fn new(stream: PodStream) -> Self {
        Conn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: BytesMut::with_capacity(1024),
        }
    }

    /// Whether the pod closed the connection (or sent something unasked) while it sat
    /// idle (see [`PodStream::is_closed`]).
    pub fn is_closed(&mut self) -> bool {
        self.stream.is_closed()
    }

    /// Pushes out what rustls still holds of the request. A plain socket holds nothing,
    /// so only TLS pays for the call.
    async fn flush_tls(&mut self) -> io::Result<()> {
        match self.stream {
            PodStream::Plain(_) => Ok(()),
            PodStream::Tls(_) => self.stream.flush().await,
        }
    }

    /// Reads more of the response into the buffer; `Ok(0)` is the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// Writes `request` (origin-form URI and `Host` already set) and reads the response
/// head, skipping interim 1xx responses. The body then streams from `conn.read` and the
/// socket, decoded by a [`Decoder`] for the returned framing.
///
/// The request is only borrowed: a replayable body stays for a retry without a copy; a
/// streamed body is read in place, after which it is no longer replayable.
pub async fn send(
    conn: &mut Conn,
    request: &mut Request<UpstreamBody>,
) -> Result<(Head, Framing), SendError> {
    let framing = encode::framing(request);
    let chunked = framing == encode::Framing::Chunked;
    conn.write.clear();
    encode::head(request, framing, &mut conn.write);
    let streamed = match request.body() {
        UpstreamBody::Replayable(body) => {
            // Small and in memory: head and body leave in one write.
            if let Some(data) = body.data() {
                if chunked {
                    encode::chunk(data, &mut conn.write);
                } else {
                    conn.write.put_slice(data);
                }
            }
            if chunked {
                encode::last_chunk(body.trailers(), &mut conn.write);
            }
            false
        }
        UpstreamBody::Stream(_) | UpstreamBody::Recorded(_) => true,
    };
    // Until the first byte is out the pod has seen nothing.
    let written = match conn.stream.write(&conn.write).await {
        Ok(0) => return Err(SendError::NotSent(Error::Closed)),
        Ok(n) => n,
        Err(error) => return Err(SendError::NotSent(Error::Write(error))),
    };
    conn.stream
        .write_all(&conn.write[written..])
        .await
        .map_err(|e| SendError::Sent(Error::Write(e)))?;
    if streamed {
        stream_body(conn, request.body_mut(), chunked)
            .await
            .map_err(SendError::Sent)?;
    }
    conn.flush_tls()
        .await
        .map_err(|e| SendError::Sent(Error::Write(e)))?;
    read_head(conn, request.method())
        .await
        .map_err(SendError::Sent)
}

async fn stream_body(conn: &mut Conn, body: &mut UpstreamBody, chunked: bool) -> Result<(), Error> {
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let frame = frame.map_err(Error::RequestBody)?;
        conn.write.clear();
        match frame.into_data() {
            Ok(data) if chunked => encode::chunk(&data, &mut conn.write),
            Ok(data) => conn.write.put_slice(&data),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
        conn.stream
            .write_all(&conn.write)
            .await
            .map_err(Error::Write)?;
        // The next frame may be a while: what rustls holds must reach the pod now.
        conn.flush_tls().await.map_err(Error::Write)?;
    }
    if chunked {
        conn.write.clear();
        encode::last_chunk(trailers.as_ref(), &mut conn.write);
        conn.stream
            .write_all(&conn.write)
            .await
            .map_err(Error::Write)?;
    }
    Ok(())
}

async fn read_head(conn: &mut Conn, method: &http::Method) -> Result<(Head, Framing), Error> {
    loop {
        if let Some(head) = decode::parse_head(&mut conn.read)? {
            if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                // Upgrade headers never cross the proxy, so no pod has reason to switch.
                return Err(Error::Framing("101 Switching Protocols without an upgrade"));
            }
            if head.status.is_informational() {
                // 100 Continue, 103 Early Hints: interim, the final response follows.
                continue;
            }
            let framing = decode::framing(method, &head)?;
            return Ok((head, framing));
        }
        if conn.fill().await.map_err(Error::Read)? == 0 {
            return Err(Error::Closed);
        }
    }
}
