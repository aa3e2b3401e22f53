//! Peak-sensitive EWMA of response latency, the load signal of the `PeakEwma` policy.
//!
//! Derived from Finagle's `PeakEwma` (Twitter, Apache-2.0), as adopted by linkerd and
//! tower's `load::peak_ewma`: a sample above the estimate replaces it at once (peaks
//! count fully), a sample below it is blended in with a weight that grows with the time
//! since the last sample (a time-based EWMA, so convergence takes about `decay` whatever
//! the request rate). Between samples the estimate relaxes towards zero, so an endpoint
//! that looked slow, or was never measured, is tried again after a while.

use std::time::{Duration, Instant};

/// How long a latency estimate remembers: Finagle's and linkerd's default; a spike is
/// mostly forgotten within tens of seconds.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// The estimate for an endpoint that has not answered yet: linkerd's default, pessimistic
/// enough that a new pod is not flooded before its first answers, and it decays anyway.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// Tuning of the latency estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EwmaConfig {
    pub decay: Duration,
    pub default_rtt: Duration,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            decay: DEFAULT_DECAY,
            default_rtt: DEFAULT_RTT,
        }
    }
}

/// One endpoint's latency estimate, in nanoseconds as `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct PeakEwma {
    rtt_ns: f64,
    updated_at: Instant,
    measured: bool,
}

impl PeakEwma {
    /// An unmeasured estimate of `default_rtt`, starting to decay at `now`.
    pub fn new(default_rtt: Duration, now: Instant) -> Self {
        PeakEwma {
            rtt_ns: nanos(default_rtt),
            updated_at: now,
            measured: false,
        }
    }

    /// The estimate at `now`: the stored value relaxed towards zero for the time since
    /// the last sample (what a zero-latency sample would give). Does not mutate.
    pub fn estimate_ns(&self, now: Instant, decay: Duration) -> f64 {
        self.rtt_ns * weight_of_past(self.updated_at, now, decay)
    }

    /// Adds one latency sample observed at `now`.
    pub fn observe(&mut self, rtt: Duration, now: Instant, decay: Duration) {
        let rtt = nanos(rtt);
        let past = weight_of_past(self.updated_at, now, decay);
        let blended = self.rtt_ns * past + rtt * (1.0 - past);
        // Peak sensitivity: a sample above the estimate replaces it outright.
        self.rtt_ns = if rtt > self.rtt_ns { rtt } else { blended };
        self.updated_at = now;
        self.measured = true;
    }

    /// Whether any sample was observed (otherwise the estimate is the decaying default).
    pub fn is_measured(&self) -> bool {
        self.measured
    }
}

/// `exp(-elapsed / decay)`: how much of the old estimate survives `elapsed`.
fn weight_of_past(since: Instant, now: Instant, decay: Duration) -> f64 {
    let elapsed = nanos(now.saturating_duration_since(since));
    // A zero decay means no memory at all.
    let tau = nanos(decay).max(1.0);
    (-elapsed / tau).exp()
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn unmeasured_default_decays_towards_zero() {
        let t0 = Instant::now();
        let ewma = PeakEwma::new(Duration::from_millis(10), t0);
        let decay = Duration::from_secs(1);
        assert_eq!(ewma.estimate_ns(t0, decay), 10.0 * MS);
        let later = ewma.estimate_ns(t0 + Duration::from_millis(100), decay);
        assert!(9.0 * MS < later && later < 10.0 * MS, "{later}");
        assert!(ewma.estimate_ns(t0 + Duration::from_secs(10), decay) < 0.001 * MS);
        assert!(!ewma.is_measured());
    }

    #[test]
    fn peaks_replace_and_lows_blend_over_time() {
        let t0 = Instant::now();
        let decay = Duration::from_secs(10);
        let mut ewma = PeakEwma::new(Duration::from_millis(30), t0);
        ewma.observe(Duration::from_millis(100), t0, decay);
        assert_eq!(
            ewma.estimate_ns(t0, decay),
            100.0 * MS,
            "a peak counts fully"
        );

        // A fast sample shortly after barely moves the estimate...
        let t1 = t0 + Duration::from_millis(10);
        ewma.observe(Duration::from_millis(10), t1, decay);
        let e1 = ewma.estimate_ns(t1, decay);
        assert!(99.0 * MS < e1 && e1 < 100.0 * MS, "{e1}");

        // ...but after a full decay period it is mostly the new sample.
        let t2 = t1 + decay;
        ewma.observe(Duration::from_millis(10), t2, decay);
        let e2 = ewma.estimate_ns(t2, decay);
        let expected = e1 * (-1f64).exp() + 10.0 * MS * (1.0 - (-1f64).exp());
        assert!((e2 - expected).abs() < 1.0, "{e2} vs {expected}");
        assert!(ewma.is_measured());
    }
}
