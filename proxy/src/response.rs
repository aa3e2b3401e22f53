//! A response on its way to the client: either the pod's response streamed through
//! (frames, including trailers, pass as they come) holding its pooled connection until
//! the last frame: over HTTP/1.1 decoded straight from the pod's socket by the
//! downstream connection's task ([`crate::h1`]), over HTTP/2 from hyper's stream; or a
//! small body the proxy wrote itself (error responses).
//!
//! It sits above the pool (a body holds its connection's [`Lease`]) and below the
//! service, which decides what a broken gRPC stream ends with ([`GrpcEnd`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::fields::Fields;
use crate::h1::{self, Decoder};
use crate::metrics::{self, grpc::GrpcCall};
use crate::pool::Lease;

mod http1;

pub use http1::Http1Body;

/// Errors of a response body: the pod's connection failed mid-body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gRPC call a response body ends: recorded in the metrics at its trailers, and
/// `broken` makes the trailers that end it if the pod's stream breaks off.
#[derive(Debug)]
pub struct GrpcEnd {
    pub call: GrpcCall,
    pub broken: fn() -> HeaderMap,
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ProxyBody {
    /// An HTTP/1.1 pod's body, read from its connection as the client takes it.
    Http1(Http1Body),
    /// An HTTP/2 pod's body (hyper's stream) and the stream's lease. `grpc`: a gRPC
    /// call, recorded in the metrics at its trailers, whose stream, if the pod's breaks
    /// off, ends with `UNAVAILABLE` trailers rather than a reset the client would read
    /// as `INTERNAL`.
    Upstream {
        body: Incoming,
        lease: Option<Lease>,
        grpc: Option<Box<GrpcEnd>>,
    },
    /// Written by the proxy itself.
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// The body of an HTTP/2 response; the lease ends with its last frame.
    pub fn upstream(body: Incoming, lease: Lease) -> Self {
        let mut this = ProxyBody::Upstream {
            body,
            lease: Some(lease),
            grpc: None,
        };
        this.release_if_done();
        this
    }

    /// The body of an HTTP/1.1 response framed by `framing`, read over `lease`, with the
    /// response's header `fields` (see [`Http1Body`]).
    pub fn http1(lease: Lease, framing: h1::Framing, fields: Fields) -> Self {
        let mut body = Http1Body {
            lease: Some(lease),
            decoder: Decoder::new(framing.body),
            reusable: framing.reusable,
            fields,
        };
        if body.decoder.is_done() {
            body.finish();
        }
        ProxyBody::Http1(body)
    }

    /// An HTTP/1.1 pod's header fields not yet in the response's `HeaderMap`.
    pub fn fields(&self) -> Option<&Fields> {
        match self {
            ProxyBody::Http1(body) if !body.fields.is_empty() => Some(&body.fields),
            _ => None,
        }
    }

    /// Takes the fields [`ProxyBody::fields`] returns, leaving none.
    pub fn take_fields(&mut self) -> Option<Fields> {
        match self {
            ProxyBody::Http1(body) if !body.fields.is_empty() => {
                Some(std::mem::take(&mut body.fields))
            }
            _ => None,
        }
    }

    /// Makes an HTTP/2 pod's body end as a gRPC call (see [`ProxyBody::Upstream`]);
    /// any other body gives the call back.
    pub fn end_as_grpc(&mut self, end: GrpcEnd) -> Option<GrpcEnd> {
        match self {
            ProxyBody::Upstream { grpc, .. } => {
                *grpc = Some(Box::new(end));
                None
            }
            _ => Some(end),
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    fn release_if_done(&mut self) {
        if let ProxyBody::Upstream { body, lease, .. } = self
            && body.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this {
            ProxyBody::Http1(body) => body.poll_frame(cx),
            ProxyBody::Upstream { body, lease, grpc } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(lease) = lease.take() {
                            lease.release();
                        }
                        if let Some(end) = grpc.take() {
                            end.call.finish(metrics::grpc::NO_TRAILERS);
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        if let Some(end) = grpc.take() {
                            tracing::debug!(%error, "a gRPC pod's stream broke off");
                            let trailers = (end.broken)();
                            let code = metrics::grpc::status(&trailers);
                            end.call.finish(code.unwrap_or(metrics::grpc::NO_TRAILERS));
                            // Nothing follows the trailers: the body ends as an empty one.
                            *this = ProxyBody::Full(None);
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        drop(lease.take());
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(trailers) = frame.trailers_ref()
                            && let Some(end) = grpc.take()
                        {
                            let code = metrics::grpc::status(trailers);
                            end.call.finish(code.unwrap_or(metrics::grpc::NO_TRAILERS));
                        } else if body.is_end_stream()
                            && let Some(end) = grpc.take()
                        {
                            // The last data frame ended the stream: no trailers will
                            // come, and hyper polls no further.
                            end.call.finish(metrics::grpc::NO_TRAILERS);
                        }
                        this.release_if_done();
                    }
                    Poll::Pending => {}
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Http1(body) => body.decoder.is_done(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Http1(body) => match body.decoder.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
