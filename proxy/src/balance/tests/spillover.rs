//! Spillover: with node hints keeping requests on this node's pods, requests spread
//! over every pod once the local ones average the Route's limit in flight, and come
//! back below half of it. Fails if the spill never starts, never ends, or starts
//! without the option.

use std::collections::BTreeSet;

use super::*;
use crate::balance::Pick;

/// Pods 0 and 1 hinted for our node `n1`, pods 2 and 3 for another.
fn hinted() -> EndpointSet {
    set((0..4).map(|n| {
        let mut e = ready(n);
        e.hints_for_nodes = vec![if n < 2 { "n1" } else { "n2" }.to_owned()];
        e
    }))
}

fn balancer(spillover: Option<u32>, now: Instant) -> Balancer {
    let mut b = Balancer::new(BalanceConfig {
        spillover,
        node: Some("n1".to_owned()),
        ..config(Policy::RoundRobin)
    });
    b.update(&hinted(), now);
    b
}

/// `n` picks started and left in flight; the addresses picked.
fn hold(b: &mut Balancer, n: usize, now: Instant) -> Vec<EndpointAddr> {
    let mut rng = rng();
    (0..n)
        .map(|_| {
            let addr = b
                .pick_keyed(Pick::Request, None, now, &mut rng)
                .expect("one");
            b.on_start(addr);
            addr
        })
        .collect()
}

fn end(b: &mut Balancer, addrs: &[EndpointAddr], now: Instant) {
    for &addr in addrs {
        b.on_end(addr, Duration::from_millis(1), Outcome::Success, now);
    }
}

#[test]
fn busy_local_pods_spill_over_every_pod_and_come_back() {
    let now = Instant::now();
    let mut b = balancer(Some(3), now);
    let local: BTreeSet<_> = [addr(0), addr(1)].into();
    // Up to 3 in flight per local pod: 6 requests stay local.
    let first = hold(&mut b, 6, now);
    assert!(first.iter().all(|a| local.contains(a)), "{first:?}");
    // The local pods average 3 now: the next requests spread over all four.
    let spilled = hold(&mut b, 8, now);
    let reached: BTreeSet<_> = spilled.iter().copied().collect();
    assert_eq!(reached.len(), 4, "every pod takes requests: {spilled:?}");
    // Local load falls to 1.5 per pod (half the limit): still spilling.
    let local_spilled: Vec<_> = spilled
        .iter()
        .copied()
        .filter(|a| local.contains(a))
        .collect();
    end(&mut b, &local_spilled, now);
    end(&mut b, &first[..3], now);
    let still = hold(&mut b, 4, now);
    assert!(still.iter().any(|a| !local.contains(a)), "{still:?}");
    // Everything done: below half, back to the local pods only.
    end(&mut b, &still, now);
    end(&mut b, &first[3..], now);
    end(&mut b, &spilled, now);
    let back = hold(&mut b, 4, now);
    assert!(back.iter().all(|a| local.contains(a)), "{back:?}");
}

#[test]
fn without_the_option_local_pods_take_everything() {
    let now = Instant::now();
    let mut b = balancer(None, now);
    let picked = hold(&mut b, 40, now);
    assert!(
        picked.iter().all(|a| [addr(0), addr(1)].contains(a)),
        "{picked:?}"
    );
}
