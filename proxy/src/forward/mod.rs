//! A request's way to a pod: route it, pick a pod, try, and retry or answer.
//!
//! Where to start: `service::handle` (route, pick, the retry loop, error responses)
//! hands each try to [`crate::pod`] (one exchange with the picked pod over its pool).
//! `step` says what a finished try means (the balancer's outcome, retry or stop, the
//! error), and `retry` whether a failed try may be repeated (safety and budget), both
//! pure; `prepare` edits a request for the hop (with `filters`, which also
//! answers a redirect rule and edits response headers), `resend` what a retry sends (a copy, or a gRPC call's recording played back);
//! `errors` turns every failed step into its exact status, reason and body, and `grpc`
//! into a gRPC status for gRPC calls (with their `grpc-timeout` deadline); `pick` asks
//! the balancer (with `affinity`'s key), `view` is what the router sees of a request,
//! `traced` is where a sampled request meets `crate::trace`. Upgrades (WebSockets) leave
//! `service` for `upgrade`, which picks and asks the pod, then hands the switched
//! connections to `tunnel`.

mod affinity;
mod errors;
#[cfg(test)]
mod fake;
mod filters;
mod grpc;
mod pick;
mod prepare;
mod resend;
mod retry;
mod service;
mod step;
mod traced;
mod tunnel;
mod upgrade;
mod view;

pub use crate::request::REPLAY_BUFFER_LIMIT;
pub use errors::{FAIRWAY_ERROR, ProxyError};
pub use retry::{
    Failure, MAX_SAVED_RETRIES, MIN_RETRIES_PER_SECOND, RetryBudget, SharedBudget, is_idempotent,
    is_retryable_status, is_safe,
};
pub use service::{RequestBody, Shared, handle};
