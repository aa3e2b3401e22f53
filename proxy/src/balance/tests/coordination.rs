//! Coordinated proxies: the controller's figures of the other proxies' requests in
//! flight count beside this proxy's own under the load-aware policies, so proxies do
//! not all pick the pod that looks idle to each of them alone. Figures expire.

use super::*;
use crate::balance::endpoint::OTHERS_EXPIRY;

#[test]
fn the_others_in_flight_steer_the_load_aware_policies() {
    for policy in [Policy::LeastRequest, Policy::PeakEwma, Policy::Prequal] {
        let now = Instant::now();
        let mut b = Balancer::new(config(policy));
        b.update(&ready_set(0..2), now);
        // Other proxies hold 10 requests on pod 0: this proxy sends to pod 1.
        b.set_others(&[(addr(0), 10)], now);
        let steered = shares(&mut b, &mut rng(), now, 100);
        assert_eq!(steered.get(&addr(1)), Some(&100), "{policy:?}: {steered:?}");
        // Figures older than the expiry no longer count: both pods again.
        let later = now + OTHERS_EXPIRY;
        let even = shares(&mut b, &mut rng(), later, 100);
        assert_eq!(even.len(), 2, "{policy:?}: {even:?}");
    }
}

#[test]
fn round_robin_keeps_its_exact_rotation() {
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set(0..2), now);
    b.set_others(&[(addr(0), 10)], now);
    assert_eq!(
        shares(&mut b, &mut rng(), now, 100)
            .values()
            .collect::<Vec<_>>(),
        [&50, &50]
    );
}
