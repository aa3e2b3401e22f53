//! Reconnect delays: exponential backoff with full jitter ("Exponential Backoff And
//! Jitter", Marc Brooker, AWS Architecture Blog, 2015). Full jitter spreads a fleet of
//! proxies that lost the same controller over the whole window instead of having them
//! return in waves.

use std::time::Duration;

use rand::Rng;

/// First retry window: short, so a controller restart costs little.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest window: bounds how long a proxy stays stale after the controller returns.
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// Delay policy for reconnect attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
        }
    }
}

impl Backoff {
    /// The window before attempt `attempt` (0-based): `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn ceiling_doubles_from_base_up_to_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(6), Duration::from_millis(6400));
        assert_eq!(b.ceiling(7), BACKOFF_CAP, "12.8 s is capped at 10 s");
        assert_eq!(b.ceiling(200), BACKOFF_CAP, "huge attempts do not overflow");
    }

    #[test]
    fn delays_are_jittered_over_the_whole_window() {
        let b = Backoff::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(3, &mut rng)).collect();
        let ceiling = b.ceiling(3);
        assert!(
            delays.iter().all(|d| *d <= ceiling),
            "never above the window"
        );
        assert!(
            delays.iter().any(|d| *d < ceiling / 4) && delays.iter().any(|d| *d > ceiling * 3 / 4),
            "full jitter uses the whole window, not just its top"
        );
    }
}
