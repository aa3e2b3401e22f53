//! The retry step, pure: what a finished try means for the balancer, whether the
//! request may go again, and the error the client gets when it does not. The try loop
//! (`service::tries`) only sends, applies these answers and picks again.

use std::time::Duration;

use fairway_proto::model::{EndpointAddr, RouteKey};
use http::StatusCode;

use super::errors::ProxyError;
use super::grpc::Pushback;
use super::retry::Failure;
use crate::balance::Outcome;
use crate::pod::TryError;
use crate::pool::ConnectError;

/// Which request a retry after a failed try would send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// The one in the slot: it was not sent, or HTTP/1.1 only borrowed it.
    Slot,
    /// The copy made before the try: the try took the original with it.
    Backup,
    /// The copy if one was made, else the slot's (HTTP/1.1 keeps it after a send).
    BackupOrSlot,
}

/// What a try that produced no response means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// For the balancer (outlier detection, latency).
    pub outcome: Outcome,
    /// Why it failed, for the retry rules; `None`: never retried (our side failed).
    pub failure: Option<Failure>,
    pub resend: Resend,
}

/// Classifies a try that failed with `error`.
pub fn classify(error: &TryError) -> Classified {
    let (outcome, failure, resend) = match error {
        // The Route has no usable CA: no pod is at fault, and no other pod can help.
        TryError::Connect(ConnectError::TlsConfig { .. }) => {
            (Outcome::Cancelled, None, Resend::Slot)
        }
        TryError::Connect(_) => (
            Outcome::ConnectFailure,
            Some(Failure::NotSent),
            Resend::Slot,
        ),
        // A pooled connection the pod closed just as we picked it (keep-alive race):
        // says nothing about the pod's health.
        TryError::NotSent(_) => (Outcome::Cancelled, Some(Failure::NotSent), Resend::Slot),
        // Our side failed: the client's body broke off. Not the pod's fault.
        TryError::ClientBody(_) => (Outcome::Cancelled, None, Resend::Slot),
        // The pod may have the request: retried only where a reset would be.
        TryError::TimedOut(_) => (Outcome::Timeout, Some(Failure::Reset), Resend::Backup),
        TryError::Sent(_) => (Outcome::Reset, Some(Failure::Reset), Resend::BackupOrSlot),
    };
    Classified {
        outcome,
        failure,
        resend,
    }
}

/// The error the client gets if the try that failed with `error` at `endpoint` is the
/// last one.
pub fn error(route: &RouteKey, endpoint: EndpointAddr, error: TryError) -> ProxyError {
    let route = route.clone();
    match error {
        TryError::Connect(source) => ProxyError::ConnectFailed { route, source },
        TryError::NotSent(source) | TryError::Sent(source) => ProxyError::UpstreamReset {
            route,
            endpoint,
            source,
        },
        TryError::ClientBody(source) => ProxyError::ClientBody { route, source },
        TryError::TimedOut(timeout) => ProxyError::TryTimeout {
            route,
            endpoint,
            timeout,
        },
    }
}

/// What a response with `status` means for the balancer.
pub fn response_outcome(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::Status5xx
    } else {
        Outcome::Success
    }
}

/// Whether a response with `status` may be replaced by a retry, before looking at the
/// body or the budget: a status in `retried`, attempts left, an idempotent method.
pub fn response_retryable(
    status: StatusCode,
    retried: &[u16],
    attempts_left: u32,
    idempotent: bool,
) -> bool {
    retried.contains(&status.as_u16()) && attempts_left > 0 && idempotent
}

/// What to do with a gRPC response (see [`grpc_response`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcVerdict {
    /// Hand it to the client.
    Deliver,
    /// Try again on another pod after `wait` (budget and a replayable body permitting).
    Retry { wait: Duration },
}

/// Whether a gRPC response is replaced by a retry: only a trailers-only response
/// (`status`: its `grpc-status`; no response message reached the client, so nothing
/// is lost) with a status the route lists, attempts left, and no pushback refusing it.
pub fn grpc_response(
    retried: &[u32],
    status: Option<u32>,
    attempts_left: u32,
    pushback: Pushback,
) -> GrpcVerdict {
    let listed = status.is_some_and(|s| retried.contains(&s));
    match pushback {
        _ if !listed || attempts_left == 0 => GrpcVerdict::Deliver,
        Pushback::Refuse => GrpcVerdict::Deliver,
        Pushback::None => GrpcVerdict::Retry {
            wait: Duration::ZERO,
        },
        Pushback::Wait(wait) => GrpcVerdict::Retry { wait },
    }
}

/// The next step after a failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try again elsewhere; `budgeted`: only if the retry budget grants one.
    Retry { budgeted: bool },
    /// The failure is the answer.
    Stop,
}

/// Decides the step after a try that failed with `failure`, with `attempts_left` retries
/// left, for a request that may (`safe`, see [`retry::is_safe`]) be sent again.
///
/// The budget keeps retries from multiplying the load on struggling pods; a try that
/// never reached a pod (refused connect) cost them nothing, so it retries within
/// `attempts` alone. Otherwise a dead pod, picked again in the balancer's panic mode,
/// could exhaust the budget while healthy pods stand by.
pub fn decide(failure: Failure, attempts_left: u32, safe: bool) -> Step {
    if attempts_left == 0 || !safe {
        return Step::Stop;
    }
    Step::Retry {
        budgeted: failure != Failure::NotSent,
    }
}

#[cfg(test)]
#[path = "step/tests.rs"]
mod tests;
