use std::time::Duration;

use fairway_proto::model::Policy;

use super::*;
use crate::balance::{DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES};

fn terminating(n: u8) -> Endpoint {
    Endpoint {
        ready: false,
        serving: true,
        terminating: true,
        ..ready(n)
    }
}

fn hinted(n: u8, zones: &[&str]) -> Endpoint {
    Endpoint {
        hints_for_zones: zones.iter().map(|z| (*z).to_owned()).collect(),
        ..ready(n)
    }
}

#[test]
fn terminating_takes_traffic_only_when_no_ready_is_left() {
    let mut rng = rng();
    let now = Instant::now();
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        let mut b = Balancer::new(config(policy));
        b.update(&set([ready(1), terminating(2)]), now);
        let counts = shares(&mut b, &mut rng, now, 100);
        assert_eq!(
            count(&counts, 1),
            100,
            "{policy:?}: ready beats terminating: {counts:?}"
        );

        b.update(
            &set([
                Endpoint {
                    ready: false,
                    serving: false,
                    ..ready(1)
                },
                terminating(2),
            ]),
            now,
        );
        let counts = shares(&mut b, &mut rng, now, 100);
        assert_eq!(
            count(&counts, 2),
            100,
            "{policy:?}: terminating when none is ready: {counts:?}"
        );

        b.update(
            &set([Endpoint {
                serving: false,
                ..terminating(2)
            }]),
            now,
        );
        assert_eq!(
            b.pick(now, &mut rng),
            None,
            "{policy:?}: not serving: nothing"
        );
    }
}

#[test]
fn zone_hints_are_preferred_only_when_every_endpoint_has_them() {
    let mut rng = rng();
    let now = Instant::now();
    let in_zone = |zone: Option<&str>| BalanceConfig {
        zone: zone.map(str::to_owned),
        ..config(Policy::RoundRobin)
    };

    let mut b = Balancer::new(in_zone(Some("a")));
    b.update(
        &set([hinted(1, &["a"]), hinted(2, &["b"]), hinted(3, &["a"])]),
        now,
    );
    let counts = shares(&mut b, &mut rng, now, 100);
    assert_eq!(
        (count(&counts, 1), count(&counts, 2), count(&counts, 3)),
        (50, 0, 50),
        "{counts:?}"
    );

    b.update(&set([hinted(1, &["a"]), ready(2), hinted(3, &["a"])]), now);
    let counts = shares(&mut b, &mut rng, now, 99);
    assert_eq!(
        count(&counts, 2),
        33,
        "one endpoint without hints: hints ignored: {counts:?}"
    );

    b.update(&set([hinted(1, &["b"]), hinted(2, &["c"])]), now);
    let counts = shares(&mut b, &mut rng, now, 100);
    assert_eq!(
        counts.len(),
        2,
        "no endpoint for our zone: all of them: {counts:?}"
    );

    let mut unknown = Balancer::new(in_zone(None));
    unknown.update(&set([hinted(1, &["a"]), hinted(2, &["b"])]), now);
    assert_eq!(
        shares(&mut unknown, &mut rng, now, 100).len(),
        2,
        "zone unknown: hints ignored"
    );
}

fn fail(b: &mut Balancer, n: u8, now: Instant) {
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES {
        b.on_start(addr(n));
        b.on_end(
            addr(n),
            Duration::from_millis(1),
            Outcome::ConnectFailure,
            now,
        );
    }
}

