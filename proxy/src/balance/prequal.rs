//! The `Prequal` policy, after Google's Prequal (Wydrowski, Kleinberg, Rumble, NSDI
//! 2024): a small pool of recent probe answers, and hot-cold lexicographic selection
//! over it on requests in flight (RIF) and latency.
//!
//! Prequal's clients probe a few random replicas per query, asynchronously, and keep
//! the answers (the replica's RIF and its latency estimate) in a pool of about 16; a
//! query goes to the pooled replica that is *cold* (RIF at most a quantile of the RIF
//! seen recently) with the lowest latency, or, when every pooled one is *hot*, to the one
//! with the lowest RIF. Latency ranks first among the cold ones because it is what a
//! replica slowed by other tenants, a slower machine or a stall shows first; RIF bounds
//! how far a fast replica may be loaded before it stops being preferred.
//!
//! How this proxy gets its answers, at no cost to pods (no probe request is ever sent,
//! so pods need to know nothing of Fairway):
//! - **piggybacked**: each response is an answer from its endpoint: the requests in
//!   flight to it then, and its latency estimate with this response folded in;
//! - **probes**: each pick first probes [`PROBES_PER_PICK`] random endpoints, answered
//!   from what the proxy knows of them (requests in flight and the latency estimate),
//!   so endpoints that got no recent response still enter the pool;
//! - an endpoint answers at most once per [`MIN_ANSWER_INTERVAL`] (the per-endpoint
//!   bound: a busy endpoint cannot crowd the others out of the pool), and an answer
//!   older than [`MAX_AGE`] is dropped.
//!
//! Where this differs from the paper, and why: the pool keeps one answer per endpoint
//! and selection reads the endpoint's requests in flight *now* (this proxy's, plus the
//! other proxies' from the controller), because a proxy knows its own in-flight count
//! exactly; the paper's reuse budget exists to age a remote RIF figure and is not needed.
//! Latency estimates within [`LATENCY_TOLERANCE`] of the lowest count as equal and the
//! lower RIF decides among them, then a random rotation: identical pods' noise must not
//! rank them (the fairness rule every policy here keeps). Pure: time and the random
//! offset are parameters.

use std::time::{Duration, Instant};

pub use super::p2c::LATENCY_TOLERANCE;

/// Answers kept: the paper's pool size.
pub const POOL_SIZE: usize = 16;
/// Random endpoints probed per pick (the paper's probing rate is a few per query).
pub const PROBES_PER_PICK: usize = 2;
/// An endpoint answers at most this often, piggybacked or probed.
pub const MIN_ANSWER_INTERVAL: Duration = Duration::from_millis(5);
/// An answer older than this no longer ranks its endpoint.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Answers whose RIF sets the hot threshold: the last this many.
pub const RIF_HISTORY: usize = 64;
/// An endpoint is hot when its RIF is above this quantile of the recent answers' RIF.
pub const HOT_QUANTILE: f64 = 0.8;

/// One endpoint's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answer {
    /// The endpoint's position in the balancer.
    pub position: usize,
    /// Requests in flight to it when it answered.
    pub rif: u32,
    /// Its latency estimate then; `None` before its first response.
    pub latency_ns: Option<f64>,
    pub at: Instant,
}

/// The pool of recent answers, and the recent RIF figures the hot threshold comes from.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    answers: Vec<Answer>,
    /// A ring of the last [`RIF_HISTORY`] answers' RIF.
    history: Vec<u32>,
    next: usize,
    /// The hot threshold as of the last answer.
    threshold: Option<u32>,
}

impl Pool {
    /// Forgets every answer (positions changed: a new endpoint set).
    pub fn clear(&mut self) {
        *self = Pool::default();
    }

    /// Whether `position` may answer at `now` (it did not within [`MIN_ANSWER_INTERVAL`]).
    pub fn wants(&self, position: usize, now: Instant) -> bool {
        self.answers.iter().all(|a| {
            a.position != position || now.saturating_duration_since(a.at) >= MIN_ANSWER_INTERVAL
        })
    }

