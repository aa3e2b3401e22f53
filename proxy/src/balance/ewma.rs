//! The latency estimate of the `PeakEwma` policy: an exponentially weighted moving
//! average of each endpoint's response time.
//!
//! It started as Finagle's `PeakEwma` (as adopted by linkerd and tower): a sample above
//! the estimate replaced it outright, and samples below were blended in by the time
//! since the last one, so convergence took about `decay` whatever the rate. At a
//! gateway's real rate (hundreds of answers a second per pod, each ~1 ms) that made
//! identical pods unequal for seconds at a time: one slow answer among hundreds (a GC
//! pause, a descheduled thread) set a pod's estimate to that answer, the pod lost every
//! comparison, got no answers that could bring the estimate back, and sat starved until
//! the estimate had decayed; between spikes, noise ranked the pods and two-choice picking
//! turned the ranking into fixed shares (50/33/17/0). Now:
//!
//! - every answer moves the estimate at least [`SAMPLE_WEIGHT`] of the way to it (more
//!   when answers are sparse: the time-based weight of Finagle's design still applies),
//!   and counts as at most [`CLIP`] times the estimate, so a single slow answer, even one
//!   30x the usual on a busy node, moves it a little, and a pod that turns slow for good
//!   is seen within tens of answers; the requests-in-flight factor of the policy reacts
//!   to a stalled pod at once anyway;
//! - a new endpoint starts at what its peers measure (the balancer [`seed`]s it: its
//!   first answers ride a new connection and would make it look slow), or, with no
//!   peer measured, at its first answer;
//!
//! [`seed`]: PeakEwma::seed
//! - between answers the estimate still relaxes towards zero over `decay`, so an
//!   endpoint that looked slow is tried again after a while.
//!
//! How estimates are compared (a tolerance, unmeasured endpoints) is the balancer's part.

use std::time::{Duration, Instant};

/// How long a latency estimate remembers when answers are sparse, and how fast an
/// estimate relaxes without answers: Finagle's and linkerd's default.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// The least weight one answer has in the estimate. 2%: ten answers of 10x a pod's usual
/// time (a burst of GC pauses) raise its estimate by under 1.9x, a single one by 1.2x,
/// which the balancer's tolerance absorbs; a pod that is 3x slower for good crosses that
/// tolerance within about 15 answers.
pub const SAMPLE_WEIGHT: f64 = 0.02;

/// The most one answer counts for, as a multiple of the estimate: a 30x answer (a GC
/// pause, a descheduled thread while the node is busy) counts as 3x, raising the
/// estimate by 4%, while a pod that is 10x slower for good still crosses the balancer's
/// 1.5x tolerance within a dozen answers.
pub const CLIP: f64 = 3.0;

/// The placeholder estimate of an endpoint that has not answered yet (shown in
/// `/debug/routes`; the balancer compares an unmeasured endpoint as if it were as fast
/// as the one it is weighed against, and its first answer replaces this).
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

    /// Starts an unmeasured estimate at `typical_ns` (what the endpoint's peers measure),
    /// as if it had been measured at `now`; a measured one is left alone.
    pub fn seed(&mut self, typical_ns: f64, now: Instant) {
        if !self.measured && typical_ns > 0.0 {
            self.rtt_ns = typical_ns;
            self.updated_at = now;
            self.measured = true;
        }
    }

    /// The estimate at `now`, `None` until the first answer.
    pub fn measured_ns(&self, now: Instant, decay: Duration) -> Option<f64> {
        self.measured.then(|| self.estimate_ns(now, decay))
    }

    /// Adds one latency sample observed at `now`: the first replaces the placeholder;
    /// later ones are blended in with the weight of the time since the last (as relaxing
    /// towards zero would have), but at least [`SAMPLE_WEIGHT`].
    pub fn observe(&mut self, rtt: Duration, now: Instant, decay: Duration) {
        let rtt = nanos(rtt);
        self.rtt_ns = if self.measured {
            let weight = (1.0 - weight_of_past(self.updated_at, now, decay)).max(SAMPLE_WEIGHT);
            self.rtt_ns * (1.0 - weight) + rtt.min(self.rtt_ns * CLIP) * weight
        } else {
            rtt
        };
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
    fn the_first_answer_replaces_the_placeholder_then_each_moves_it_a_little() {
        let t0 = Instant::now();
        let decay = Duration::from_secs(10);
        let mut ewma = PeakEwma::new(Duration::from_millis(30), t0);
        assert_eq!(ewma.measured_ns(t0, decay), None);
        ewma.observe(Duration::from_millis(1), t0, decay);
        assert_eq!(
            ewma.measured_ns(t0, decay),
            Some(MS),
            "the first answer counts fully"
        );

        // One answer 30x slower, a millisecond later: it counts as 3x, 2% of the way.
        let t1 = t0 + Duration::from_millis(1);
        ewma.observe(Duration::from_millis(30), t1, decay);
        let e1 = ewma.estimate_ns(t1, decay);
        assert!((e1 - 1.04 * MS).abs() < 0.01 * MS, "{e1}");

        // Answers after a long silence weigh by the time: mostly the new answer.
        let t2 = t1 + decay;
        ewma.observe(Duration::from_millis(1), t2, decay);
        let past = (-1f64).exp();
        let expected = e1 * past + MS * (1.0 - past);
        let e2 = ewma.estimate_ns(t2, decay);
        assert!((e2 - expected).abs() < 1.0, "{e2} vs {expected}");
    }

    #[test]
    fn a_seed_stands_for_the_first_answer() {
        let t0 = Instant::now();
        let decay = Duration::from_secs(10);
        let mut ewma = PeakEwma::new(Duration::from_millis(30), t0);
        ewma.seed(MS, t0);
        assert_eq!(ewma.measured_ns(t0, decay), Some(MS));
        ewma.observe(Duration::from_millis(5), t0, decay);
        assert!(
            ewma.estimate_ns(t0, decay) < 1.1 * MS,
            "a slow first answer moves it a little"
        );
        ewma.seed(9.0 * MS, t0);
        assert!(
            ewma.estimate_ns(t0, decay) < 1.1 * MS,
            "a measured estimate keeps its own"
        );
    }

    #[test]
    fn a_pod_that_turns_slow_is_seen_within_tens_of_answers() {
        let t0 = Instant::now();
        let decay = Duration::from_secs(10);
        let mut ewma = PeakEwma::new(Duration::from_millis(30), t0);
        ewma.observe(Duration::from_millis(1), t0, decay);
        let mut now = t0;
        let mut answers = 0;
        while ewma.estimate_ns(now, decay) < 1.5 * MS {
            now += Duration::from_millis(3);
            ewma.observe(Duration::from_millis(3), now, decay);
            answers += 1;
        }
        assert!(answers <= 20, "3x slower seen after {answers} answers");

        let mut ewma = PeakEwma::new(Duration::from_millis(30), t0);
        ewma.observe(Duration::from_millis(1), t0, decay);
        let mut answers = 0;
        while ewma.estimate_ns(t0, decay) < 1.5 * MS {
            ewma.observe(Duration::from_millis(10), t0, decay);
            answers += 1;
        }
        assert!(answers <= 12, "10x slower seen after {answers} answers");
    }
}
