//! `GET /api/v1/events`: the status document as server-sent events, one `status` event
//! at once and then every [`EVENT_INTERVAL`], for the live page. At most
//! [`MAX_EVENT_STREAMS`] at once (503 beyond): each costs a task and one document a
//! second, and the admin port also answers probes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tokio_stream::wrappers::IntervalStream;

use super::{AdminState, status_document};

/// How often the live page is refreshed: the proxies report every 2 s, so a second
/// shows each report soon after it lands.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(1);
/// Event streams served at once.
pub const MAX_EVENT_STREAMS: usize = 32;

/// Counts open event streams; dropping a guard (the stream ended) frees a place.
#[derive(Debug, Default)]
pub struct EventStreams(AtomicUsize);

struct Place(Arc<AdminState>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.event_streams.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The event stream response, or 503 when [`MAX_EVENT_STREAMS`] are open.
pub fn respond(state: Arc<AdminState>) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let open = state.event_streams.0.fetch_add(1, Ordering::Relaxed);
    let place = Place(state);
    if open >= MAX_EVENT_STREAMS {
        drop(place);
        let mut busy = Response::new(
            http_body_util::Full::new(Bytes::from_static(b"too many event streams\n"))
                .boxed_unsync(),
        );
        *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return busy;
    }
    let ticks = IntervalStream::new(tokio::time::interval(EVENT_INTERVAL));
    let frames = ticks.map(move |_| {
        let document = status_document(&place.0);
        let event = format!("event: status\ndata: {document}\n\n");
        Ok::<_, Infallible>(Frame::data(Bytes::from(event)))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
