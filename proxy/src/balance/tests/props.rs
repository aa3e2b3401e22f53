//! Invariants under random inputs: P2C candidates are distinct, and no pick ever
//! returns an endpoint that is not in the current set.

use std::collections::BTreeSet;
use std::time::Duration;

use fairway_proto::model::Policy;
use proptest::prelude::*;

use super::*;
use crate::balance::choose_two;

#[derive(Clone, Debug)]
enum Op {
    Add(u8),
    Remove(u8),
    Pick,
    Fail(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12).prop_map(Op::Add),
        2 => (0u8..12).prop_map(Op::Remove),
        4 => Just(Op::Pick),
        1 => (0u8..12).prop_map(Op::Fail),
        1 => (0u16..5_000).prop_map(Op::Advance),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::RoundRobin),
        Just(Policy::LeastRequest),
        Just(Policy::PeakEwma),
        Just(Policy::Prequal)
    ]
}

proptest! {
    #[test]
    fn p2c_candidates_are_distinct(len in 2usize..1_000, seed in any::<u64>()) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (a, b) = choose_two(len, &mut rng).expect("len >= 2");
        prop_assert_ne!(a, b);
        prop_assert!(a < len && b < len);
    }

    #[test]
    fn picks_only_current_endpoints(
        policy in policy(),
        slow_start in prop::option::of(1u64..20),
        ops in prop::collection::vec(op(), 1..200),
        seed in any::<u64>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut now = Instant::now();
        let mut b = Balancer::new(BalanceConfig {
            policy,
            slow_start: slow_start.map(Duration::from_secs),
            ..BalanceConfig::default()
        });
        let mut current: BTreeSet<u8> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Add(n) | Op::Remove(n) => {
                    if matches!(op, Op::Add(_)) { current.insert(n); } else { current.remove(&n); }
                    b.update(&ready_set(current.iter().copied()), now);
                    let known: Vec<EndpointAddr> = b.endpoints().iter().map(|s| s.addr()).collect();
                    let expected: Vec<EndpointAddr> = current.iter().map(|&n| addr(n)).collect();
                    prop_assert_eq!(known, expected, "state is exactly the set, no duplicates");
                }
                Op::Pick => {
                    let picked = b.pick(now, &mut rng);
                    prop_assert_eq!(picked.is_none(), current.is_empty());
                    if let Some(picked) = picked {
                        prop_assert!(current.iter().any(|&n| addr(n) == picked), "{picked} was removed");
                        b.on_start(picked);
                    }
                }
                Op::Fail(n) => b.on_end(addr(n), Duration::from_millis(3), Outcome::Reset, now),
                Op::Advance(ms) => now += Duration::from_millis(u64::from(ms)),
            }
        }
    }
}
