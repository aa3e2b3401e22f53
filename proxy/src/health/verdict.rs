//! The deciding half of health checking, pure: what one probe's answer means, when an
//! endpoint changes state, and when to probe next. Time and randomness come in as
//! arguments; [`super::checker`] does the I/O.

use std::time::Duration;

use fairway_proto::model::GrpcHealthCheck;

/// Each delay is the interval ± this share of it, so the probes of many proxies (and
/// of one proxy's endpoints) do not fall into step.
pub const JITTER_PERCENT: u32 = 10;

/// What one probe found. Variant names are the `result` label of
/// `fairway_proxy_health_checks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// `SERVING`: the only answer that passes.
    Serving,
    /// `NOT_SERVING`: the server says it should get no traffic.
    NotServing,
    /// `SERVICE_UNKNOWN` or `UNKNOWN` (or a number the protocol does not define): the
    /// server does not vouch for the service asked about.
    Unknown,
    /// A gRPC status other than `OK` (e.g. `UNIMPLEMENTED`: no health service).
    Status,
    /// No connection could be made.
    Connect,
    /// No answer within the check's timeout.
    Timeout,
    /// The connection broke, or the answer was not a health response.
    Broken,
}

impl Answer {
    pub fn passes(self) -> bool {
        self == Answer::Serving
    }

    /// `grpc.health.v1.HealthCheckResponse.ServingStatus` by number.
    pub fn from_serving_status(status: u64) -> Answer {
        match status {
            1 => Answer::Serving,
            2 => Answer::NotServing,
            _ => Answer::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Answer::Serving => "Serving",
            Answer::NotServing => "NotServing",
            Answer::Unknown => "Unknown",
            Answer::Status => "Status",
            Answer::Connect => "Connect",
            Answer::Timeout => "Timeout",
            Answer::Broken => "Broken",
        }
    }
}

/// A change of an endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Failed `unhealthy_threshold` probes in a row: out of rotation.
    Failed,
    /// Passed `healthy_threshold` probes in a row after failing: back in rotation.
    Recovered,
}

/// One endpoint's health under one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    healthy: bool,
    /// Probes in a row that disagree with `healthy`.
    streak: u32,
}

impl Default for Health {
    /// Healthy: the endpoint is in the table because Kubernetes calls it ready, and a
    /// check that just started must not take traffic away before its first probe.
    fn default() -> Self {
        Health {
            healthy: true,
            streak: 0,
        }
    }
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe's answer; returns the change it caused, if any. Thresholds
    /// below 1 count as 1.
    pub fn record(&mut self, answer: Answer, check: &GrpcHealthCheck) -> Option<Change> {
        if answer.passes() == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.healthy {
            check.unhealthy_threshold
        } else {
            check.healthy_threshold
        };
        if self.streak < threshold.max(1) {
            return None;
        }
        self.healthy = !self.healthy;
        self.streak = 0;
        Some(if self.healthy {
            Change::Recovered
        } else {
            Change::Failed
        })
    }
}

/// The wait before the next probe, from the end of the last one: the interval,
/// jittered by ± [`JITTER_PERCENT`]; `unit` is a uniform draw from `[0, 1)`.
pub fn next_delay(interval: Duration, unit: f64) -> Duration {
    let spread = f64::from(JITTER_PERCENT) / 100.0;
    interval.mul_f64(1.0 - spread + 2.0 * spread * unit.clamp(0.0, 1.0))
}

/// The wait before an endpoint's first probe: anywhere in one interval, so a new
/// table's endpoints are not all probed at once.
pub fn first_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unhealthy: u32, healthy: u32) -> GrpcHealthCheck {
        GrpcHealthCheck {
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            ..GrpcHealthCheck::default()
        }
    }

    fn run(health: &mut Health, answers: &[Answer], check: &GrpcHealthCheck) -> Vec<Change> {
        answers
            .iter()
            .filter_map(|&a| health.record(a, check))
            .collect()
    }

    #[test]
    fn thresholds_count_answers_in_a_row() {
        use Answer::*;
        let check = check(3, 2);
        let mut h = Health::default();
        assert!(
            h.is_healthy(),
            "starts healthy: no traffic lost before the first probe"
        );
        assert_eq!(
            run(
                &mut h,
                &[NotServing, Timeout, Serving, Connect, Broken],
                &check
            ),
            [],
            "a pass between failures resets the count"
        );
        assert_eq!(
            run(&mut h, &[NotServing], &check),
            [Change::Failed],
            "third in a row"
        );
        assert!(!h.is_healthy());
        assert_eq!(
            run(&mut h, &[Serving, Unknown, Serving], &check),
            [],
            "a failure between passes resets the count"
        );
        assert_eq!(run(&mut h, &[Serving], &check), [Change::Recovered]);
        assert!(h.is_healthy());
    }

    #[test]
    fn only_serving_passes() {
        use Answer::*;
        for answer in [NotServing, Unknown, Status, Connect, Timeout, Broken] {
            let mut h = Health::default();
            assert_eq!(
                h.record(answer, &check(1, 1)),
                Some(Change::Failed),
                "{answer:?} fails"
            );
        }
        assert_eq!(Answer::from_serving_status(1), Serving);
        assert_eq!(Answer::from_serving_status(2), NotServing);
        assert_eq!(Answer::from_serving_status(3), Unknown, "SERVICE_UNKNOWN");
        assert_eq!(Answer::from_serving_status(0), Unknown);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut h = Health::default();
        assert_eq!(
            h.record(Answer::Timeout, &check(0, 0)),
            Some(Change::Failed)
        );
        assert_eq!(
            h.record(Answer::Serving, &check(0, 0)),
            Some(Change::Recovered)
        );
    }

    #[test]
    fn delays_stay_within_the_jitter() {
        let interval = Duration::from_secs(10);
        assert_eq!(next_delay(interval, 0.0), Duration::from_secs(9));
        assert_eq!(next_delay(interval, 0.5), interval);
        assert!(next_delay(interval, 0.999_999) < Duration::from_secs(11));
        assert_eq!(
            next_delay(interval, 7.0),
            Duration::from_secs(11),
            "clamped"
        );
        assert_eq!(first_delay(interval, 0.0), Duration::ZERO);
        assert!(first_delay(interval, 0.999_999) < interval);
    }
}
