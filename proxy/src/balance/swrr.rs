//! Smooth weighted round robin, as in nginx (`ngx_http_upstream_get_peer`).
//!
//! Each pick adds every candidate's weight to its running `current`, takes the largest
//! `current` (the first on ties), and subtracts the total weight from the winner. Over
//! any window of `total` picks each candidate gets exactly its weight's worth, spread
//! out rather than in bursts (weights 5/1/1 give `a a b a c a a`).

/// One SWRR step over `(id, weight, current)` entries; returns the chosen id, `None` if
/// there are no entries.
pub fn step<'a, K>(entries: impl IntoIterator<Item = (K, u32, &'a mut i64)>) -> Option<K> {
    let mut total: i64 = 0;
    let mut best: Option<(K, &'a mut i64)> = None;
    for (id, weight, current) in entries {
        let weight = i64::from(weight);
        *current += weight;
        total += weight;
        if best.as_ref().is_none_or(|(_, b)| *current > **b) {
            best = Some((id, current));
        }
    }
    let (id, current) = best?;
    *current -= total;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::step;

    fn sequence(weights: &[u32], picks: usize) -> Vec<usize> {
        let mut current = vec![0i64; weights.len()];
        (0..picks)
            .map(|_| {
                let entries = weights
                    .iter()
                    .zip(current.iter_mut())
                    .enumerate()
                    .map(|(i, (w, c))| (i, *w, c));
                step(entries).expect("non-empty")
            })
            .collect()
    }

    #[test]
    fn weights_1_2_exact_sequence() {
        assert_eq!(sequence(&[1, 2], 6), [1, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn nginx_5_1_1_example() {
        assert_eq!(sequence(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate() {
        assert_eq!(sequence(&[1000, 1000, 1000], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(step(std::iter::empty::<(usize, u32, &mut i64)>()), None);
    }
}
