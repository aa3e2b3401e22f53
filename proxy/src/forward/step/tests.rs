use std::time::Duration;

use super::*;
use crate::h1;
use crate::pod::UpstreamError;
use crate::pool::ConnectError;

fn endpoint() -> EndpointAddr {
    EndpointAddr("10.0.0.1:8080".parse().expect("addr"))
}

fn route() -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: "orders".into(),
    }
}

fn closed() -> UpstreamError {
    UpstreamError::Http1(h1::Error::Closed)
}

#[test]
fn failed_tries_classify_and_name_their_error() {
    let refused = || {
        TryError::Connect(ConnectError::Timeout {
            addr: endpoint(),
            timeout: Duration::from_secs(2),
        })
    };
    // (the try's error, outcome for the balancer, failure, resend, fairway-error reason)
    let cases = [
        (
            refused(),
            Outcome::ConnectFailure,
            Some(Failure::NotSent),
            Resend::Slot,
            "ConnectFailed",
        ),
        (
            TryError::Connect(ConnectError::TlsHandshake {
                addr: endpoint(),
                server_name: "orders.shop.svc.cluster.local".into(),
                source: std::io::Error::other("invalid peer certificate: UnknownIssuer"),
            }),
            Outcome::ConnectFailure,
            Some(Failure::NotSent),
            Resend::Slot,
            "TlsHandshake",
        ),
        (
            TryError::Connect(ConnectError::TlsConfig {
                addr: endpoint(),
                source: crate::tls::TlsConfigError::NoCa,
            }),
            Outcome::Cancelled,
            None,
            Resend::Slot,
            "TlsConfig",
        ),
        (
            TryError::NotSent(closed()),
            Outcome::Cancelled,
            Some(Failure::NotSent),
            Resend::Slot,
            "UpstreamReset",
        ),
        (
            TryError::Sent(closed()),
            Outcome::Reset,
            Some(Failure::Reset),
            Resend::BackupOrSlot,
            "UpstreamReset",
        ),
        (
            TryError::TimedOut(Duration::from_millis(500)),
            Outcome::Timeout,
            Some(Failure::Reset),
            Resend::Backup,
            "TryTimeout",
        ),
    ];
    for (try_error, outcome, failure, resend, reason) in cases {
        let label = format!("{try_error:?}");
        assert_eq!(
            classify(&try_error),
            Classified {
                outcome,
                failure,
                resend
            },
            "{label}"
        );
        let error = error(&route(), endpoint(), try_error);
        assert_eq!(error.reason(), reason, "{label}");
        assert_eq!(
            error.route(),
            Some(&route()),
            "{label}: the error names the route"
        );
    }
}

#[test]
fn responses_count_as_success_unless_5xx_and_retry_only_gateway_statuses() {
    assert_eq!(response_outcome(StatusCode::OK), Outcome::Success);
    assert_eq!(response_outcome(StatusCode::NOT_FOUND), Outcome::Success);
    assert_eq!(
        response_outcome(StatusCode::INTERNAL_SERVER_ERROR),
        Outcome::Status5xx
    );
    let defaults = &fairway_proto::model::DEFAULT_HTTP_RETRY_STATUSES[..];
    let listed = &[500, 503][..];
    // (status, statuses retried, attempts left, idempotent, retryable)
    let cases = [
        (StatusCode::SERVICE_UNAVAILABLE, defaults, 1, true, true),
        (StatusCode::BAD_GATEWAY, defaults, 2, true, true),
        (StatusCode::SERVICE_UNAVAILABLE, defaults, 0, true, false),
        (StatusCode::SERVICE_UNAVAILABLE, defaults, 1, false, false),
        (StatusCode::INTERNAL_SERVER_ERROR, defaults, 1, true, false),
        (StatusCode::OK, defaults, 1, true, false),
        (StatusCode::INTERNAL_SERVER_ERROR, listed, 1, true, true),
        (StatusCode::BAD_GATEWAY, listed, 1, true, false),
        (StatusCode::SERVICE_UNAVAILABLE, &[][..], 1, true, false),
    ];
    for (status, retried, left, idempotent, want) in cases {
        assert_eq!(
            response_retryable(status, retried, left, idempotent),
            want,
            "{status} retried on {retried:?} with {left} left, idempotent {idempotent}"
        );
    }
}

#[test]
fn decide_retries_safe_failures_with_attempts_left_and_budgets_only_sent_ones() {
    // (failure, attempts left, safe, step)
    let cases = [
        (Failure::NotSent, 1, true, Step::Retry { budgeted: false }),
        (Failure::Reset, 1, true, Step::Retry { budgeted: true }),
        (Failure::Status, 3, true, Step::Retry { budgeted: true }),
        (Failure::Reset, 0, true, Step::Stop),
        (Failure::NotSent, 0, true, Step::Stop),
        (Failure::Reset, 2, false, Step::Stop),
    ];
    for (failure, left, safe, want) in cases {
        assert_eq!(
            decide(failure, left, safe),
            want,
            "{failure:?} with {left} left, safe {safe}"
        );
    }
}

#[test]
fn grpc_responses_retry_only_listed_trailers_only_statuses_as_pushback_allows() {
    let listed = [14];
    let now = GrpcVerdict::Retry {
        wait: Duration::ZERO,
    };
    let later = Duration::from_millis(300);
    // (status of a trailers-only response, attempts left, pushback, verdict)
    let cases = [
        (Some(14), 1, Pushback::None, now),
        (
            Some(14),
            2,
            Pushback::Wait(later),
            GrpcVerdict::Retry { wait: later },
        ),
        (Some(14), 1, Pushback::Refuse, GrpcVerdict::Deliver),
        (Some(14), 0, Pushback::None, GrpcVerdict::Deliver),
        (Some(13), 1, Pushback::None, GrpcVerdict::Deliver),
        (Some(0), 1, Pushback::None, GrpcVerdict::Deliver),
        (None, 1, Pushback::None, GrpcVerdict::Deliver),
    ];
    for (status, left, pushback, want) in cases {
        assert_eq!(
            grpc_response(&listed, status, left, pushback),
            want,
            "status {status:?}, {left} left, {pushback:?}"
        );
    }
    assert_eq!(
        grpc_response(&[], Some(14), 1, Pushback::None),
        GrpcVerdict::Deliver,
        "an empty list retries nothing"
    );
}
