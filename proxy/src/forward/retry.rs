//! When a failed try may be repeated: only where it is safe, and only within a budget
//! so retries cannot multiply load on a struggling service (the retry storm).
//!
//! Safety: a request that was never sent (no connection, or hyper handed it back
//! unsent) can always go elsewhere. A sent request is repeated only if its method is
//! idempotent (RFC 9110 §9.2.2) and its body can be replayed (empty or buffered).
//!
//! Budget: after Finagle's `RetryBudget`. Every request deposits `budget_percent`% of a
//! retry; every retry withdraws a whole one; a floor of [`MIN_RETRIES_PER_SECOND`]
//! keeps low-traffic services retrying at all. Pure: time is a parameter.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use fairway_proto::model::DEFAULT_HTTP_RETRY_STATUSES;
use http::{Method, StatusCode};

/// Retries allowed per second whatever the traffic, so a service with a few requests
/// per second still gets its retries (Finagle's `minRetriesPerSec` default).
pub const MIN_RETRIES_PER_SECOND: u64 = 10;

/// The most retries the budget saves up: a burst of failures after a long quiet spell
/// may retry this many at once, no more.
pub const MAX_SAVED_RETRIES: u64 = 100;

/// One retry, in the budget's fixed-point unit (a thousandth of a retry), so a 20%
/// deposit per request is exact.
const RETRY: u64 = 1000;

/// Why a try failed, as far as retrying cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the pod (connect failed, or the request came back unsent).
    NotSent,
    /// Sent, and the connection broke before response headers.
    Reset,
    /// A response whose status is worth retrying elsewhere (502, 503, 504).
    Status,
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Statuses that say "this pod could not do it", not "the request is wrong": what a
/// Route retries unless a rule lists others.
pub fn is_retryable_status(status: StatusCode) -> bool {
    DEFAULT_HTTP_RETRY_STATUSES.contains(&status.as_u16())
}

/// Whether repeating a try that failed with `failure` is safe.
pub fn is_safe(failure: Failure, method: &Method, body_replayable: bool) -> bool {
    match failure {
        Failure::NotSent => true,
        Failure::Reset | Failure::Status => is_idempotent(method) && body_replayable,
    }
}

/// The retry budget's balance, in thousandths of a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    balance: u64,
    last_refill: Instant,
}

impl RetryBudget {
    /// A budget holding one second of the floor, as of `now`: a proxy that just
    /// started can retry its first failures.
    pub fn new(now: Instant) -> Self {
        RetryBudget {
            balance: MIN_RETRIES_PER_SECOND * RETRY,
            last_refill: now,
        }
    }

    /// A budget with nothing saved.
    #[cfg(test)]
    fn empty(now: Instant) -> Self {
        RetryBudget {
            balance: 0,
            last_refill: now,
        }
    }

    /// A request arrived on a route that allows `percent`% retries.
    pub fn deposit(&mut self, percent: u32) {
        self.balance = (self.balance + u64::from(percent) * RETRY / 100).min(Self::cap());
    }

    /// Takes one retry if the budget allows it at `now`.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last_refill);
        let floor = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(MIN_RETRIES_PER_SECOND);
        // `floor` is in thousandths already: ms × retries/s.
        if floor > 0 {
            self.balance = self.balance.saturating_add(floor).min(Self::cap());
            self.last_refill = now;
        }
        if self.balance >= RETRY {
            self.balance -= RETRY;
            true
        } else {
            false
        }
    }

    fn cap() -> u64 {
        MAX_SAVED_RETRIES * RETRY
    }
}

/// A [`RetryBudget`] shared by every request of the proxy. Proxy-wide on purpose: a
/// retry storm is a proxy-level overload, and one lock-free-in-practice mutex per
/// request is cheaper than a per-route map lookup.
#[derive(Debug)]
pub struct SharedBudget(Mutex<RetryBudget>);

impl SharedBudget {
    pub fn new(now: Instant) -> Self {
        SharedBudget(Mutex::new(RetryBudget::new(now)))
    }

    pub fn deposit(&self, percent: u32) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deposit(percent);
    }

    pub fn try_withdraw(&self, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_withdraw(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_safe_failures_are_retried() {
        assert!(
            is_safe(Failure::NotSent, &Method::POST, false),
            "never sent"
        );
        assert!(is_safe(Failure::Reset, &Method::GET, true));
        assert!(is_safe(Failure::Status, &Method::PUT, true));
        assert!(
            !is_safe(Failure::Reset, &Method::POST, true),
            "POST is not idempotent"
        );
        assert!(
            !is_safe(Failure::Status, &Method::GET, false),
            "a streamed body cannot be sent again"
        );
        assert!(is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn budget_allows_twenty_percent_plus_the_floor() {
        let start = Instant::now();
        let mut budget = RetryBudget::empty(start);
        for _ in 0..1000 {
            budget.deposit(20);
        }
        let mut granted = 0;
        while budget.try_withdraw(start) {
            granted += 1;
        }
        assert_eq!(
            granted, 100,
            "1000 requests at 20% is 200, capped at the saved max"
        );

        let mut budget = RetryBudget::empty(start);
        for _ in 0..100 {
            budget.deposit(20);
        }
        let mut granted = 0;
        while budget.try_withdraw(start) {
            granted += 1;
        }
        assert_eq!(granted, 20, "100 requests at 20% buy 20 retries, no more");

        let later = start + Duration::from_secs(1);
        let mut floor = 0;
        while budget.try_withdraw(later) {
            floor += 1;
        }
        assert_eq!(
            floor, MIN_RETRIES_PER_SECOND,
            "the floor refills per second"
        );
    }

    #[test]
    fn no_deposits_no_time_no_retries() {
        let now = Instant::now();
        let mut fresh = RetryBudget::new(now);
        let mut first = 0;
        while fresh.try_withdraw(now) {
            first += 1;
        }
        assert_eq!(
            first, MIN_RETRIES_PER_SECOND,
            "a fresh proxy starts with 1 s of floor"
        );
        let mut budget = RetryBudget::empty(now);
        assert!(!budget.try_withdraw(now));
        budget.deposit(0);
        assert!(
            !budget.try_withdraw(now),
            "budget_percent 0 deposits nothing"
        );
    }
}
