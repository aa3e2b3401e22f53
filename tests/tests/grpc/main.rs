//! gRPC through a real proxy, with peers no one on the project wrote: Python `grpcio`
//! servers as pods and grpcio's own client, all in `tests/grpc/peer.py`. Each test starts
//! its own controller (`--static-dir`), proxy and pods on loopback ([`world::World`]).
//!
//! Needs the `fairway-controller` and `fairway-proxy` binaries of this build and the test
//! venv with `grpcio` (tests/run.sh builds and installs them).

mod health;
mod world;

use std::time::{Duration, Instant};

use world::World;

/// Every test here runs several processes on 2 shared cores: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_outlives_the_request_timeout_within_its_deadline() {
    let _serial = SERIAL.lock().await;
    let world = World::start(10, 1).await;
    // The route's request timeout is 2 s; the client allows 10 s for a 4 s call.
    let out = world
        .call("rpc.test", "Sleep", r#"{"ms": 4000}"#, 10.0)
        .await;
    assert_eq!(
        out["code"],
        "OK",
        "a gRPC call within its grpc-timeout is not cut by timeouts.request: {out}\n{}",
        world.proxy_log_tail()
    );
    // A deadline decades away (grpc-timeout in hours, the largest unit) is no deadline
    // to keep, not a clock overflow.
    let out = world.call("rpc.test", "Sleep", r#"{"ms": 0}"#, 3.0e8).await;
    assert_eq!(out["code"], "OK", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_ends_as_deadline_exceeded_and_the_pod_sees_the_cancel() {
    let _serial = SERIAL.lock().await;
    let world = World::start(20, 1).await;
    let out = world
        .call("rpc.test", "Sleep", r#"{"ms": 5000}"#, 0.5)
        .await;
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    let seconds = out["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(
        seconds < 1.5,
        "the call ends near its 500 ms deadline: {out}"
    );
    // The pod notices within its 10 ms poll; give it a bounded while.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = world.stats(1).await;
        if stats["cancelled"] == 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the pod sees the cancelled call within 5 s: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = world.proxy_metrics().await;
    assert_eq!(
        grpc_calls(&metrics, "rpc/rpc", "DEADLINE_EXCEEDED"),
        1,
        "the call the client gave up at its deadline counts as DEADLINE_EXCEEDED:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_maximum_caps_a_longer_deadline_as_deadline_exceeded() {
    let _serial = SERIAL.lock().await;
    let world = World::start(25, 1).await;
    // grpcMaximum 1s on capped.test; the client allows 10 s for a 3 s call.
    let out = world
        .call("capped.test", "Sleep", r#"{"ms": 3000}"#, 10.0)
        .await;
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    assert_eq!(
        out["trailers"]["fairway-error"], "Deadline",
        "the proxy, not the client, ended it: {out}"
    );
    let details = out["details"].as_str().unwrap_or("");
    assert!(
        details.contains("rpc/capped"),
        "the message names the route: {out}"
    );
    let seconds = out["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(
        (0.9..2.5).contains(&seconds),
        "cut near the 1 s maximum: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_made_errors_are_grpc_statuses_with_the_reason() {
    let _serial = SERIAL.lock().await;
    let world = World::start(30, 1).await;
    // (authority, expected grpc-status name, fairway-error reason)
    let cases = [
        ("nope.test", "UNAVAILABLE", "UnknownHost"),
        ("gone.test", "UNAVAILABLE", "ConnectFailed"),
        ("h1.test", "UNAVAILABLE", "UpstreamReset"),
        ("empty.test", "UNAVAILABLE", "NoEndpoint"),
        ("missing.test", "INTERNAL", "ServiceNotFound"),
    ];
    for (authority, code, reason) in cases {
        let out = world.call(authority, "Sleep", r#"{"ms": 0}"#, 5.0).await;
        assert_eq!(out["code"], code, "{authority}: {out}");
        let details = out["details"].as_str().unwrap_or("");
        assert!(
            details.starts_with(reason),
            "{authority}: grpc-message names the reason {reason}: {out}"
        );
        assert_eq!(
            out["trailers"]["fairway-error"], reason,
            "{authority}: the fairway-error header is kept: {out}"
        );
    }
    let out = world.call("gone.test", "Sleep", "{}", 5.0).await;
    let details = out["details"].as_str().unwrap_or("");
    assert!(
        details.contains("rpc/gone"),
        "the message names the route: {out}"
    );
    // A pod slower than the per-try timeout, no retry left: the time ran out.
    let out = world
        .call("slow.test", "Sleep", r#"{"ms": 2000}"#, 10.0)
        .await;
    assert_eq!(out["code"], "DEADLINE_EXCEEDED", "{out}");
    assert_eq!(out["trailers"]["fairway-error"], "TryTimeout", "{out}");
    let out = world.call("h1.test", "Sleep", "{}", 5.0).await;
    let details = out["details"].as_str().unwrap_or("");
    assert!(
        details.contains("rpc/h1") && details.contains("spec.upstream.protocol: HTTP2"),
        "a gRPC call on a Route left on HTTP1 says how to fix it: {out}"
    );
    let metrics = world.proxy_metrics().await;
    assert_eq!(
        grpc_calls(&metrics, "", "UNAVAILABLE"),
        1,
        "the unknown host counts under no route:\n{metrics}"
    );
    assert_eq!(
        grpc_calls(&metrics, "rpc/gone", "UNAVAILABLE"),
        2,
        "both calls to the dead pod count with their status:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_killed_mid_stream_reaches_the_client_as_unavailable() {
    let _serial = SERIAL.lock().await;
    let world = World::start(40, 1).await;
    let pid = world.pod_pid(1).to_string();
    let out = world
        .client(&[
            "stream",
            &world.proxy(),
            "rpc.test",
            r#"{"n": 50, "ms": 100}"#,
            &pid,
        ])
        .await;
    assert_eq!(
        out["code"], "UNAVAILABLE",
        "as a direct connection to the killed pod would: {out}"
    );
    assert!(out["messages"].as_u64() >= Some(1), "{out}");
    let metrics = world.proxy_metrics().await;
    assert_eq!(
        grpc_calls(&metrics, "rpc/rpc", "UNAVAILABLE"),
        1,
        "the broken stream counts as UNAVAILABLE:\n{metrics}"
    );
}

/// `Fail` calls pod `i` has seen.
async fn fail_calls(world: &World, i: usize) -> u64 {
    world.stats(i).await["fail_calls"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_grpc_status_is_retried_on_another_pod_and_another_is_not() {
    let _serial = SERIAL.lock().await;
    let world = World::start(50, 2).await;
    // pod-1 answers UNAVAILABLE (retried by default), pod-2 OK: every call succeeds.
    let body = r#"{"code": "UNAVAILABLE", "only": "pod-1"}"#;
    for _ in 0..10 {
        let out = world.call("rpc.test", "Fail", body, 10.0).await;
        assert_eq!(
            out["code"], "OK",
            "UNAVAILABLE from pod-1 is retried on pod-2: {out}"
        );
        assert_eq!(out["reply"]["pod"], "pod-2", "{out}");
    }
    let (first, second) = (fail_calls(&world, 1).await, fail_calls(&world, 2).await);
    assert!(
        first >= 1 && second == 10,
        "pod-2 answered all 10, pod-1 was tried too: pod-1 {first}, pod-2 {second}"
    );
    let metrics = world.proxy_metrics().await;
    assert!(
        metrics.contains("fairway_proxy_retries_total{route=\"rpc/rpc\",reason=\"grpc_status\"}"),
        "retries on a gRPC status are counted:\n{metrics}"
    );

    // INTERNAL is not listed: one try only.
    let out = world
        .call("rpc.test", "Fail", r#"{"code": "INTERNAL"}"#, 10.0)
        .await;
    assert_eq!(out["code"], "INTERNAL", "{out}");
    let total = fail_calls(&world, 1).await + fail_calls(&world, 2).await;
    assert_eq!(total, first + second + 1, "INTERNAL is not retried");

    let metrics = world.proxy_metrics().await;
    // The readiness probe's Stats call is an OK too.
    assert!(
        grpc_calls(&metrics, "rpc/rpc", "OK") >= 10,
        "the 10 retried calls count as OK:\n{metrics}"
    );
    assert_eq!(
        grpc_calls(&metrics, "rpc/rpc", "INTERNAL"),
        1,
        "the INTERNAL call counts with its gRPC status, not HTTP 200:\n{metrics}"
    );
    assert!(
        metrics.contains("fairway_proxy_grpc_call_duration_seconds_count{route=\"rpc/rpc\"}"),
        "gRPC calls are timed to their trailers:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_retry_pushback_is_honoured() {
    let _serial = SERIAL.lock().await;
    let world = World::start(60, 2).await;
    // Every pod UNAVAILABLE, asking for 400 ms: the route's 2 retries wait 0.8 s in all.
    let body = r#"{"code": "UNAVAILABLE", "pushback_ms": 400}"#;
    let out = world.call("rpc.test", "Fail", body, 10.0).await;
    assert_eq!(out["code"], "UNAVAILABLE", "{out}");
    let seconds = out["seconds"].as_f64().unwrap_or(0.0);
    assert!(seconds >= 0.8, "two retries, 400 ms apart each: {out}");
    let total = fail_calls(&world, 1).await + fail_calls(&world, 2).await;
    assert_eq!(total, 3, "the first try and 2 retries");

    // A negative pushback: the pod asks not to be retried.
    let body = r#"{"code": "UNAVAILABLE", "pushback_ms": -1}"#;
    let out = world.call("rpc.test", "Fail", body, 10.0).await;
    assert_eq!(out["code"], "UNAVAILABLE", "{out}");
    let after = fail_calls(&world, 1).await + fail_calls(&world, 2).await;
    assert_eq!(after, total + 1, "a negative pushback is not retried");
}

/// The sum of `fairway_proxy_grpc_calls_total` for `route` and `status` (every endpoint).
fn grpc_calls(metrics: &str, route: &str, status: &str) -> u64 {
    let route = format!("route=\"{route}\"");
    let status = format!("grpc_status=\"{status}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("fairway_proxy_grpc_calls_total{"))
        .filter(|l| l.contains(&route) && l.contains(&status))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