    /// Records an answer, in place of its endpoint's older one, else of the oldest when
    /// the pool is full. Returns whether it was taken (see [`wants`](Self::wants)).
    pub fn answer(&mut self, answer: Answer) -> bool {
        if !self.wants(answer.position, answer.at) {
            return false;
        }
        if let Some(slot) = (self.answers.iter_mut()).find(|a| a.position == answer.position) {
            *slot = answer;
        } else if self.answers.len() < POOL_SIZE {
            self.answers.push(answer);
        } else if let Some(oldest) = self.answers.iter_mut().min_by_key(|a| a.at) {
            *oldest = answer;
        }
        if self.history.len() < RIF_HISTORY {
            self.history.push(answer.rif);
        } else {
            self.history[self.next] = answer.rif;
        }
        self.next = (self.next + 1) % RIF_HISTORY;
        self.threshold = quantile(&self.history, HOT_QUANTILE);
        true
    }

    /// Drops answers older than [`MAX_AGE`] and those `keep` refuses (endpoints that no
    /// longer take requests).
    pub fn retain(&mut self, now: Instant, keep: impl Fn(usize) -> bool) {
        self.answers
            .retain(|a| now.saturating_duration_since(a.at) < MAX_AGE && keep(a.position));
    }

    pub fn answers(&self) -> &[Answer] {
        &self.answers
    }

    /// RIF above this is hot; `None` before any answer (nothing is hot).
    pub fn hot_threshold(&self) -> Option<u32> {
        self.threshold
    }
}

/// The `q` quantile of `values` (the lower one where it falls between two).
fn quantile(values: &[u32], q: f64) -> Option<u32> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    // q in [0, 1] and last small: the product is exact enough, and floor stays in range.
    let at = ((last as f64) * q).floor() as usize;
    sorted.get(at.min(last)).copied()
}

/// What selection weighs of one pooled endpoint now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    /// Requests in flight to it now.
    pub rif: u32,
    /// Its answer's latency estimate (scaled by reported load, if any); `None`:
    /// unmeasured, compared as equal to the best (neither punished nor favoured).
    pub latency_ns: Option<f64>,
}

