//! The share window as the balancer fills it: requests per endpoint against the fair
//! split, across a scale-up, a slow-start ramp and the window's end.

use fairway_proto::load::{EndpointLoad, skew};

use super::*;

fn figures(b: &Balancer, now: Instant) -> Vec<(u64, f64)> {
    b.load(now)
        .expect("a request was picked")
        .iter()
        .map(|e: &EndpointLoad| (e.requests, e.expected))
        .collect()
}

fn skew_of(b: &Balancer, now: Instant) -> Option<f64> {
    skew(figures(b, now).into_iter())
}

#[test]
fn no_figures_before_the_first_request_then_from_it_on() {
    let t0 = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1]), t0);
    assert!(b.load(t0).is_none(), "nothing to report before a request");
    shares(&mut b, &mut rng(), t0, 1);
    assert_eq!(figures(&b, t0), vec![(1, 1.0)]);
    assert_eq!(
        skew_of(&b, t0),
        Some(0.0),
        "one endpoint, one request: fair"
    );
    let later = t0 + Duration::from_secs(60);
    assert_eq!(figures(&b, later), vec![(0, 0.0)], "the window emptied");
    assert!(b.load(later).is_some(), "still listed once seen");
}

#[test]
fn round_robin_after_a_scale_up_is_fair_slot_by_slot() {
    let t0 = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    let mut rng = rng();
    b.update(&ready_set([1]), t0);
    shares(&mut b, &mut rng, t0, 100);
    let t1 = t0 + Duration::from_millis(1_500);
    b.update(&ready_set([1, 2, 3, 4]), t1);
    shares(&mut b, &mut rng, t1, 400);
    let f = figures(&b, t1);
    assert_eq!(f[0].0, 200, "100 alone, then a quarter of 400");
    assert_eq!(
        f[3],
        (100, 100.0),
        "a new pod: a quarter of what came after it"
    );
    assert_eq!(
        skew_of(&b, t1),
        Some(0.0),
        "the single-pod second was fair too"
    );
}

#[test]
fn an_eligibility_change_sets_the_split_of_the_running_slot() {
    // Documented approximation: a slot's expected split is the one written last, so
    // the requests before a mid-slot change are judged by the new split.
    let t0 = Instant::now();
    let mut b = Balancer::new(config(Policy::RoundRobin));
    b.update(&ready_set([1, 2, 3, 4]), t0);
    let mut rng = rng();
    shares(&mut b, &mut rng, t0, 4);
    assert_eq!(skew_of(&b, t0), Some(0.0));
    let mut only_first = ready_set([1, 2, 3, 4]);
    for n in 2..=4 {
        let e = only_first.endpoints.get_mut(&addr(n)).expect("listed");
        (e.ready, e.serving) = (false, false);
    }
    b.update(&only_first, t0);
    shares(&mut b, &mut rng, t0, 96);
    let f = figures(&b, t0);
    assert_eq!(f[0], (97, 100.0), "all 100 expected on the one pod left");
    assert_eq!(f[1], (1, 0.0), "expected nothing: left out of the maximum");
    let s = skew_of(&b, t0).expect("requests");
    assert!((s - 0.03).abs() < 1e-9, "|0.97 - 1| / 1: {s}");
}

#[test]
fn a_slow_start_ramp_is_the_expected_share_not_skew() {
    let t0 = Instant::now();
    let mut cfg = config(Policy::RoundRobin);
    cfg.slow_start = Some(Duration::from_secs(10));
    let mut b = Balancer::new(cfg);
    let mut rng = rng();
    b.update(&ready_set([1, 2]), t0);
    shares(&mut b, &mut rng, t0, 10);
    let t1 = t0 + Duration::from_secs(1);
    b.update(&ready_set([1, 2, 3]), t1);
    shares(&mut b, &mut rng, t1, 1_000);
    let f = figures(&b, t1);
    assert!(
        f[2].1 < f[0].1 / 5.0,
        "a pod at the start of its ramp is expected to take far less: {f:?}"
    );
    let s = skew_of(&b, t1).expect("requests");
    assert!(
        s < 0.05,
        "SWRR follows the ramp's weights closely: skew {s}, {f:?}"
    );
}
