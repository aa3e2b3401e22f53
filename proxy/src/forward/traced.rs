//! Where a request meets tracing (`crate::trace`): start a sampled trace from the
//! client's `traceparent`, give each try its own span id in the `traceparent` it sends,
//! note how each try and the request ended. Only called for traced requests.

use std::time::{Instant, SystemTime};

use fairway_proto::model::EndpointAddr;
use http::header::HeaderValue;
use http::{Request, Response};

use super::service::{Answer, Failed, RequestBody};
use crate::pod::TryError;
use crate::request::{RawFields as _, UpstreamBody};
use crate::response::ProxyBody;
use crate::trace::{RequestTrace, TRACEPARENT, Tracer, span_id};

/// A trace for `request` when the tracer samples it (the client's `traceparent`, from
/// the header map or the fast loop's raw fields, decides first).
pub(super) fn start(
    tracer: &Tracer,
    request: &Request<RequestBody>,
    start: Instant,
) -> Option<RequestTrace> {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .map(HeaderValue::as_bytes)
        .or_else(|| request.body().fields()?.get_all(TRACEPARENT).next());
    tracer.start(incoming, request.method().as_str(), start)
}

/// A try to `addr` starts: a new span, and its id as the pod's parent.
pub(super) fn begin_try(
    trace: &mut RequestTrace,
    addr: EndpointAddr,
    request: &mut Option<Request<UpstreamBody>>,
) {
    let parent = trace.begin_try(
        addr.to_string(),
        span_id(),
        (SystemTime::now(), Instant::now()),
    );
    // Our hex digits are always a valid header value.
    if let (Some(request), Ok(value)) = (request.as_mut(), HeaderValue::try_from(parent)) {
        request.headers_mut().insert(TRACEPARENT, value);
    }
}

/// The try ended: the pod's status, or why there was none.
pub(super) fn end_try(trace: &mut RequestTrace, sent: &Result<Response<ProxyBody>, TryError>) {
    match sent {
        Ok(response) => trace.end_try(Some(response.status().as_u16()), None, Instant::now()),
        Err(error) => trace.end_try(None, Some(error.name().to_owned()), Instant::now()),
    }
}

/// The request was answered: its spans go to the exporter.
pub(super) fn finish(tracer: &Tracer, trace: RequestTrace, answered: &Result<Answer, Failed>) {
    let (status, error) = match answered {
        Ok(answer) => (answer.response.status().as_u16(), None),
        Err((error, ..)) => (error.status().as_u16(), Some(error.reason())),
    };
    tracer.finish(trace.finish(status, error, Instant::now()));
}
