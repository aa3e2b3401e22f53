//! Power of two choices: sample two distinct candidates at random, keep the cheaper.
//!
//! Candidates are drawn in proportion to their slow-start weight, and two whose weights
//! differ by more than [`WEIGHT_TOLERANCE`] are not compared at all: the first drawn
//! takes the request. That is what makes a ramp's shares its curve under any policy.
//! Comparing `in_flight + 1` divided by weight, as before, made a ramping pod lose to a
//! full-weight one whenever both were idle (the old pod took half the requests until the
//! ramp ended), and comparing loads alone made an idle ramping pod win against a busy
//! old one (twice its share at a gateway's rate, where the old pod is busy half the
//! time). Pods of like weight (all pods once ramps end, pods that became ready together)
//! compare by requests in flight per weight, ties keeping the first; `PeakEwma` adds
//! latency, but only where estimates differ by more than [`LATENCY_TOLERANCE`]: within
//! it, identical pods' noise would otherwise rank them, and two choices turn a fixed
//! ranking into fixed shares of 50/33/17/0.

use rand::{Rng, RngCore};

/// Latency estimates closer than this factor count as equal. 1.5: identical pods'
/// estimates stay well within it (noise, a slow answer now and then), a pod that is
/// half again as slow for good is outside it.
pub const LATENCY_TOLERANCE: f64 = 1.5;

/// Weights closer than this factor compare by load; further apart, the weighted draw
/// decides. 1.25: pods whose ramps began within a few seconds of each other compare.
pub const WEIGHT_TOLERANCE: f64 = 1.25;

/// What a comparison looks at of one candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Requests (or upgraded connections) in flight.
    pub in_flight: u32,
    /// Slow-start weight, never zero.
    pub weight: u32,
    /// `PeakEwma` only: the latency estimate, `None` before the first answer (compared
    /// as equal to the other's: an unmeasured pod is neither punished nor favoured).
    pub latency_ns: Option<f64>,
}

/// Whether `b` is strictly cheaper than `a` (ties, and unlike weights, keep `a`).
pub fn prefers_second(a: &Candidate, b: &Candidate) -> bool {
    let (wa, wb) = (f64::from(a.weight), f64::from(b.weight));
    if wa > wb * WEIGHT_TOLERANCE || wb > wa * WEIGHT_TOLERANCE {
        return false;
    }
    match (a.latency_ns, b.latency_ns) {
        (Some(la), Some(lb)) if la > lb * LATENCY_TOLERANCE || lb > la * LATENCY_TOLERANCE => {
            // Latency matters: the estimate times in flight + 1 (an idle pod still costs
            // its latency), per weight.
            let cost =
                |c: &Candidate, l: f64| l * (f64::from(c.in_flight) + 1.0) / f64::from(c.weight);
            cost(b, lb) < cost(a, la)
        }
        // In flight per weight, exactly: b / wb < a / wa.
        _ => {
            u64::from(b.in_flight) * u64::from(a.weight)
                < u64::from(a.in_flight) * u64::from(b.weight)
        }
    }
}

/// Two distinct positions in `0..len` chosen uniformly (the same one twice when
/// `len == 1`); `None` when `len == 0`.
pub fn choose_two(len: usize, rng: &mut dyn RngCore) -> Option<(usize, usize)> {
    match len {
        0 => None,
        1 => Some((0, 0)),
        _ => {
            let a = rng.random_range(0..len);
            // Draw from the other len - 1 positions: skip over `a`.
            let b = rng.random_range(0..len - 1);
            Some((a, if b >= a { b + 1 } else { b }))
        }
    }
}

/// Two distinct positions in `0..len`, each drawn with probability proportional to
/// `weight(i)` (the second from the rest), so that when the two tie, which happens at
/// low load, the pick follows the weights: a slow-start ramp's shares are its curve.
/// `None` when `len == 0` or every weight is zero.
pub fn choose_two_weighted(
    len: usize,
    weight: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) -> Option<(usize, usize)> {
    let total: u64 = (0..len).map(&weight).sum();
    let a = nth_by_weight(len, &weight, rng.random_range(0..total.max(1)), None)?;
    if len == 1 {
        return Some((a, a));
    }
    let rest = total - weight(a);
    if rest == 0 {
        // Every other weight is zero: only `a` can take it.
        return Some((a, a));
    }
    let b = nth_by_weight(len, &weight, rng.random_range(0..rest), Some(a))?;
    Some((a, b))
}

