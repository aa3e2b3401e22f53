//! The weighted split across a rule's backends, as a pure function of one random roll.

use fairway_proto::model::{Backend, Rule};

/// Where a roll landed in a rule's split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landed {
    /// `rule.backends[i]`.
    Backend(usize),
    /// `rule.unresolved[i]`: its share is answered with the reason it did not resolve.
    Unresolved(usize),
}

/// Where `roll` lands in `rule`'s split over its backends and its unresolved ones.
pub fn landed(rule: &Rule, roll: u64) -> Option<Landed> {
    if rule.unresolved.is_empty() {
        return backend_index(&rule.backends, roll).map(Landed::Backend);
    }
    let weights = rule
        .backends
        .iter()
        .map(|b| b.weight)
        .chain(rule.unresolved.iter().map(|u| u.weight));
    let i = index(weights, roll)?;
    Some(if i < rule.backends.len() {
        Landed::Backend(i)
    } else {
        Landed::Unresolved(i - rule.backends.len())
    })
}

/// The index of the backend that `roll` lands on, with probability `weight / total`.
///
/// `None` when every weight is 0 (weight 0 drains a backend: it is never picked).
/// `roll` is reduced modulo the total weight; with a uniform `u64` the bias is at most
/// `total / 2^64`, far below anything measurable.
fn backend_index(backends: &[Backend], roll: u64) -> Option<usize> {
    index(backends.iter().map(|b| b.weight), roll)
}

fn index(weights: impl Iterator<Item = u32> + Clone, roll: u64) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut point = roll % total;
    for (i, weight) in weights.enumerate() {
        let weight = u64::from(weight);
        if point < weight {
            return Some(i);
        }
        point -= weight;
    }
    unreachable!("point < total = sum of weights")
}

#[cfg(test)]
mod tests {
    use super::{Landed, backend_index, landed};
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
    fn unresolved_backends_keep_their_share() {
        use fairway_proto::model::{Rule, UnresolvedBackend};
        let rule = Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![backend("a", 1)],
            unresolved: vec![UnresolvedBackend {
                service: "gone".into(),
                weight: 1,
                reason: "ServiceNotFound".into(),
                message: "service shop/gone not found".into(),
            }],
        };
        let picks: Vec<_> = (0..4).map(|roll| landed(&rule, roll)).collect();
        assert_eq!(
            picks,
            [
                Some(Landed::Backend(0)),
                Some(Landed::Unresolved(0)),
                Some(Landed::Backend(0)),
                Some(Landed::Unresolved(0)),
            ],
            "half the rolls land on the unresolved backend, none move to the other"
        );
    }

    #[test]
    fn large_weights_do_not_overflow() {
        let backends = [backend("a", u32::MAX), backend("b", u32::MAX)];
        assert_eq!(backend_index(&backends, u64::from(u32::MAX)), Some(1));
        assert_eq!(backend_index(&backends, u64::from(u32::MAX) - 1), Some(0));
    }
}
