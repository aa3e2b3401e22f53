//! Affinity: keys stick to endpoints, the same on every proxy; a scale-up moves about
//! 1/N of the keys, all to the new endpoint; no endpoint goes above the bound; keyless
//! requests follow the policy. Each test fails if keyed picks fall back to the policy.

use std::collections::BTreeMap;

use super::*;
use crate::balance::affinity::{Candidate, cap, choose};
use crate::balance::{Pick, key_hash};

fn keyed(policy: Policy, factor: u32) -> BalanceConfig {
    BalanceConfig {
        affinity: Some(factor),
        ..config(policy)
    }
}

fn balancer(cfg: BalanceConfig, ns: impl IntoIterator<Item = u8>, now: Instant) -> Balancer {
    let mut b = Balancer::new(cfg);
    b.update(&ready_set(ns), now);
    b
}

/// Where each of `keys` goes with nothing in flight (every pick ended at once).
fn placement(b: &mut Balancer, keys: u32, now: Instant) -> Vec<EndpointAddr> {
    let mut rng = rng();
    (0..keys)
        .map(|k| {
            let key = key_hash(format!("user-{k}").as_bytes());
            let addr = b
                .pick_keyed(Pick::Request, Some(key), now, &mut rng)
                .expect("an endpoint");
            b.on_start(addr);
            b.on_end(addr, Duration::from_millis(1), Outcome::Success, now);
            addr
        })
        .collect()
}

#[test]
fn a_key_goes_to_the_same_endpoint_on_every_proxy() {
    let now = Instant::now();
    // Two proxies: separate balancers, endpoints learnt in different orders, different
    // policies for keyless requests.
    let mut one = balancer(keyed(Policy::RoundRobin, 125), 0..4, now);
    let mut two = balancer(keyed(Policy::PeakEwma, 125), [3, 1, 0, 2], now);
    let a = placement(&mut one, 2_000, now);
    assert_eq!(a, placement(&mut two, 2_000, now));
    assert_eq!(a, placement(&mut one, 2_000, now), "and again later");
    // Spread over all four, near a quarter each (rendezvous ranks are uniform).
    let mut per: BTreeMap<EndpointAddr, u32> = BTreeMap::new();
    for addr in &a {
        *per.entry(*addr).or_default() += 1;
    }
    assert_eq!(per.len(), 4);
    assert!(per.values().all(|&n| (400..=600).contains(&n)), "{per:?}");
}

#[test]
fn a_scale_up_from_4_to_5_moves_a_fifth_of_the_keys_all_to_the_new_pod() {
    let now = Instant::now();
    let mut b = balancer(keyed(Policy::LeastRequest, 125), 0..4, now);
    let before = placement(&mut b, 10_000, now);
    b.update(&ready_set(0..5), now);
    let after = placement(&mut b, 10_000, now);
    let moved: Vec<_> = (before.iter().zip(&after))
        .filter(|(a, b)| a != b)
        .collect();
    assert!(
        (1_700..=2_300).contains(&moved.len()),
        "{} of 10,000 keys moved",
        moved.len()
    );
    assert!(
        moved.iter().all(|(_, to)| **to == addr(4)),
        "keys move only to the new pod"
    );
}

#[test]
fn a_removed_or_unready_pod_moves_only_its_own_keys() {
    let now = Instant::now();
    let mut b = balancer(keyed(Policy::RoundRobin, 125), 0..4, now);
    let before = placement(&mut b, 4_000, now);
    let mut endpoints = ready_set(0..4);
    endpoints.endpoints.get_mut(&addr(2)).expect("pod 2").ready = false;
    b.update(&endpoints, now);
    let after = placement(&mut b, 4_000, now);
    for (was, is) in before.iter().zip(&after) {
        if *was == addr(2) {
            assert_ne!(*is, addr(2));
        } else {
            assert_eq!(was, is, "keys of the other pods stay");
        }
    }
}

#[test]
fn one_hot_key_spills_within_the_bound() {
    let now = Instant::now();
    let mut b = balancer(keyed(Policy::RoundRobin, 125), 0..4, now);
    let mut rng = rng();
    let key = Some(key_hash(b"celebrity"));
    let mut first = None;
    // 100 requests of one key, all still in flight.
    for _ in 0..100 {
        let addr = b
            .pick_keyed(Pick::Request, key, now, &mut rng)
            .expect("an endpoint");
        first.get_or_insert(addr);
        b.on_start(addr);
    }
    let in_flight: BTreeMap<_, _> = b
        .endpoints()
        .iter()
        .map(|s| {
            (
                s.addr(),
                s.stats(now, &keyed(Policy::RoundRobin, 125)).in_flight,
            )
        })
        .collect();
    // Never above 125% of the average (plus one): 100 / 4 * 1.25 = 31.25.
    assert!(in_flight.values().all(|&n| n <= 32), "{in_flight:?}");
    let home = first.expect("picked");
    assert!(
        in_flight.values().all(|&n| n <= in_flight[&home]) && in_flight[&home] >= 30,
        "the key's own pod is filled to the bound first: {in_flight:?}"
    );
    assert_eq!(in_flight.values().sum::<u32>(), 100);
}

#[test]
fn requests_without_a_key_follow_the_policy() {
    let now = Instant::now();
    let mut b = balancer(keyed(Policy::RoundRobin, 125), 0..4, now);
    let mut rng = rng();
    let picks: Vec<_> = (0..8)
        .map(|_| {
            b.pick_keyed(Pick::Request, None, now, &mut rng)
                .expect("one")
        })
        .collect();
    assert_eq!(picks[..4], picks[4..], "round robin's cycle");
    let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
    assert_eq!(distinct.len(), 4);
}

#[test]
fn a_route_without_affinity_ignores_keys() {
    let now = Instant::now();
    let mut b = balancer(config(Policy::RoundRobin), 0..4, now);
    let mut rng = rng();
    let key = Some(key_hash(b"alice"));
    let picks: std::collections::BTreeSet<_> = (0..4)
        .map(|_| {
            b.pick_keyed(Pick::Request, key, now, &mut rng)
                .expect("one")
        })
        .collect();
    assert_eq!(picks.len(), 4, "round robin, not the key's pod four times");
}

#[test]
fn the_cap_always_leaves_room_somewhere() {
    for n in 1..=8usize {
        for total in 0..200u64 {
            for factor in [100, 125, 200] {
                let cap = cap(total, n, factor);
                // The least loaded endpoint holds at most total / n.
                assert!(
                    total / n as u64 <= cap.saturating_sub(1),
                    "{n} {total} {factor}"
                );
            }
        }
    }
    assert_eq!(choose(1, std::iter::empty::<Candidate>(), 125), None);
}
