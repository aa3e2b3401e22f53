//! What a retry sends, and when a response is replaced by one: a copy of a replayable
//! request, the request still at hand (HTTP/1.1 only borrows it), or, for a gRPC call,
//! its recorded head and body played back ([`crate::request::Playback`]).

use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body::Body as _;

use super::grpc;
use super::retry::Failure;
use super::step::{self, GrpcVerdict};
use crate::metrics::RetryReason;
use crate::request::{Playback, UpstreamBody};
use crate::response::ProxyBody;

/// A gRPC call's head and the recording of its streamed body, kept for a status retry.
pub type Recorded = (Request<()>, Playback);

/// What replaces a response: the request to send, the wait before it, and why.
pub type Again = (Option<Request<UpstreamBody>>, Duration, RetryReason);

/// After an HTTP response with `status`: a status the rule retries, attempts left, an
/// idempotent method (`retried`: those three) and a replayable request. The status is
/// looked at first: a request is only moved about when it may go again.
pub fn after_status(
    status: StatusCode,
    (retried, attempts_left, idempotent): (&[u16], u32, bool),
    backup: Option<Request<UpstreamBody>>,
    slot: &mut Option<Request<UpstreamBody>>,
) -> Again {
    let again = step::response_retryable(status, retried, attempts_left, idempotent)
        .then(|| backup.or_else(|| slot.take()))
        .flatten()
        .filter(|r| r.body().is_replayable());
    (again, Duration::ZERO, RetryReason::status)
}

/// After a gRPC call's response: see [`step::grpc_response`].
pub fn after_grpc(
    response: &Response<ProxyBody>,
    retried: &[u32],
    attempts_left: u32,
    backup: Option<Request<UpstreamBody>>,
    slot: &mut Option<Request<UpstreamBody>>,
    recorded: Option<&Recorded>,
) -> Again {
    let status = grpc::trailers_only_status(response.headers(), response.body().is_end_stream());
    let pushback = grpc::pushback(response.headers());
    match step::grpc_response(retried, status, attempts_left, pushback) {
        GrpcVerdict::Deliver => (None, Duration::ZERO, RetryReason::grpc_status),
        GrpcVerdict::Retry { wait } => (
            replay(backup, slot, recorded),
            wait,
            RetryReason::grpc_status,
        ),
    }
}

/// `fairway_proxy_retries_total`'s reason for a retry after `failure`.
pub fn retry_reason(failure: Failure) -> RetryReason {
    match failure {
        Failure::NotSent => RetryReason::not_sent,
        Failure::Reset => RetryReason::reset,
        Failure::Status => RetryReason::status,
    }
}

/// The request for a gRPC status retry: a replayable one still at hand, else the
/// recorded head with the body played back (`None` if it was not sent whole within the
/// replay limit).
fn replay(
    backup: Option<Request<UpstreamBody>>,
    slot: &mut Option<Request<UpstreamBody>>,
    recorded: Option<&Recorded>,
) -> Option<Request<UpstreamBody>> {
    let at_hand = backup
        .or_else(|| slot.take())
        .filter(|r| r.body().is_replayable());
    if at_hand.is_some() {
        return at_hand;
    }
    let (head, playback) = recorded?;
    let body = UpstreamBody::Replayable(playback.replayable()?);
    Some(with_body(head, body))
}

/// A body-less copy of `request`'s head.
pub fn head_of<B>(request: &Request<B>) -> Request<()> {
    with_body(request, ())
}

/// A request with `head`'s method, URI, version and headers, and `body`.
fn with_body<A, B>(head: &Request<A>, body: B) -> Request<B> {
    let mut copy = Request::new(body);
    *copy.method_mut() = head.method().clone();
    *copy.uri_mut() = head.uri().clone();
    *copy.version_mut() = head.version();
    *copy.headers_mut() = head.headers().clone();
    copy
}

/// A copy of `request` for another try, when its body can be sent again.
pub fn clone_request(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let body = request.body().try_clone()?;
    Some(with_body(request, body))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::header::HeaderValue;

    use super::*;

    fn grpc_request() -> Request<UpstreamBody> {
        let mut request = Request::new(UpstreamBody::empty());
        *request.method_mut() = http::Method::POST;
        request
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        request
    }

    /// Header fields of a pod's answer.
    type Fields = &'static [(&'static str, &'static str)];

    /// A pod's answer: `pairs` as headers; `body`: a message follows (not trailers-only).
    fn answer(pairs: Fields, body: bool) -> Response<ProxyBody> {
        let body = if body {
            ProxyBody::full(Bytes::from_static(b"\0\0\0\0\x01x"))
        } else {
            ProxyBody::Full(None)
        };
        let mut response = Response::new(body);
        for (name, value) in pairs {
            response
                .headers_mut()
                .insert(*name, HeaderValue::from_static(value));
        }
        response
    }

    #[test]
    fn a_grpc_answer_is_replaced_only_when_trailers_only_listed_and_not_refused() {
        let unavailable: Fields = &[("grpc-status", "14")];
        let pushed: Fields = &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "200")];
        let refused: Fields = &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")];
        let internal: Fields = &[("grpc-status", "13")];
        // (the pod's answer, a message follows, retried?, the wait)
        let cases: [(Fields, bool, bool, u64); 5] = [
            (unavailable, false, true, 0),
            (pushed, false, true, 200),
            (refused, false, false, 0),
            (internal, false, false, 0),
            (unavailable, true, false, 0),
        ];
        for (pairs, body, retried, wait) in cases {
            let response = answer(pairs, body);
            let mut slot = Some(grpc_request());
            let (again, waited, reason) = after_grpc(&response, &[14], 1, None, &mut slot, None);
            assert_eq!(
                again.is_some(),
                retried,
                "{pairs:?}, message follows: {body}"
            );
            assert_eq!(waited, Duration::from_millis(wait), "{pairs:?}");
            assert_eq!(reason, RetryReason::grpc_status);
        }
    }

    #[test]
    fn nothing_to_replay_means_no_retry() {
        let response = answer(&[("grpc-status", "14")], false);
        let mut slot = None;
        let (again, ..) = after_grpc(&response, &[14], 1, None, &mut slot, None);
        assert!(
            again.is_none(),
            "HTTP/2 took the request and nothing was recorded: the answer stands"
        );
    }
}
