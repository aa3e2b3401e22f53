//! Server-reported load: pods' `endpoint-load-metrics` reports weigh the picks under
//! every policy (a pod reporting a quarter of the cost per request gets four times the
//! share), expire, and without them nothing changes. Fails if reports are ignored.

use super::*;
use crate::balance::{REWEIGH, parse_load_report};

/// Pod 0 at 80% CPU and pod 1 at 20%, both at 100 requests per second.
fn report(b: &mut Balancer, now: Instant) {
    let busy =
        parse_load_report(b"TEXT cpu_utilization=0.8, rps_fractional=100").expect("a report");
    let idle =
        parse_load_report(b"TEXT cpu_utilization=0.2, rps_fractional=100").expect("a report");
    b.on_report(addr(0), &busy, now);
    b.on_report(addr(1), &idle, now);
}

#[test]
fn reported_cost_per_request_weighs_every_policy() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        let now = Instant::now();
        let mut b = Balancer::new(config(policy));
        b.update(&ready_set(0..2), now);
        report(&mut b, now);
        // Weights 125 and 500 (gRPC WRR: qps / utilization), recomputed within REWEIGH.
        let later = now + REWEIGH;
        let c = shares(&mut b, &mut rng(), later, 2_000);
        let idle_share = c[&addr(1)] as f64 / 2_000.0;
        assert!(
            (0.75..=0.85).contains(&idle_share),
            "{policy:?}: the pod with a quarter of the cost takes about 80%: {c:?}"
        );
    }
}

#[test]
fn without_reports_or_once_they_expire_pods_weigh_alike() {
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set(0..2), now);
    assert_eq!(
        shares(&mut b, &mut rng(), now, 100)
            .values()
            .collect::<Vec<_>>(),
        [&50, &50]
    );
    report(&mut b, now);
    let skewed = shares(&mut b, &mut rng(), now + REWEIGH, 100);
    assert_eq!(skewed[&addr(1)], 80, "{skewed:?}");
    // No report for longer than the expiry: even again.
    let expired = now + crate::balance::orca::EXPIRY + REWEIGH;
    assert_eq!(
        shares(&mut b, &mut rng(), expired, 100)
            .values()
            .collect::<Vec<_>>(),
        [&50, &50]
    );
}

#[test]
fn reports_without_a_weight_change_nothing() {
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set(0..2), now);
    let no_rate = parse_load_report(b"TEXT cpu_utilization=0.9").expect("a report");
    b.on_report(addr(0), &no_rate, now);
    assert_eq!(
        shares(&mut b, &mut rng(), now + REWEIGH, 100)
            .values()
            .collect::<Vec<_>>(),
        [&50, &50]
    );
}
