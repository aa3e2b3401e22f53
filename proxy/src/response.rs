//! A response on its way to the client: either the pod's response streamed through
//! (frames, including trailers, pass as they come) holding its pooled connection until
//! the last frame: over HTTP/1.1 decoded straight from the pod's socket by the
//! downstream connection's task ([`crate::h1`]), over HTTP/2 from hyper's stream; or a
//! small body the proxy wrote itself (error responses).
//!
//! It sits above the pool (a body holds its connection's [`Lease`]) and below the
//! service, which decides what a broken gRPC stream ends with ([`GrpcEnd`]) and how long
//! a stream from a terminating pod may run on ([`ProxyBody::end_when_drained`], `drain`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::fields::Fields;
use crate::h1::{self, Decoder};
use crate::metrics::{self, grpc::GrpcCall};
use crate::pool::Lease;

mod drain;
mod http1;

pub use drain::{Drained, Draining};
pub use http1::Http1Body;

/// Errors of a response body: the pod's connection failed mid-body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gRPC call a response body ends: recorded in the metrics at its trailers; `broken`
/// makes the trailers that end it if the pod's stream breaks off, `drained` those that
/// end it when its pod turned terminating and the Route's `drainTimeout` passed.
#[derive(Debug)]
pub struct GrpcEnd {
    pub call: GrpcCall,
    pub broken: fn() -> HeaderMap,
    pub drained: fn() -> HeaderMap,
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
    /// A pod's streamed body that ends early if its pod turns terminating
    /// ([`ProxyBody::end_when_drained`]).
    Draining(Box<Draining>),
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
            ProxyBody::Draining(draining) => draining.body.fields(),
            _ => None,
        }
    }

    /// Takes the fields [`ProxyBody::fields`] returns, leaving none.
    pub fn take_fields(&mut self) -> Option<Fields> {
        match self {
            ProxyBody::Http1(body) if !body.fields.is_empty() => {
                Some(std::mem::take(&mut body.fields))
            }
            ProxyBody::Draining(draining) => draining.body.take_fields(),
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
            ProxyBody::Draining(draining) => draining.body.end_as_grpc(end),
            _ => Some(end),
        }
    }

    /// Lets a streamed body from a pod run at most `grace` after its pod turns
    /// terminating (or leaves the table), then ends it (see `drain`). Bodies of known
    /// length end on their own and are left alone: watching costs a boxed future per
    /// response, paid only by streams.
    pub fn end_when_drained(&mut self, grace: Duration) {
        if self.is_end_stream() || self.size_hint().exact().is_some() {
            return;
        }
        let lease = match self {
            ProxyBody::Http1(body) => body.lease.as_ref(),
            ProxyBody::Upstream { lease, .. } => lease.as_ref(),
            ProxyBody::Full(_) | ProxyBody::Draining(_) => None,
        };
        let Some(leaving) = lease.map(|lease| lease.pool().leaving()) else {
            return;
        };
        let body = std::mem::replace(self, ProxyBody::Full(None));
        *self = ProxyBody::Draining(Box::new(Draining::new(body, leaving, grace)));
    }

    /// Ends the body now, for [`Draining`]: a gRPC call with its `drained` trailers, any
    /// other with [`Drained`]. The pod's stream is dropped (reset, or its HTTP/1.1
    /// connection closed); what follows is an empty body.
    fn cut(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let ended = match std::mem::replace(self, ProxyBody::Full(None)) {
            ProxyBody::Upstream {
                grpc: Some(end), ..
            } => {
                let trailers = (end.drained)();
                let code = metrics::grpc::status(&trailers);
                end.call.finish(code.unwrap_or(metrics::grpc::NO_TRAILERS));
                Ok(Frame::trailers(trailers))
            }
            ProxyBody::Upstream { .. } | ProxyBody::Http1(_) => Err(Box::new(Drained).into()),
            ProxyBody::Full(None) => return None,
            full @ ProxyBody::Full(Some(_)) => {
                *self = full;
                return None;
            }
            ProxyBody::Draining(mut draining) => {
                let ended = draining.body.cut();
                *self = draining.body;
                return ended;
            }
        };
        tracing::debug!(
            grpc = ended.is_ok(),
            "a terminating pod's stream was ended after its drainTimeout"
        );
        Some(ended)
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
            ProxyBody::Draining(draining) => draining.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Http1(body) => body.decoder.is_done(),
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Draining(draining) => draining.body.is_end_stream(),
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
            ProxyBody::Draining(draining) => draining.body.size_hint(),
        }
    }
}
