//! Active gRPC health checks (issue 22, item 5) against grpcio's own health service
//! (grpcio-health-checking's `HealthServicer` in each pod): `health.test` probes every
//! pod every 200 ms; two failures in a row take a pod out, one `SERVING` brings it back.

use std::time::{Duration, Instant};

use super::SERIAL;
use super::world::World;

/// How long a health change may take to show: a few 200 ms intervals on a busy machine.
const CHANGE: Duration = Duration::from_secs(20);
/// Calls per phase: round robin gives every eligible pod several.
const CALLS: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_serving_pod_gets_no_calls_until_it_serves_again() {
    let _serial = SERIAL.lock().await;
    let world = World::start(70, 3).await;

    world.set_health(2, "NOT_SERVING").await;
    wait_for_change(&world, 2, "unhealthy").await;
    let before = sleep_calls(&world).await;
    for _ in 0..CALLS {
        let out = world
            .call("health.test", "Sleep", r#"{"ms": 0}"#, 10.0)
            .await;
        assert_eq!(out["code"], "OK", "the healthy pods answer: {out}");
    }
    let after = sleep_calls(&world).await;
    let got: Vec<u64> = (0..3).map(|i| after[i] - before[i]).collect();
    assert_eq!(got[1], 0, "the NOT_SERVING pod-2 gets no calls: {got:?}");
    assert!(
        got[0] > 0 && got[2] > 0 && got.iter().sum::<u64>() == CALLS,
        "pod-1 and pod-3 take all the calls: {got:?}"
    );
    let metrics = world.proxy_metrics().await;
    let pod2 = world.pod(2);
    let probes = |result: &str| {
        metric(
            &metrics,
            &format!(
                "fairway_proxy_health_checks_total{{endpoint=\"{pod2}\",result=\"{result}\"}}"
            ),
        )
    };
    assert!(
        probes("NotServing") >= 2,
        "the probes that failed pod-2 are counted by answer:\n{metrics}"
    );

    world.set_health(2, "SERVING").await;
    wait_for_change(&world, 2, "healthy").await;
    let before = sleep_calls(&world).await;
    for _ in 0..CALLS {
        let out = world
            .call("health.test", "Sleep", r#"{"ms": 0}"#, 10.0)
            .await;
        assert_eq!(out["code"], "OK", "{out}");
    }
    let after = sleep_calls(&world).await;
    let got: Vec<u64> = (0..3).map(|i| after[i] - before[i]).collect();
    assert!(
        got.iter().all(|&n| n > 0),
        "pod-2 is back once it serves again, beside the others: {got:?}"
    );
}

/// Waits until the proxy counts pod `i` changing `to` health (`healthy`/`unhealthy`).
async fn wait_for_change(world: &World, i: usize, to: &str) {
    let series = format!(
        "fairway_proxy_health_changes_total{{endpoint=\"{}\",to=\"{to}\"}}",
        world.pod(i)
    );
    let until = Instant::now() + CHANGE;
    loop {
        let metrics = world.proxy_metrics().await;
        if metric(&metrics, &series) >= 1 {
            return;
        }
        assert!(
            Instant::now() < until,
            "pod-{i} turned {to} within {CHANGE:?}:\n{metrics}\n{}",
            world.proxy_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Sleep` calls each pod has answered, asked of the pods directly.
async fn sleep_calls(world: &World) -> Vec<u64> {
    let mut calls = Vec::new();
    for i in 1..=3 {
        let stats = world.stats(i).await;
        calls.push(
            stats["sleep_calls"]
                .as_u64()
                .unwrap_or_else(|| panic!("pod-{i} stats: {stats}")),
        );
    }
    calls
}

/// The value of one exact series (`name{labels}`), 0 when absent.
fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}