/// The position whose cumulative weight range holds `target`, skipping `skip`.
fn nth_by_weight(
    len: usize,
    weight: impl Fn(usize) -> u64,
    mut target: u64,
    skip: Option<usize>,
) -> Option<usize> {
    for i in (0..len).filter(|&i| Some(i) != skip) {
        let w = weight(i);
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn small_lengths() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(choose_two(0, &mut rng), None);
        assert_eq!(choose_two(1, &mut rng), Some((0, 0)));
        for _ in 0..100 {
            let (a, b) = choose_two(2, &mut rng).expect("two");
            assert_ne!(a, b);
        }
    }

    #[test]
    fn every_pair_is_drawn() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut seen = [[0u32; 3]; 3];
        for _ in 0..3_000 {
            let (a, b) = choose_two(3, &mut rng).expect("two");
            seen[a][b] += 1;
        }
        for (a, row) in seen.iter().enumerate() {
            for (b, n) in row.iter().enumerate() {
                assert_eq!(*n == 0, a == b, "pair ({a},{b}) drawn {n} times");
            }
        }
    }

    fn c(in_flight: u32, weight: u32, latency_ms: Option<f64>) -> Candidate {
        Candidate {
            in_flight,
            weight,
            latency_ns: latency_ms.map(|ms| ms * 1e6),
        }
    }

    #[test]
    fn fewer_in_flight_per_weight_wins_and_ties_keep_the_first() {
        let table = [
            // (a, b, b wins?, why)
            (
                c(0, 1000, None),
                c(0, 1000, None),
                false,
                "idle and idle: a tie",
            ),
            (
                c(1, 1000, None),
                c(0, 100, None),
                false,
                "unlike weights: the draw decides",
            ),
            (
                c(0, 100, None),
                c(5, 1000, Some(0.1)),
                false,
                "unlike weights, either way",
            ),
            (c(1, 1000, None), c(0, 1000, None), true, "fewer in flight"),
            (
                c(2, 1000, None),
                c(2, 900, None),
                false,
                "2 per 900 > 2 per 1000",
            ),
            (
                c(3, 900, None),
                c(2, 1000, None),
                true,
                "2 per 1000 < 3 per 900",
            ),
            (
                c(1, 1000, Some(1.0)),
                c(1, 1000, Some(1.4)),
                false,
                "within tolerance: a tie",
            ),
            (
                c(2, 1000, Some(1.4)),
                c(1, 1000, Some(1.0)),
                true,
                "within tolerance: in flight",
            ),
            (
                c(0, 1000, Some(1.0)),
                c(0, 1000, Some(2.0)),
                false,
                "2x slower loses",
            ),
            (
                c(0, 1000, Some(2.0)),
                c(0, 1000, Some(1.0)),
                true,
                "2x faster wins",
            ),
            (
                c(0, 1000, Some(1.0)),
                c(2, 1000, Some(0.5)),
                false,
                "faster but 3 x 0.5 > 1",
            ),
            (
                c(0, 1000, None),
                c(0, 1000, Some(0.1)),
                false,
                "unmeasured: a tie",
            ),
            (
                c(1, 1000, Some(0.1)),
                c(0, 1000, None),
                true,
                "unmeasured: in flight",
            ),
        ];
        for (a, b, wins, why) in table {
            assert_eq!(prefers_second(&a, &b), wins, "{why}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn weighted_draws_follow_the_weights_and_stay_distinct() {
        let mut rng = SmallRng::seed_from_u64(3);
        let weights = [100u64, 300, 600];
        let mut first = [0u32; 3];
        for _ in 0..10_000 {
            let (a, b) = choose_two_weighted(3, |i| weights[i], &mut rng).expect("two");
            assert_ne!(a, b);
            first[a] += 1;
        }
        for (i, n) in first.iter().enumerate() {
            let expected = 10_000.0 * weights[i] as f64 / 1_000.0;
            assert!(
                (f64::from(*n) - expected).abs() < expected * 0.1,
                "position {i} drawn first {n} times, expected about {expected}: {first:?}"
            );
        }
        assert_eq!(choose_two_weighted(0, |_| 1, &mut rng), None);
        assert_eq!(choose_two_weighted(1, |_| 5, &mut rng), Some((0, 0)));
        assert_eq!(
            choose_two_weighted(2, |i| [0, 5][i], &mut rng),
            Some((1, 1))
        );
        assert_eq!(choose_two_weighted(2, |_| 0, &mut rng), None);
    }
}
