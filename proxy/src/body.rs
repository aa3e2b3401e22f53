//! The two body types of the request path, as plain enums so nothing is boxed per
//! request.
//!
//! - [`UpstreamBody`]: what the proxy sends to a pod. Either replayable bytes (an empty
//!   body, or a small body buffered so an idempotent request can be retried) or the
//!   client's body streamed through untouched (gRPC, uploads: sent once, never retried).
//! - [`ProxyBody`]: what the proxy answers. Either the pod's response streamed through
//!   (frames, including trailers, pass as they come) holding its pooled connection until
//!   the last frame, or a small body the proxy wrote itself (error responses).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pool::Lease;

/// A request body on its way to a pod.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Bytes (possibly none) and optional trailers that can be sent again on a retry.
    Replayable(Replayable),
    /// The client's body, streamed: it can be sent once.
    Stream(Incoming),
}

/// A buffered request body. Cloning it is cheap (`Bytes`), which is what makes a retry
/// possible.
#[derive(Clone, Debug, Default)]
pub struct Replayable {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Replayable {
    /// A body of `data` (none when empty) followed by optional `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Replayable {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl UpstreamBody {
    /// An empty body (GET, HEAD, ...): replayable.
    pub fn empty() -> Self {
        UpstreamBody::Replayable(Replayable::default())
    }

    /// A copy for another try, or `None` when the body streams (it can be sent once).
    pub fn try_clone(&self) -> Option<UpstreamBody> {
        match self {
            UpstreamBody::Replayable(r) => Some(UpstreamBody::Replayable(r.clone())),
            UpstreamBody::Stream(_) => None,
        }
    }

    /// Whether a retry could send this body again.
    pub fn is_replayable(&self) -> bool {
        matches!(self, UpstreamBody::Replayable(_))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Replayable(r) => Poll::Ready(match r.data.take() {
                Some(data) => Some(Ok(Frame::data(data))),
                None => r.trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
            UpstreamBody::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Replayable(r) => r.data.is_none() && r.trailers.is_none(),
            UpstreamBody::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Replayable(r) => {
                SizeHint::with_exact(r.data.as_ref().map_or(0, |d| d.len() as u64))
            }
            UpstreamBody::Stream(body) => body.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ProxyBody {
    /// The pod's body. `lease` is the pooled connection it arrives on: released back to
    /// its pool once the last frame was read, discarded if the body is dropped early
    /// (an HTTP/1.1 connection with unread response bytes cannot carry another request).
    Upstream {
        body: Incoming,
        lease: Option<Lease>,
    },
    /// A body written by the proxy (error responses).
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// Streams `body` to the client, returning `lease` to its pool when it ends.
    pub fn upstream(body: Incoming, lease: Lease) -> Self {
        let mut this = ProxyBody::Upstream {
            body,
            lease: Some(lease),
        };
        // HEAD, 204, 304 and `content-length: 0` responses are over before they start,
        // and the server side may never poll them: release the connection now.
        this.release_if_done();
        this
    }

    /// A body the proxy wrote itself.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    fn release_if_done(&mut self) {
        if let ProxyBody::Upstream { body, lease } = self
            && body.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match this {
            ProxyBody::Upstream { body, lease } => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    // The end: the connection is reusable.
                    Poll::Ready(None) => {
                        if let Some(lease) = lease.take() {
                            lease.release();
                        }
                    }
                    // Broken mid-body: the connection is not reusable; dropping the
                    // lease discards it.
                    Poll::Ready(Some(Err(_))) => drop(lease.take()),
                    Poll::Ready(Some(Ok(_))) => this.release_if_done(),
                    Poll::Pending => {}
                }
                polled
            }
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