/// Hot-cold lexicographic selection: the index in `seen` to pick, `None` when empty.
///
/// Cold candidates (RIF at most `threshold`; all of them when it is `None`) go first:
/// the lowest latency wins, estimates within [`LATENCY_TOLERANCE`] of it counting as
/// equal, and among those the lowest RIF. With none cold, the lowest RIF wins, latency
/// (with the same tolerance) breaking ties. Remaining ties go to the first from `start`
/// (a random offset: which of equal endpoints wins must not be fixed).
pub fn choose(seen: &[Seen], threshold: Option<u32>, start: usize) -> Option<usize> {
    if seen.is_empty() {
        return None;
    }
    let cold = |s: &Seen| threshold.is_none_or(|t| s.rif <= t);
    let any_cold = seen.iter().any(cold);
    let in_group = |s: &Seen| !any_cold || cold(s);
    let fast_enough = |group: &dyn Fn(&Seen) -> bool| {
        let best = (seen.iter().filter(|s| group(s)))
            .filter_map(|s| s.latency_ns)
            .fold(f64::INFINITY, f64::min);
        move |s: &Seen| s.latency_ns.is_none_or(|l| l <= best * LATENCY_TOLERANCE)
    };
    let order = (0..seen.len()).map(|i| (start + i) % seen.len());
    if any_cold {
        // Latency first, then RIF.
        let fast = fast_enough(&in_group);
        order
            .filter(|&i| in_group(&seen[i]) && fast(&seen[i]))
            .min_by_key(|&i| seen[i].rif)
    } else {
        // RIF first, then latency.
        let least = seen.iter().map(|s| s.rif).min()?;
        let least_group = |s: &Seen| s.rif == least;
        let fast = fast_enough(&least_group);
        order
            .filter(|&i| least_group(&seen[i]))
            .find(|&i| fast(&seen[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rif: u32, latency_ms: Option<f64>) -> Seen {
        Seen {
            rif,
            latency_ns: latency_ms.map(|ms| ms * 1e6),
        }
    }

    #[test]
    fn hot_cold_lexicographic_order() {
        let table: [(&[Seen], Option<u32>, usize, &str); 8] = [
            (
                &[s(3, Some(10.0)), s(0, Some(30.0))],
                Some(4),
                0,
                "cold: latency first",
            ),
            (
                &[s(5, Some(10.0)), s(0, Some(30.0))],
                Some(4),
                1,
                "the hot one is out",
            ),
            (
                &[s(6, Some(1.0)), s(5, Some(10.0))],
                Some(4),
                1,
                "all hot: RIF first",
            ),
            (
                &[s(5, Some(10.0)), s(5, Some(1.0))],
                Some(4),
                1,
                "all hot, same RIF: latency",
            ),
            (
                &[s(2, Some(10.0)), s(1, Some(14.0))],
                Some(4),
                1,
                "within tolerance: RIF",
            ),
            (
                &[s(2, Some(10.0)), s(1, None)],
                Some(4),
                1,
                "unmeasured: as fast, RIF",
            ),
            (
                &[s(9, Some(10.0)), s(0, Some(99.0))],
                None,
                0,
                "no threshold: all cold",
            ),
            (
                &[s(0, Some(10.0)), s(0, Some(30.0))],
                Some(0),
                0,
                "RIF at the threshold is cold",
            ),
        ];
        for (seen, threshold, want, why) in table {
            assert_eq!(choose(seen, threshold, 0), Some(want), "{why}: {seen:?}");
        }
        assert_eq!(choose(&[], Some(1), 0), None);
    }

    #[test]
    fn ties_go_to_the_first_from_the_offset() {
        let seen = [s(1, Some(10.0)), s(1, Some(11.0)), s(1, Some(12.0))];
        for start in 0..3 {
            assert_eq!(choose(&seen, Some(4), start), Some(start));
            assert_eq!(choose(&seen, Some(0), start), Some(start), "all hot");
        }
    }

    #[test]
    fn the_pool_keeps_one_bounded_answer_per_endpoint_and_ages_them() {
        let t0 = Instant::now();
        let answer = |position, rif, at| Answer {
            position,
            rif,
            latency_ns: Some(1e6),
            at,
        };
        let mut pool = Pool::default();
        assert_eq!(pool.hot_threshold(), None);
        assert!(pool.answer(answer(0, 1, t0)));
        assert!(
            !pool.answer(answer(0, 7, t0 + MIN_ANSWER_INTERVAL / 2)),
            "too soon"
        );
        assert!(pool.answer(answer(0, 2, t0 + MIN_ANSWER_INTERVAL)));
        assert_eq!(pool.answers().len(), 1, "replaced, not added");
        assert_eq!(pool.answers()[0].rif, 2);
        for position in 1..POOL_SIZE + 4 {
            pool.answer(answer(
                position,
                0,
                t0 + Duration::from_millis(position as u64 * 10),
            ));
        }
        assert_eq!(pool.answers().len(), POOL_SIZE, "bounded");
        assert!(
            pool.answers().iter().all(|a| a.position >= 4),
            "the oldest went first: {:?}",
            pool.answers()
        );
        pool.retain(t0 + MAX_AGE + Duration::from_millis(100), |p| p != 10);
        assert!(
            pool.answers().iter().all(|a| a.position > 10),
            "{:?}",
            pool.answers()
        );
    }

    #[test]
    fn the_hot_threshold_is_a_quantile_of_recent_answers() {
        let t0 = Instant::now();
        let mut pool = Pool::default();
        // RIF 0..=9, each six times: the 0.8 quantile is 7.
        for i in 0..60u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 10);
            let position = (i % 10) as usize;
            pool.answer(Answer {
                position,
                rif: i % 10,
                latency_ns: None,
                at,
            });
        }
        assert_eq!(quantile(&pool.history, HOT_QUANTILE), pool.hot_threshold());
        assert_eq!(pool.hot_threshold(), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3], 0.8), Some(3));
    }
}
