//! A request on its way to a pod: the body types of the request path, as plain enums
//! so nothing is boxed per request, and the raw header fields a fast-loop request
//! carries beside its head.
//!
//! - [`RequestBody`]: what the client sent, as the downstream side hands it over
//!   (hyper's stream, or bytes the fast loop read with the head).
//! - [`UpstreamBody`]: what the proxy sends to a pod. Either replayable bytes (an empty
//!   body, or a small body buffered so an idempotent request can be retried) or the
//!   client's body streamed through untouched (gRPC, uploads: sent once, never retried).
//!
//! Depends on nothing of the proxy's but [`crate::fields`]: the HTTP/1.1 writer
//! (`h1`), the pool and the service all build on it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::fields::Fields;

mod tape;

pub use tape::Playback;

/// Largest request body buffered so an idempotent request can be retried after it was
/// sent: covers typical PUT/DELETE payloads while bounding memory per request. Larger or
/// unsized (streaming) bodies are forwarded as they arrive and never retried once sent.
pub const REPLAY_BUFFER_LIMIT: u64 = 64 * 1024;

/// A request body as the downstream side hands it over.
#[derive(Debug)]
pub enum RequestBody {
    /// hyper's body (HTTP/2, and HTTP/1.1 requests the fast loop handed off).
    Hyper(Incoming),
    /// Read whole with the head by the fast loop (the server's `downstream` module).
    Buffered(Replayable),
}

impl RequestBody {
    /// The body to send: empty, buffered (small, known size, idempotent method: it may
    /// be retried; or read whole by the fast loop), or streamed through.
    pub async fn into_upstream(self, idempotent: bool) -> Result<UpstreamBody, hyper::Error> {
        let body = match self {
            RequestBody::Buffered(body) => return Ok(UpstreamBody::Replayable(body)),
            RequestBody::Hyper(body) => body,
        };
        if body.is_end_stream() {
            return Ok(UpstreamBody::empty());
        }
        let small = body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= REPLAY_BUFFER_LIMIT);
        if !(idempotent && small) {
            return Ok(UpstreamBody::Stream(body));
        }
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(UpstreamBody::Replayable(Replayable::new(
            collected.to_bytes(),
            trailers,
        )))
    }
}

/// A request body on its way to a pod.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Bytes (possibly none) and optional trailers that can be sent again on a retry.
    Replayable(Replayable),
    /// The client's body, streamed: it can be sent once.
    Stream(Incoming),
    /// The client's body, streamed and recorded (see [`UpstreamBody::record`]): sent
    /// once, and its [`Playback`] may give a replayable copy after the try.
    Recorded(tape::Recording),
}

/// A buffered request body. Cloning it is cheap (`Bytes`), which is what makes a retry
/// possible.
///
/// It also carries the request head's header fields as an HTTP/1.1 client sent them,
/// when the downstream fast loop read the request ([`RawHead`], the response side's
/// trick on the way in): the request's `HeaderMap` then stays empty, and the HTTP/1.1
/// writer copies the client's lines straight out. Paths that need a map (HTTP/2 to the
/// pod, header edits) move them in first ([`UpstreamBody::take_raw`]).
#[derive(Clone, Debug, Default)]
pub struct Replayable {
    data: Option<Bytes>,
    /// Boxed: rare, and the body moves with the request on every try.
    trailers: Option<Box<HeaderMap>>,
    raw: RawHead,
}

/// A fast-loop request's header fields, kept raw, and what the proxy adds to them.
#[derive(Clone, Debug, Default)]
pub struct RawHead {
    /// The client's fields, as sent.
    pub fields: Fields,
    /// Set when the service let the fields go as they are: the client address for
    /// `X-Forwarded-For` (with `X-Forwarded-Proto: http`), which the writer adds after
    /// them. `None` until then.
    pub forwarded_for: Option<HeaderValue>,
}

impl Replayable {
    /// The bytes, if any.
    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_deref()
    }

    /// A body of `data` (none when empty) followed by optional `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Replayable {
            data: (!data.is_empty()).then_some(data),
            trailers: trailers.map(Box::new),
            raw: RawHead::default(),
        }
    }

    /// The same body, with the raw header fields of its request's head.
    pub fn with_fields(self, fields: Fields) -> Self {
        let raw = RawHead {
            fields,
            forwarded_for: None,
        };
        Replayable { raw, ..self }
    }
}

/// The raw head a request carries beside its `HeaderMap` (see [`Replayable`]).
pub trait RawFields {
    /// `None` when there is none: every field is in the map.
    fn raw(&self) -> Option<&RawHead>;

    fn fields(&self) -> Option<&Fields> {
        self.raw().map(|raw| &raw.fields)
    }
}

impl RawFields for RequestBody {
    fn raw(&self) -> Option<&RawHead> {
        match self {
            RequestBody::Buffered(r) if !r.raw.fields.is_empty() => Some(&r.raw),
            _ => None,
        }
    }
}

impl RawFields for UpstreamBody {
    fn raw(&self) -> Option<&RawHead> {
        match self {
            UpstreamBody::Replayable(r) if !r.raw.fields.is_empty() => Some(&r.raw),
            _ => None,
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
            UpstreamBody::Stream(_) | UpstreamBody::Recorded(_) => None,
        }
    }

    /// Records a streamed body as it is sent, up to [`REPLAY_BUFFER_LIMIT`], and returns
    /// where to play it back from; `None` (and nothing changes) for any other body.
    pub fn record(&mut self) -> Option<Playback> {
        match std::mem::replace(self, UpstreamBody::empty()) {
            UpstreamBody::Stream(body) => {
                let (recording, playback) = tape::record(body);
                *self = UpstreamBody::Recorded(recording);
                Some(playback)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// Takes the raw head [`RawFields::raw`] returns, leaving none.
    pub fn take_raw(&mut self) -> Option<RawHead> {
        match self {
            UpstreamBody::Replayable(r) if !r.raw.fields.is_empty() => {
                Some(std::mem::take(&mut r.raw))
            }
            _ => None,
        }
    }

    /// Lets the raw fields go as they are, `X-Forwarded-For` naming `client` after them.
    /// Does nothing when there are none.
    pub fn forward_raw_for(&mut self, client: HeaderValue) {
        if let UpstreamBody::Replayable(r) = self
            && !r.raw.fields.is_empty()
        {
            r.raw.forwarded_for = Some(client);
        }
    }

    /// Whether trailers follow the data (they need chunked framing over HTTP/1.1).
    pub fn has_trailers(&self) -> bool {
        matches!(self, UpstreamBody::Replayable(r) if r.trailers.is_some())
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
                None => r.trailers.take().map(|t| Ok(Frame::trailers(*t))),
            }),
            UpstreamBody::Stream(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Recorded(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Replayable(r) => r.data.is_none() && r.trailers.is_none(),
            UpstreamBody::Stream(body) => body.is_end_stream(),
            UpstreamBody::Recorded(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Replayable(r) => {
                SizeHint::with_exact(r.data.as_ref().map_or(0, |d| d.len() as u64))
            }
            UpstreamBody::Stream(body) => body.size_hint(),
            UpstreamBody::Recorded(body) => body.size_hint(),
        }
    }
}
