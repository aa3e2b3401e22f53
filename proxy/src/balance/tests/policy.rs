use std::time::Duration;

use fairway_proto::model::Policy;

use super::*;
use crate::balance::DEFAULT_DECAY;

#[test]
fn round_robin_scale_up_1_to_4_gives_each_a_quarter() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1]), now);
    assert_eq!(count(&shares(&mut b, &mut rng, now, 100), 1), 100);

    let later = now + Duration::from_secs(1);
    b.update(&ready_set([1, 2, 3, 4]), later);
    let counts = shares(&mut b, &mut rng, later, 4_000);
    for n in 1..=4 {
        assert_eq!(
            count(&counts, n),
            1_000,
            "each pod gets 25% after the scale-up: {counts:?}"
        );
    }
}

#[test]
fn least_request_avoids_the_endpoint_with_10_in_flight() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::LeastRequest));
    b.update(&ready_set([1, 2, 3]), now);
    for _ in 0..10 {
        b.on_start(addr(1));
    }
    let counts = shares(&mut b, &mut rng, now, 300);
    assert_eq!(
        count(&counts, 1),
        0,
        "two distinct candidates: the busy one always loses (round robin would send it 100): {counts:?}"
    );
    assert_eq!(b.endpoint(addr(1)).expect("known").in_flight(), 10);
}

#[test]
fn least_request_balances_concurrency() {
    // Requests that never end: in-flight counts must stay level.
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::LeastRequest));
    b.update(&ready_set([1, 2, 3, 4]), now);
    for _ in 0..400 {
        let picked = b.pick(now, &mut rng).expect("eligible");
        b.on_start(picked);
    }
    let in_flight: Vec<u32> = b.endpoints().iter().map(|s| s.in_flight()).collect();
    let spread =
        in_flight.iter().max().copied().unwrap_or(0) - in_flight.iter().min().copied().unwrap_or(0);
    assert!(
        spread <= 3,
        "P2C keeps in-flight within a few of each other: {in_flight:?}"
    );
}

#[test]
fn peak_ewma_avoids_the_endpoint_that_is_10x_slower() {
    let mut rng = rng();
    let start = Instant::now();
    let mut b = Balancer::new(config(Policy::PeakEwma));
    b.update(&ready_set([1, 2, 3]), start);
    let latency = |a: EndpointAddr| {
        if a == addr(3) {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(10)
        }
    };
    // One client, one request at a time: time advances by each answer's latency.
    let mut now = start;
    let mut counts: BTreeMap<EndpointAddr, usize> = BTreeMap::new();
    for _ in 0..1_000 {
        let picked = b.pick(now, &mut rng).expect("eligible");
        b.on_start(picked);
        now += latency(picked);
        b.on_end(picked, latency(picked), Outcome::Success, now);
        *counts.entry(picked).or_default() += 1;
    }
    assert!(
        count(&counts, 3) < 50,
        "the slow pod gets under 5% (round robin would give it 33%): {counts:?}"
    );
    let slow = b
        .endpoint(addr(3))
        .expect("known")
        .ewma()
        .estimate_ns(now, DEFAULT_DECAY);
    let fast = b
        .endpoint(addr(1))
        .expect("known")
        .ewma()
        .estimate_ns(now, DEFAULT_DECAY);
    assert!(
        slow > fast,
        "the slow pod still looks slower: {slow} vs {fast}"
    );
}

#[test]
fn peak_ewma_weighs_in_flight() {
    // Equal latency: the one with requests outstanding costs more.
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::PeakEwma));
    b.update(&ready_set([1, 2]), now);
    for n in [1, 2] {
        b.on_start(addr(n));
        b.on_end(addr(n), Duration::from_millis(10), Outcome::Success, now);
    }
    b.on_start(addr(1));
    b.on_start(addr(1));
    for _ in 0..20 {
        assert_eq!(
            b.pick(now, &mut rng),
            Some(addr(2)),
            "cost = ewma × (in_flight + 1)"
        );
    }
}

#[test]
fn empty_set_picks_nothing() {
    let mut rng = rng();
    let now = Instant::now();
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        let mut b = Balancer::new(config(policy));
        assert_eq!(b.pick(now, &mut rng), None, "{policy:?} before any update");
        b.update(&ready_set([]), now);
        assert_eq!(b.pick(now, &mut rng), None, "{policy:?} with no endpoints");
    }
}

#[test]
fn removed_endpoints_lose_state_and_survivors_keep_it() {
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::LeastRequest));
    b.update(&ready_set([1, 2]), now);
    b.on_start(addr(1));
    b.on_start(addr(2));
    b.update(&ready_set([2, 3]), now + Duration::from_secs(1));
    assert!(b.endpoint(addr(1)).is_none());
    let two = b.endpoint(addr(2)).expect("survives");
    assert_eq!(
        (two.in_flight(), two.requests(), two.first_seen()),
        (1, 1, now)
    );
    let three = b.endpoint(addr(3)).expect("added");
    assert_eq!(
        (three.in_flight(), three.first_seen()),
        (0, now + Duration::from_secs(1))
    );
    // The late end of a request to a removed endpoint is ignored.
    b.on_end(addr(1), Duration::from_millis(1), Outcome::Success, now);
    assert_eq!(b.stats(now).len(), 2);
}

#[test]
fn policy_change_keeps_state() {
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1, 2, 3]), now);
    for _ in 0..10 {
        b.on_start(addr(1));
    }
    b.set_config(config(Policy::LeastRequest), now);
    assert_eq!(count(&shares(&mut b, &mut rng, now, 100), 1), 0);
}

#[test]
fn balancer_can_sit_behind_a_shared_lock() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Balancer>();
}

#[test]
fn upgrades_are_balanced_by_open_upgraded_connections_not_requests() {
    use crate::balance::Pick;
    let mut rng = rng();
    let now = Instant::now();
    let mut b = Balancer::new(config(Policy::LeastRequest));
    b.update(&ready_set([1, 2, 3]), now);
    // Pod 1 holds 50 WebSockets; pod 2 is busy with requests.
    for _ in 0..50 {
        b.upgrade_opened(addr(1));
    }
    for _ in 0..10 {
        b.on_start(addr(2));
    }
    let mut upgrades = BTreeMap::new();
    for _ in 0..300 {
        let picked = b.pick_for(Pick::Upgrade, now, &mut rng).expect("eligible");
        *upgrades.entry(picked).or_insert(0) += 1;
    }
    assert_eq!(
        upgrades.get(&addr(1)),
        None,
        "new upgrades avoid the pod holding 50 open ones: {upgrades:?}"
    );
    assert!(
        upgrades.get(&addr(2)).is_some_and(|&n| n > 50),
        "requests in flight do not count against upgrades: {upgrades:?}"
    );
    let requests = shares(&mut b, &mut rng, now, 300);
    assert_eq!(
        count(&requests, 2),
        0,
        "and requests avoid the pod with requests in flight, whatever its WebSockets: {requests:?}"
    );
    assert!(count(&requests, 1) > 50, "{requests:?}");

    let stats = b.stats(now);
    assert_eq!(stats[0].open_upgrades, 50, "shown in /debug/routes");
    for _ in 0..50 {
        b.upgrade_closed(addr(1));
    }
    b.upgrade_closed(addr(1));
    assert_eq!(
        b.endpoint(addr(1)).expect("known").open_upgrades(),
        0,
        "closing never underflows"
    );
}
