//! The downstream HTTP/1.1 fast loop: Fairway's own server side for the common request
//! (HTTP/1.1, no body or a small `Content-Length` one), on the connection's own task.
//!
//! Why not hyper's server for these: its dispatcher parses every head into its own
//! state machine, hands the request to the service, and encodes the response through
//! generic buffers. Measured with callgrind, that was most of the proxy's user-space
//! work per request, and it kept HTTP/1.1 throughput below nginx and HAProxy. This loop parses a head once
//! (httparse, zero-copy header values), calls the same [`service::handle`] as the
//! hyper path, and writes the response head and body in one write where it can.
//!
//! Everything else is handed to hyper for the rest of the connection ([`Ended::Handoff`]
//! with the bytes read so far): HTTP/2's preface, HTTP/1.0, chunked or large uploads,
//! `Expect`, `Upgrade`, `CONNECT`, and every malformed or oversized head, which hyper
//! answers (`400`, `431`, ...) exactly as before. The fast loop only decides what it can
//! serve; the rules for the rest stay in one place.
//!
//! One exception is answered here: a head with both `Content-Length` and
//! `Transfer-Encoding` gets `400 ConflictingFraming` and the connection closes. On a
//! connection hyper has taken over (after an HTTP/1.0 request or a chunked upload),
//! such a request follows hyper's reading of RFC 9112 §6.1 instead: chunked wins, the
//! length is dropped and the connection closes after the answer, so nothing is
//! smuggled either way, and no second parser re-reads hyper's bytes to tell.

mod head;
mod respond;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;
use http::{Method, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

pub use head::Limits;

use crate::forward::{self, RequestBody, Shared};
use crate::request::Replayable;
use crate::response::ProxyBody;

/// Read buffer reserved per connection; grows to the head limit if a head needs it.
const READ_CHUNK: usize = 8 * 1024;

/// How the fast loop ended.
#[derive(Debug)]
pub enum Ended {
    /// The connection is done (closed by either side, timed out, or stopping).
    Closed,
    /// hyper serves the rest of the connection, starting with these bytes already read.
    Handoff(Bytes),
}

/// What the loop needs besides the socket.
pub struct Loop<'a> {
    pub shared: &'a Arc<Shared>,
    /// The client's IP for `X-Forwarded-For`, formatted once per connection.
    pub client: &'a HeaderValue,
    pub limits: Limits,
    /// Time from starting to wait for a head until it is complete (with its body).
    pub header_read_timeout: Duration,
    /// Turns true when the proxy stops: idle connections close, in-flight ones finish.
    pub stop: watch::Receiver<bool>,
    /// Turns true when the proxy starts draining: each response closes its connection.
    pub draining: watch::Receiver<bool>,
}

impl Loop<'_> {
    /// Serves requests on `stream` until it closes, stops, or needs hyper. `read` holds
    /// bytes already read from it (empty for a fresh connection; a captured one's
    /// detected first bytes), parsed before anything more is read.
    pub async fn run_from(self, mut read: BytesMut, stream: &mut TcpStream) -> Ended {
        read.reserve(READ_CHUNK.saturating_sub(read.capacity()));
        let mut write = BytesMut::new();
        let mut stopped = self.stop.clone();
        let stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        // One timer per connection, re-armed only when it fires early: arming a fresh one
        // per request would cost a timer-wheel insertion on every request.
        let timer = tokio::time::sleep(self.header_read_timeout);
        tokio::pin!(timer);
        loop {
            let started = Instant::now();
            let (request, conflicting) = loop {
                match head::parse(&mut read, self.limits) {
                    head::Parsed::Request(head) => break (head, false),
                    head::Parsed::Conflicting(head) => break (head, true),
                    head::Parsed::Handoff => return Ended::Handoff(read.freeze()),
                    head::Parsed::Malformed => {
                        respond::bad_request(&mut write);
                        let _ = stream.write_all(&write).await;
                        let _ = stream.shutdown().await;
                        return Ended::Closed;
                    }
                    head::Parsed::Partial => {}
                }
                if !self
                    .fill(stream, &mut read, started, &mut timer, &mut stopped)
                    .await
                {
                    return Ended::Closed;
                }
            };
            while read.len() < request.body {
                if !self
                    .fill(stream, &mut read, started, &mut timer, &mut stopped)
                    .await
                {
                    return Ended::Closed;
                }
            }
            let body = Replayable::new(read.split_to(request.body).freeze(), None)
                .with_fields(request.fields);
            let head_request = request.request.method() == Method::HEAD;
            let close = request.close;
            let request = request.request.map(|()| RequestBody::Buffered(body));
            // Built in place, pinned where it stands: the request's future is kilobytes,
            // and every move of it is a copy.
            let handled = std::pin::pin!(forward::handle(
                Arc::clone(self.shared),
                self.client.clone(),
                conflicting,
                request
            ));
            let Some(response) = self.answer(stream, &mut read, handled).await else {
                return Ended::Closed;
            };
            // Draining: `Connection: close` sends a keep-alive client to a fresh
            // connection, which the node's Service gives to the proxy replacing this one.
            let close = close || *self.draining.borrow() || *self.stop.borrow();
            let written = {
                let write = std::pin::pin!(respond::write(
                    stream,
                    &mut write,
                    response,
                    head_request,
                    close
                ));
                write.await
            };
            if let Err(error) = written {
                tracing::debug!(%error, "writing the response");
                return Ended::Closed;
            }
            if close {
                let _ = stream.shutdown().await;
                return Ended::Closed;
            }
        }
    }

    /// Waits for `handled`, the service's answer. Meanwhile notices a client that hangs
    /// up (`None`: the answer is dropped, which tells the balancer the request was
    /// cancelled) and takes pipelined bytes into `read`, up to the head limit.
    async fn answer(
        &self,
        stream: &mut TcpStream,
        read: &mut BytesMut,
        mut handled: Pin<&mut impl Future<Output = Result<Response<ProxyBody>, Infallible>>>,
    ) -> Option<Response<ProxyBody>> {
        loop {
            tokio::select! {
                biased;
                Ok(response) = handled.as_mut() => return Some(response),
                // Readiness first: the task is polled several times per request, and a
                // readiness check is far cheaper than a read attempt.
                ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)),
                    if read.len() < self.limits.max_head =>
                {
                    let read_more = match ready {
                        Ok(()) => stream.try_read_buf(read),
                        Err(error) => Err(error),
                    };
                    match read_more {
                        Ok(n) if n > 0 => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => return None,
                    }
                }
            }
        }
    }

    /// Reads more of a head (or its body) into `read`; `false` when the connection should
    /// close: the client closed, the header-read timeout passed since `started`, or the
    /// proxy is stopping.
    async fn fill(
        &self,
        stream: &mut TcpStream,
        read: &mut BytesMut,
        started: Instant,
        timer: &mut Pin<&mut tokio::time::Sleep>,
        stopped: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let deadline = started + self.header_read_timeout;
        loop {
            if read.capacity() - read.len() < READ_CHUNK / 4 {
                read.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                filled = stream.read_buf(read) => return matches!(filled, Ok(n) if n > 0),
                () = timer.as_mut() => {
                    if Instant::now() >= deadline {
                        tracing::debug!("no complete request head within the header-read timeout");
                        return false;
                    }
                    timer.as_mut().reset(deadline);
                }
                () = stopped.as_mut() => return false,
            }
        }
    }
}
