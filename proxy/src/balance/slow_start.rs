//! Slow start: a linear ramp of an endpoint's effective weight after it becomes ready.
//!
//! Weights are integers scaled so that [`FULL_WEIGHT`] is an endpoint at full share;
//! round robin uses them as SWRR weights, the P2C policies divide costs by them.

use std::time::{Duration, Instant};

/// The weight of an endpoint at full share. 1000 gives 0.1% steps: finer than any
/// share difference a benchmark can measure, and small enough that sums never overflow.
pub const FULL_WEIGHT: u32 = 1000;

/// The weight a ramp starts at (a factor of 0.1): a new pod still gets some requests
/// to warm its caches and JIT, rather than none and then everything at once.
pub const MIN_WEIGHT: u32 = FULL_WEIGHT / 10;

/// The effective weight at `now` of an endpoint whose ramp began at `ramp_from`:
/// `FULL_WEIGHT * min(1, max(MIN_FACTOR, (now - ramp_from) / slow_start))`.
///
/// `ramp_from == None` (the endpoint was there in the first table, so is not new) or
/// `slow_start == None` / zero (slow start off) give [`FULL_WEIGHT`].
pub fn ramp_weight(ramp_from: Option<Instant>, slow_start: Option<Duration>, now: Instant) -> u32 {
    let (Some(from), Some(window)) = (ramp_from, slow_start) else {
        return FULL_WEIGHT;
    };
    if window.is_zero() {
        return FULL_WEIGHT;
    }
    let elapsed = now.saturating_duration_since(from).as_nanos();
    let scaled = elapsed * u128::from(FULL_WEIGHT) / window.as_nanos();
    // Clamped to FULL_WEIGHT, so the cast cannot truncate.
    (scaled.min(u128::from(FULL_WEIGHT)) as u32).max(MIN_WEIGHT)
}

/// When a ramp that began at `ramp_from` reaches full weight; `None` when there is no ramp.
pub fn ramp_end(ramp_from: Option<Instant>, slow_start: Option<Duration>) -> Option<Instant> {
    match (ramp_from, slow_start) {
        (Some(from), Some(window)) if !window.is_zero() => Some(from + window),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_between_min_and_full() {
        let t0 = Instant::now();
        let window = Some(Duration::from_secs(30));
        let at = |secs| ramp_weight(Some(t0), window, t0 + Duration::from_secs(secs));
        assert_eq!(
            at(0),
            MIN_WEIGHT,
            "a brand-new endpoint still gets the minimum"
        );
        assert_eq!(at(1), MIN_WEIGHT, "1/30 is below the minimum factor");
        assert_eq!(at(15), FULL_WEIGHT / 2);
        assert_eq!(at(30), FULL_WEIGHT);
        assert_eq!(at(3_000), FULL_WEIGHT);
    }

    #[test]
    fn off_or_not_new_is_full() {
        let t0 = Instant::now();
        assert_eq!(
            ramp_weight(None, Some(Duration::from_secs(30)), t0),
            FULL_WEIGHT
        );
        assert_eq!(ramp_weight(Some(t0), None, t0), FULL_WEIGHT);
        assert_eq!(ramp_weight(Some(t0), Some(Duration::ZERO), t0), FULL_WEIGHT);
        assert_eq!(ramp_end(Some(t0), Some(Duration::ZERO)), None);
        assert_eq!(
            ramp_end(Some(t0), Some(Duration::from_secs(1))),
            Some(t0 + Duration::from_secs(1))
        );
    }
}