#[test]
fn consecutive_failures_eject_for_a_growing_while() {
    let mut rng = rng();
    let t0 = Instant::now();
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        let mut b = Balancer::new(config(policy));
        b.update(&ready_set([1, 2, 3]), t0);
        fail(&mut b, 1, t0);
        assert_eq!(b.eligible_count(), 2, "{policy:?}");
        let counts = shares(&mut b, &mut rng, t0, 100);
        assert_eq!(count(&counts, 1), 0, "{policy:?}: ejected: {counts:?}");
        assert!(b.stats(t0)[0].ejected_for_ms.is_some());

        let t1 = t0 + DEFAULT_BASE_EJECTION;
        assert!(
            count(&shares(&mut b, &mut rng, t1, 100), 1) > 0,
            "{policy:?}: back after 10 s"
        );

        fail(&mut b, 1, t1);
        let t2 = t1 + DEFAULT_BASE_EJECTION;
        assert_eq!(
            count(&shares(&mut b, &mut rng, t2, 100), 1),
            0,
            "{policy:?}: second ejection lasts 20 s"
        );
        let t3 = t1 + DEFAULT_BASE_EJECTION * 2;
        assert!(
            count(&shares(&mut b, &mut rng, t3, 100), 1) > 0,
            "{policy:?}: back after 20 s"
        );
    }
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1, 2]), now);
    for outcome in [
        Outcome::Reset,
        Outcome::Status5xx,
        Outcome::Timeout,
        Outcome::Reset,
        Outcome::Success,
    ] {
        b.on_end(addr(1), Duration::from_millis(1), outcome, now);
    }
    for _ in 0..4 {
        b.record(addr(1), Outcome::Status5xx, now);
    }
    assert_eq!(
        b.eligible_count(),
        2,
        "4 failures since the last success do not eject"
    );
    assert_eq!(count(&shares(&mut b, &mut rng, now, 10), 1), 5);
}

#[test]
fn panic_threshold_ignores_ejection_past_half() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1, 2, 3, 4]), now);
    fail(&mut b, 1, now);
    fail(&mut b, 2, now);
    assert_eq!(b.eligible_count(), 2, "half ejected: ejection honoured");
    fail(&mut b, 3, now);
    assert_eq!(
        b.eligible_count(),
        4,
        "three of four ejected: panic, all take traffic"
    );
    let counts = shares(&mut b, &mut rng, now, 400);
    assert_eq!(counts.len(), 4, "{counts:?}");

    let mut single = Balancer::new(config(Policy::LeastRequest));
    single.update(&ready_set([1]), now);
    fail(&mut single, 1, now);
    assert_eq!(
        single.pick(now, &mut rng),
        Some(addr(1)),
        "ejection never leaves none"
    );
}

#[test]
fn a_failed_health_check_takes_an_endpoint_out_until_it_passes() {
    let mut rng = rng();
    let now = Instant::now();
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        let mut b = Balancer::new(config(policy));
        b.update(&ready_set([1, 2, 3]), now);
        assert!(b.set_health(addr(2), false, now), "{policy:?}: a change");
        assert!(
            !b.set_health(addr(2), false, now),
            "{policy:?}: the same verdict again is none"
        );
        let counts = shares(&mut b, &mut rng, now, 300);
        assert_eq!(
            count(&counts, 2),
            0,
            "{policy:?}: unhealthy takes nothing: {counts:?}"
        );

        b.update(&ready_set([1, 2, 3]), now + Duration::from_secs(1));
        let later = now + Duration::from_secs(600);
        let counts = shares(&mut b, &mut rng, later, 300);
        assert_eq!(
            count(&counts, 2),
            0,
            "{policy:?}: a health verdict survives table updates and has no time limit: {counts:?}"
        );

        assert!(b.set_health(addr(2), true, later));
        let counts = shares(&mut b, &mut rng, later, 300);
        assert!(
            count(&counts, 2) > 50,
            "{policy:?}: back after passing: {counts:?}"
        );
    }
}

#[test]
fn health_failures_obey_the_panic_threshold() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1, 2, 3]), now);
    b.set_health(addr(1), false, now);
    b.set_health(addr(2), false, now);
    let counts = shares(&mut b, &mut rng, now, 300);
    assert_eq!(
        counts.len(),
        3,
        "two of three failing points at a shared cause: every endpoint serves: {counts:?}"
    );
}
