//! Outlier ejection: consecutive failures take an endpoint out of rotation for a while.
//!
//! Modelled on Envoy's consecutive-failure detector: `consecutive_failures` failures in a
//! row (a success resets the count) eject the endpoint for `base_ejection × n`, where `n`
//! counts its ejections, capped at `max_ejection`. An endpoint that stays un-ejected for
//! `max_ejection` after its last ejection ended starts again from `n = 0`. Whether an
//! ejection is honoured at all is the pool-wide panic threshold's call (`eligible`).

use std::time::{Duration, Instant};

/// Failures in a row before ejecting: Envoy's default; one bad request is noise, five in
/// a row with no success between is a broken pod.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// The first ejection's length: long enough for a restart or a GC storm to pass.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(10);

/// The longest ejection: a pod that keeps failing is retried at least this often, so a
/// recovered pod never stays out for long.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);

/// How one request to an endpoint ended, as the balancer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A response that is not a 5xx.
    Success,
    /// No connection could be made (refused, unreachable, connect timeout).
    ConnectFailure,
    /// The connection broke before a complete response.
    Reset,
    /// A 5xx response.
    Status5xx,
    /// No response headers within the request timeout.
    Timeout,
    /// The request was abandoned by our side (the client went away): says nothing about
    /// the endpoint, so it neither counts as a failure nor resets the failure count.
    Cancelled,
}

impl Outcome {
    /// Whether this outcome counts towards ejection.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::ConnectFailure | Outcome::Reset | Outcome::Status5xx | Outcome::Timeout
        )
    }

    /// Whether the elapsed time is a latency sample. A refused connection or a reset is
    /// fast and would make a broken pod look attractive, so those are left out.
    pub fn measures_latency(self) -> bool {
        matches!(
            self,
            Outcome::Success | Outcome::Status5xx | Outcome::Timeout
        )
    }
}

/// Tuning of outlier ejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failures in a row that eject; 0 turns ejection off.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
        }
    }
}

/// One endpoint's failure record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outlier {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

impl Outlier {
    /// Records one outcome. Returns `true` when this outcome ejected the endpoint.
    /// Failures reported while already ejected (requests that were in flight) neither
    /// extend the ejection nor count towards the next one.
    pub fn record(&mut self, outcome: Outcome, now: Instant, config: &OutlierConfig) -> bool {
        if outcome == Outcome::Success {
            self.consecutive_failures = 0;
            return false;
        }
        if !outcome.is_failure() || config.consecutive_failures == 0 || self.is_ejected(now) {
            return false;
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures < config.consecutive_failures {
            return false;
        }
        if self
            .ejected_until
            .is_some_and(|until| now >= until + config.max_ejection)
        {
            // Healthy for a long while since the last ejection: forgive the history.
            self.ejections = 0;
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = config
            .base_ejection
            .saturating_mul(self.ejections)
            .min(config.max_ejection);
        self.ejected_until = Some(now + length);
        self.consecutive_failures = 0;
        true
    }

    /// Whether the endpoint is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current (or last) ejection ends.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Ejections counted towards the next ejection's length.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(outlier: &mut Outlier, n: u32, now: Instant) -> bool {
        let config = OutlierConfig::default();
        (0..n).fold(false, |ejected, _| {
            outlier.record(Outcome::Reset, now, &config) || ejected
        })
    }

    #[test]
    fn five_in_a_row_eject_with_growing_length() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        assert!(!fail(&mut o, 4, t0), "four failures are not enough");
        assert!(fail(&mut o, 1, t0));
        assert!(o.is_ejected(t0 + Duration::from_secs(9)));
        assert!(
            !o.is_ejected(t0 + Duration::from_secs(10)),
            "first ejection: 10 s"
        );

        let t1 = t0 + Duration::from_secs(10);
        assert!(fail(&mut o, 5, t1));
        assert!(
            o.is_ejected(t1 + Duration::from_secs(19)),
            "second ejection: 20 s"
        );
        assert!(!o.is_ejected(t1 + Duration::from_secs(20)));
        assert_eq!(o.ejections(), 2);
    }

    #[test]
    fn success_resets_and_cancel_is_neutral() {
        let t0 = Instant::now();
        let config = OutlierConfig::default();
        let mut o = Outlier::default();
        fail(&mut o, 4, t0);
        o.record(Outcome::Success, t0, &config);
        assert!(!fail(&mut o, 4, t0), "the success reset the count");
        o.record(Outcome::Cancelled, t0, &config);
        assert_eq!(
            o.consecutive_failures(),
            4,
            "a cancel neither fails nor succeeds"
        );
        assert!(fail(&mut o, 1, t0));
    }

    #[test]
    fn length_is_capped_and_history_forgiven() {
        let mut now = Instant::now();
        let mut o = Outlier::default();
        let mut lengths = Vec::new();
        for _ in 0..40 {
            assert!(
                fail(&mut o, 5, now),
                "failing again right after an ejection ends"
            );
            let until = o.ejected_until().expect("ejected");
            lengths.push(until - now);
            now = until;
        }
        assert_eq!(lengths[2], DEFAULT_BASE_EJECTION * 3);
        assert_eq!(lengths[39], DEFAULT_MAX_EJECTION, "capped at 5 min");

        let later = now + DEFAULT_MAX_EJECTION;
        assert!(fail(&mut o, 5, later));
        assert_eq!(
            o.ejections(),
            1,
            "a long healthy spell forgives past ejections"
        );
        assert_eq!(o.ejected_until(), Some(later + DEFAULT_BASE_EJECTION));
    }

    #[test]
    fn zero_threshold_disables() {
        let config = OutlierConfig {
            consecutive_failures: 0,
            ..OutlierConfig::default()
        };
        let mut o = Outlier::default();
        let t0 = Instant::now();
        assert!((0..100).all(|_| !o.record(Outcome::ConnectFailure, t0, &config)));
    }
}
