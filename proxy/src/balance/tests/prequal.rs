//! The `Prequal` policy over the balancer's API, with scripted time: scenarios where
//! least request and peak-EWMA choose otherwise, so each test fails if the policy is
//! swapped for either.

use super::*;

/// Pod 1 answers in 10 ms with `busy` requests in flight, pod 2 in `slow_ms` with none
/// in flight, for 400 ms: the answers (piggybacked on the responses) fill the pool and
/// the RIF history. Returns when it ends.
fn history(b: &mut Balancer, t0: Instant, busy: u32, slow_ms: u64) -> Instant {
    for _ in 0..busy {
        b.on_start(addr(1));
    }
    let mut now = t0;
    for _ in 0..40 {
        now += Duration::from_millis(10);
        for (pod, ms) in [(1, 10), (2, slow_ms)] {
            b.on_start(addr(pod));
            b.on_end(addr(pod), Duration::from_millis(ms), Outcome::Success, now);
        }
    }
    now
}

/// The pods each policy picks, 20 times at `now`, nothing started.
fn picks(policy: Policy, busy: u32, slow_ms: u64, hot: u32) -> BTreeMap<EndpointAddr, usize> {
    let t0 = Instant::now();
    let mut b = Balancer::new(config(policy));
    b.update(&ready_set([1, 2]), t0);
    let now = history(&mut b, t0, busy, slow_ms);
    // Requests that make both pods hot without answering (a stall, a burst).
    for _ in 0..hot {
        b.on_start(addr(1));
        b.on_start(addr(2));
    }
    let mut rng = rng();
    let mut counts = BTreeMap::new();
    for _ in 0..20 {
        *counts
            .entry(b.pick(now, &mut rng).expect("eligible"))
            .or_default() += 1;
    }
    counts
}

#[test]
fn cold_pods_rank_by_latency_first() {
    // Pod 1: 10 ms, 2 in flight; pod 2: 25 ms, idle. Half the answers said 2 in flight,
    // so 2 is within the usual (cold): the faster pod wins despite its load.
    assert_eq!(count(&picks(Policy::Prequal, 2, 25, 0), 1), 20);
    // Least request takes the idle pod; peak-EWMA too (10 x 3 > 25 x 1).
    assert_eq!(count(&picks(Policy::LeastRequest, 2, 25, 0), 2), 20);
    assert_eq!(count(&picks(Policy::PeakEwma, 2, 25, 0), 2), 20);
}

#[test]
fn when_every_pod_is_hot_the_fewest_in_flight_wins() {
    // Both idle in the history (nothing above 0 is usual), then 6 more in flight each on
    // top of pod 1's one: both hot, pod 2 (100 ms) has fewer in flight than pod 1 (10 ms).
    assert_eq!(count(&picks(Policy::Prequal, 1, 100, 6), 2), 20);
    // Peak-EWMA weighs latency times load: 10 x 8 < 100 x 7, the fast pod.
    assert_eq!(count(&picks(Policy::PeakEwma, 1, 100, 6), 1), 20);
}

#[test]
fn a_slow_pod_gets_little_and_a_stalled_one_little_while_it_stalls() {
    let (slow, stalled) = slow_and_stalling(Policy::Prequal);
    assert!(
        slow < 0.1,
        "the 3x slower pod: {slow} of a fast one's share"
    );
    assert!(stalled < 0.1, "the stalled pod: {stalled} of a fast one's");
    // Least request sends the slow pod a third of a fast one's (it drains a third as
    // fast); peak-EWMA keeps sending to the stalled pod, whose latency is not known yet.
    for other in [Policy::LeastRequest, Policy::PeakEwma] {
        let (slow, stalled) = slow_and_stalling(other);
        assert!(slow >= 0.1 || stalled >= 0.1, "{other:?}: {slow} {stalled}");
    }
}

/// Open loop, 400 requests a second over four pods for 10 s, latencies independent of
/// load: pods 1 and 2 answer in 10 ms, pod 3 in 30 ms, pod 4 in 10 ms but answers
/// nothing for the last 200 ms of every 2 s (then its backlog). Returns pod 3's picks
/// over pod 1's, and pod 4's over pod 1's during the stalls.
fn slow_and_stalling(policy: Policy) -> (f64, f64) {
    let t0 = Instant::now();
    let mut b = Balancer::new(config(policy));
    b.update(&ready_set(1..=4), t0);
    let mut rng = rng();
    // Requests in flight: (when it ends, pod, when it started).
    let mut ending: Vec<(Duration, u8, Duration)> = Vec::new();
    let mut counts = [0u32; 5];
    let mut during_stalls = [0u32; 5];
    let gap = Duration::from_micros(2_500);
    let stalled = |at: Duration| at.as_millis() % 2_000 >= 1_800;
    let mut at = Duration::ZERO;
    while at < Duration::from_secs(10) {
        ending.sort_by_key(|e| std::cmp::Reverse(e.0));
        while ending.last().is_some_and(|e| e.0 <= at) {
            let Some((done, pod, started)) = ending.pop() else {
                break;
            };
            b.on_end(addr(pod), done - started, Outcome::Success, t0 + done);
        }
        let picked = b.pick(t0 + at, &mut rng).expect("eligible");
        b.on_start(picked);
        let pod = (1..=4)
            .find(|&n| addr(n) == picked)
            .expect("one of the pods");
        counts[usize::from(pod)] += 1;
        let ends = match pod {
            3 => at + Duration::from_millis(30),
            4 if stalled(at) => at + Duration::from_millis(2_000 - at.as_millis() as u64 % 2_000),
            _ => at + Duration::from_millis(10),
        };
        if stalled(at) {
            during_stalls[usize::from(pod)] += 1;
        }
        ending.push((ends, pod, at));
        at += gap;
    }
    let of_fast = |n: u32, fast: u32| f64::from(n) / f64::from(fast.max(1));
    (
        of_fast(counts[3], counts[1]),
        of_fast(during_stalls[4], during_stalls[1]),
    )
}
