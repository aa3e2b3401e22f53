use std::time::Duration;

use fairway_proto::model::Policy;

use super::*;
use crate::balance::{DEFAULT_DECAY, FULL_WEIGHT, MIN_WEIGHT};

const WINDOW: Duration = Duration::from_secs(10);

fn slow(policy: Policy) -> BalanceConfig {
    BalanceConfig {
        slow_start: Some(WINDOW),
        ..config(policy)
    }
}

#[test]
fn first_table_is_not_ramped() {
    let now = Instant::now();
    let mut b = Balancer::new(slow(Policy::RoundRobin));
    b.update(&ready_set([1, 2]), now);
    assert!(b.stats(now).iter().all(|s| s.weight == FULL_WEIGHT));
}

#[test]
fn round_robin_ramps_a_new_endpoint_from_min_share_to_full() {
    let mut rng = rng();
    let t0 = Instant::now();
    let mut b = Balancer::new(slow(Policy::RoundRobin));
    b.update(&ready_set([1]), t0);
    b.update(&ready_set([1, 2]), t0);

    // Weights 1000 : 100, so exactly 1 in 11 picks.
    let counts = shares(&mut b, &mut rng, t0, 1_100);
    assert_eq!(
        count(&counts, 2),
        1_100 * MIN_WEIGHT as usize / (FULL_WEIGHT + MIN_WEIGHT) as usize
    );
    assert_eq!(
        count(&counts, 2),
        100,
        "~MIN_FACTOR share at first: {counts:?}"
    );

    // Half way: 1000 : 500.
    let counts = shares(&mut b, &mut rng, t0 + WINDOW / 2, 1_500);
    assert_eq!(
        count(&counts, 2),
        500,
        "a third half way through: {counts:?}"
    );

    // Done: an even split.
    let counts = shares(&mut b, &mut rng, t0 + WINDOW, 1_000);
    assert_eq!(
        count(&counts, 2),
        500,
        "full share after slow_start: {counts:?}"
    );
}

#[test]
fn ramp_starts_when_an_endpoint_turns_ready() {
    let t0 = Instant::now();
    let mut b = Balancer::new(slow(Policy::RoundRobin));
    let unready = Endpoint {
        ready: false,
        serving: false,
        ..ready(2)
    };
    b.update(&set([ready(1), unready]), t0);
    let t1 = t0 + Duration::from_secs(60);
    b.update(&ready_set([1, 2]), t1);
    let weight = |b: &Balancer, now| b.endpoint(addr(2)).expect("known").weight(now, b.config());
    assert_eq!(
        weight(&b, t1),
        MIN_WEIGHT,
        "the ramp starts at readiness, not at first sight"
    );
    assert_eq!(weight(&b, t1 + WINDOW), FULL_WEIGHT);
}

#[test]
fn least_request_ramping_endpoint_holds_fewer_in_flight() {
    // Requests that never end: P2C divides load by the weight, so a ramping endpoint
    // fills to about a tenth of an old one's concurrency, then to an equal share.
    let mut rng = rng();
    let t0 = Instant::now();
    let mut b = Balancer::new(slow(Policy::LeastRequest));
    b.update(&ready_set([1]), t0);
    b.update(&ready_set([1, 2]), t0);
    for _ in 0..110 {
        let picked = b.pick(t0, &mut rng).expect("eligible");
        b.on_start(picked);
    }
    let new = b.endpoint(addr(2)).expect("known").in_flight();
    assert!(
        (8..=12).contains(&new),
        "about a tenth of 110 at first: {new}"
    );

    let done = t0 + WINDOW;
    for _ in 0..200 {
        let picked = b.pick(done, &mut rng).expect("eligible");
        b.on_start(picked);
    }
    let (old, new) = (
        b.endpoint(addr(1)).expect("known").in_flight(),
        b.endpoint(addr(2)).expect("known").in_flight(),
    );
    assert!(
        old.abs_diff(new) <= 1,
        "level after the ramp: {old} vs {new}"
    );
}

#[test]
fn peak_ewma_cold_endpoint_is_neither_flooded_nor_starved() {
    let cold_in_flight = |slow_start: Option<Duration>| {
        let mut rng = rng();
        let t0 = Instant::now();
        let mut b = Balancer::new(BalanceConfig {
            slow_start,
            ..config(Policy::PeakEwma)
        });
        b.update(&ready_set([1]), t0);
        // The old pod answers in 5 ms; after one decay period its estimate is ~14 ms.
        let t1 = t0 + DEFAULT_DECAY;
        b.on_start(addr(1));
        b.on_end(addr(1), Duration::from_millis(5), Outcome::Success, t1);
        b.update(&ready_set([1, 2]), t1);
        // Concurrent load that has not answered yet: cost = ewma × (in_flight + 1).
        for _ in 0..200 {
            let picked = b.pick(t1, &mut rng).expect("eligible");
            b.on_start(picked);
        }
        b.endpoint(addr(2)).expect("known").in_flight()
    };
    let ramped = cold_in_flight(Some(WINDOW));
    let unramped = cold_in_flight(None);
    assert!(ramped >= 1, "not starved: {ramped}");
    assert!(
        ramped * 4 < unramped,
        "slow start holds the cold pod back: {ramped} vs {unramped} of 200"
    );
}
