//! Power of two choices: sample two distinct candidates at random, keep the cheaper.
//!
//! Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (2001): two
//! random choices cut the maximum load exponentially compared with one, at O(1) cost,
//! and never herd every proxy onto the one endpoint that looks least loaded.

use rand::{Rng, RngCore};

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

/// Of two candidates, the one with the lower cost; `a` on ties (it is random already).
pub fn cheaper<T>(a: T, b: T, cost: impl Fn(&T) -> f64) -> T {
    if cost(&b) < cost(&a) { b } else { a }
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

    #[test]
    fn cheaper_prefers_lower_cost_then_first() {
        assert_eq!(cheaper(1, 2, |x| f64::from(*x)), 1);
        assert_eq!(cheaper(2, 1, |x| f64::from(*x)), 1);
        assert_eq!(cheaper(7, 8, |_| 0.0), 7);
    }
}
