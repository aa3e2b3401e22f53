//! Identical pods get equal shares under every policy, at a gateway's real rate and at a
//! high one: a scripted 1 -> 4 scale-up under open-loop load (arrivals at a fixed rate,
//! whatever the pods do), with latencies drawn like a real pod's (mostly 0.8-1.4 ms, a
//! slow answer now and then, slow first answers). Each second's picks are counted per pod.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use fairway_proto::model::Policy;
use rand::Rng;

use super::*;
use crate::balance::slow_start::ramp_weight;

/// Seconds simulated after the scale-up.
const SECONDS: usize = 30;
/// When the three new pods turn ready: the old pod has answered for two seconds.
const SCALE_AT: Duration = Duration::from_secs(2);

/// One identical pod's answer time: 0.8-1.4 ms, one answer in 200 slow (3-30 ms: a GC
/// pause, a descheduled thread), as pods sharing a node's cores answer; a pod's first
/// answers 5 ms (each rides a new connection).
fn pod_latency(rng: &mut SmallRng, answered: u32) -> Duration {
    let micros = if answered < 8 {
        5_000
    } else if rng.random_ratio(1, 200) {
        rng.random_range(3_000..30_000)
    } else {
        rng.random_range(800..1_400)
    };
    Duration::from_micros(micros)
}

/// Per-second pick counts of pods 1 (the old one) to 4 after the scale-up.
fn scale_up(policy: Policy, slow_start: Option<Duration>, per_second: u32) -> Vec<[u32; 4]> {
    let mut picker = rng();
    let mut pods = SmallRng::seed_from_u64(7);
    let t0 = Instant::now();
    let mut b = Balancer::new(BalanceConfig {
        slow_start,
        ..config(policy)
    });
    b.update(&ready_set([1]), t0);
    let gap = Duration::from_secs(1) / per_second;
    let end = SCALE_AT + Duration::from_secs(SECONDS as u64);
    // Requests in flight: (when it ends, pod, its latency), soonest first.
    let mut ending: BinaryHeap<Reverse<(Duration, u8, Duration)>> = BinaryHeap::new();
    let mut seconds = vec![[0u32; 4]; SECONDS];
    let mut scaled = false;
    let mut answered = [0u32; 4];
    let mut at = Duration::ZERO;
    while at < end {
        while ending.peek().is_some_and(|e| e.0.0 <= at) {
            let Some(Reverse((done, pod, latency))) = ending.pop() else {
                break;
            };
            b.on_end(addr(pod), latency, Outcome::Success, t0 + done);
        }
        if !scaled && at >= SCALE_AT {
            b.update(&ready_set([1, 2, 3, 4]), t0 + at);
            scaled = true;
        }
        let picked = b.pick(t0 + at, &mut picker).expect("eligible");
        b.on_start(picked);
        let pod = (1..=4).find(|&n| addr(n) == picked).expect("one of ours");
        let latency = pod_latency(&mut pods, answered[usize::from(pod - 1)]);
        answered[usize::from(pod - 1)] += 1;
        ending.push(Reverse((at + latency, pod, latency)));
        if at >= SCALE_AT {
            let second = (at - SCALE_AT).as_secs() as usize;
            seconds[second][usize::from(pod - 1)] += 1;
        }
        at += gap;
    }
    seconds
}

/// Percent of the second's picks per pod.
fn percent(counts: &[u32; 4]) -> [f64; 4] {
    let total: u32 = counts.iter().sum();
    counts.map(|n| 100.0 * f64::from(n) / f64::from(total.max(1)))
}

/// Every 1 s window within 25% ± 4 and every 5 s window within ± 2, from `from` on.
fn assert_even(what: &str, seconds: &[[u32; 4]], from: usize) {
    for (i, second) in seconds.iter().enumerate().skip(from) {
        let shares = percent(second);
        assert!(
            shares.iter().all(|s| (s - 25.0).abs() <= 4.0),
            "{what}: second {i} after the scale-up is not 25% ± 4 each: {shares:.1?}\n{}",
            table(seconds)
        );
    }
    for (i, window) in seconds[from..].windows(5).enumerate() {
        let mut sum = [0u32; 4];
        for second in window {
            for (total, n) in sum.iter_mut().zip(second) {
                *total += n;
            }
        }
        let shares = percent(&sum);
        assert!(
            shares.iter().all(|s| (s - 25.0).abs() <= 2.0),
            "{what}: seconds {}-{} are not 25% ± 2 each: {shares:.1?}\n{}",
            from + i,
            from + i + 5,
            table(seconds)
        );
    }
}

fn table(seconds: &[[u32; 4]]) -> String {
    let lines: Vec<String> = seconds
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{i:>3}s {:.1?}", percent(s)))
        .collect();
    lines.join("\n")
}

#[test]
fn identical_pods_get_equal_shares_from_the_first_full_second() {
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        for rate in [1_000, 10_000] {
            let seconds = scale_up(policy, None, rate);
            assert_even(&format!("{policy:?} at {rate} req/s"), &seconds, 1);
        }
    }
}

#[test]
fn a_slow_start_ramp_follows_its_curve_then_shares_are_equal() {
    let window = Duration::from_secs(20);
    for policy in [
        Policy::RoundRobin,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::Prequal,
    ] {
        for rate in [1_000, 10_000] {
            let what = format!("{policy:?} with slowStart 20s at {rate} req/s");
            let seconds = scale_up(policy, Some(window), rate);
            // Each new pod's share at second i follows its weight w against the old
            // pod's full one: w / (1 + 3w), at the middle of the second.
            let t0 = Instant::now();
            for (i, second) in seconds.iter().enumerate().take(20) {
                let middle = t0 + Duration::from_millis(i as u64 * 1_000 + 500);
                let w = f64::from(ramp_weight(Some(t0), Some(window), middle))
                    / f64::from(crate::balance::FULL_WEIGHT);
                let expected = 100.0 * w / (1.0 + 3.0 * w);
                let shares = percent(second);
                for (pod, share) in shares.iter().enumerate().skip(1) {
                    assert!(
                        (share - expected).abs() <= 4.0,
                        "{what}: new pod {} at second {i}: {share:.1}% where the ramp says \
                         {expected:.1}%\n{}",
                        pod + 1,
                        table(&seconds)
                    );
                }
            }
            assert_even(&what, &seconds, 21);
        }
    }
}
