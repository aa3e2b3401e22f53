//! The weighted split across a rule's backends, as a pure function of one random roll.

use fairway_proto::model::Backend;

/// The index of the backend that `roll` lands on, with probability `weight / total`.
///
/// `None` when every weight is 0 (weight 0 drains a backend: it is never picked).
/// `roll` is reduced modulo the total weight; with a uniform `u64` the bias is at most
/// `total / 2^64`, far below anything measurable.
pub fn backend_index(backends: &[Backend], roll: u64) -> Option<usize> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = roll % total;
    for (i, backend) in backends.iter().enumerate() {
        let weight = u64::from(backend.weight);
        if point < weight {
            return Some(i);
        }
        point -= weight;
    }
    unreachable!("point < total = sum of weights")
}

#[cfg(test)]
mod tests {
    use super::backend_index;
    use fairway_proto::model::{Backend, EndpointSetKey};
    use std::num::NonZeroU16;

    fn backend(service: &str, weight: u32) -> Backend {
        Backend {
            endpoint_set: EndpointSetKey {
                namespace: "shop".into(),
                service: service.into(),
                port: NonZeroU16::new(80).expect("non-zero"),
            },
            weight,
        }
    }

    #[test]
    fn rolls_land_in_proportion() {
        let backends = [backend("a", 1), backend("zero", 0), backend("b", 3)];
        let picks: Vec<_> = (0..4).map(|roll| backend_index(&backends, roll)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(2), Some(2)]);
        assert_eq!(
            backend_index(&backends, 4),
            Some(0),
            "rolls wrap around the total"
        );
    }

    #[test]
    fn all_zero_or_empty_is_none() {
        assert_eq!(backend_index(&[backend("a", 0)], 7), None);
        assert_eq!(backend_index(&[], 7), None);
    }

    #[test]
    fn large_weights_do_not_overflow() {
        let backends = [backend("a", u32::MAX), backend("b", u32::MAX)];
        assert_eq!(backend_index(&backends, u64::from(u32::MAX)), Some(1));
        assert_eq!(backend_index(&backends, u64::from(u32::MAX) - 1), Some(0));
    }
}
