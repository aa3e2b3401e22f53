//! Per-endpoint pools, proven by the pods' own TCP accept counts (never by the pool's
//! counters): reuse, the per-endpoint cap, the idle timeout, closing after removal.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_connection_per_pod() {
    let a = Pod::start("a", "127.0.0.11").await;
    let b = Pod::start("b", "127.0.0.12").await;
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[a.addr, b.addr])],
    ))
    .await;
    // Each pod's pre-warmed connection, idle in the pool before the first request, so
    // no request races the pre-warm with a connection of its own.
    proxy.prewarmed(&[a.addr, b.addr]).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..100 {
        let answer = client.get("orders.shop", "/").await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(
        a.requests.load(std::sync::atomic::Ordering::SeqCst),
        50,
        "round robin"
    );
    assert_eq!(
        a.accepts(),
        1,
        "100 sequential requests: one connection to pod a"
    );
    assert_eq!(b.accepts(), 1, "and one to pod b");
    let metrics = proxy.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "fairway_proxy_requests_total{{route=\"shop/orders\",endpoint=\"{}\",code=\"200\"}} 50",
            a.addr
        )),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_cap_is_honoured_under_concurrency() {
    const CAP: u32 = 2;
    const CLIENTS: usize = 12;
    let a = Pod::start("a", "127.0.0.13").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.upstream.max_connections_per_endpoint = CAP;
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[a.addr])])).await;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut ok = 0;
            for _ in 0..3 {
                let answer = client.get("orders.shop", "/slow/30").await;
                assert_eq!(answer.status, 200, "{answer:?}");
                ok += 1;
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.expect("client task");
    }
    assert_eq!(
        ok,
        CLIENTS * 3,
        "every request waits for a connection and succeeds"
    );
    assert!(
        a.accepts() <= CAP as usize,
        "{} connections opened to the pod, cap is {CAP}",
        a.accepts()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() {
    let a = Pod::start("a", "127.0.0.14").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.upstream.idle_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[a.addr])])).await;
    proxy.prewarmed(&[a.addr]).await;
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("orders.shop", "/").await.status, 200);
    assert_eq!(
        a.open(),
        1,
        "the pooled connection stays open right after use"
    );
    eventually("the idle upstream connection to close", || a.open() == 0).await;
    // And the next request opens a fresh one.
    assert_eq!(client.get("orders.shop", "/").await.status, 200);
    assert_eq!(a.accepts(), 2);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_is_drained_under_load_without_failing_a_request() {
    let a = Pod::start("a", "127.0.0.15").await;
    let b = Pod::start("b", "127.0.0.16").await;
    let routes = || vec![route("orders", &["orders.shop"], &[("orders", 1)])];
    let mut proxy = Proxy::start(table(routes(), vec![set("orders", &[a.addr, b.addr])])).await;

    // Load: 4 keep-alive clients, each a bounded number of requests.
    let (go_on, stop) = tokio::sync::watch::channel(true);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = proxy.addr;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut failures = Vec::new();
            let mut sent = 0;
            while *stop.borrow() && sent < 5_000 {
                let answer = client.get("orders.shop", "/slow/2").await;
                if answer.status != 200 {
                    failures.push(answer);
                }
                sent += 1;
            }
            (sent, failures)
        }));
    }
    eventually("load to reach pod b", || {
        b.requests.load(std::sync::atomic::Ordering::SeqCst) > 20
    })
    .await;
    proxy.update(table(routes(), vec![set("orders", &[a.addr])]));
    let served_by_b = b.requests.load(std::sync::atomic::Ordering::SeqCst);
    eventually(
        "pod b's connections to close after it left the table",
        || b.open() == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    go_on.send_replace(false);
    let mut total = 0;
    for task in tasks {
        let (sent, failures) = task.await.expect("client task");
        assert!(
            failures.is_empty(),
            "no request may fail while b drains: {failures:?}"
        );
        total += sent;
    }
    let after = b.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after <= served_by_b + 4,
        "after the update only requests already in flight reach b ({served_by_b} -> {after})"
    );
    assert!(total > 40, "the load really ran ({total} requests)");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upstream_multiplexes_one_connection_per_pod() {
    let a = Pod::start("a", "127.0.0.17").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.upstream.protocol = fairway_proto::model::UpstreamProtocol::Http2;
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[a.addr])])).await;
    proxy.prewarmed(&[a.addr]).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            for _ in 0..5 {
                let answer = client.get("orders.shop", "/slow/10").await;
                assert_eq!(answer.status, 200, "{answer:?}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    assert_eq!(
        a.requests.load(std::sync::atomic::Ordering::SeqCst),
        40,
        "every request reached the pod"
    );
    assert_eq!(
        a.accepts(),
        1,
        "40 requests from 8 clients share one h2c connection"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_rotates_connections_with_jitter() {
    let a = Pod::start("a", "127.0.0.18").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.upstream.max_requests_per_connection = 10;
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[a.addr])])).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..100 {
        assert_eq!(client.get("orders.shop", "/").await.status, 200);
    }
    // 10 ± 10% requests per connection: 100 requests need 9 to 12 connections (the
    // pre-warmed one included).
    let accepts = a.accepts();
    assert!(
        (9..=12).contains(&accepts),
        "{accepts} connections for 100 requests"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish() {
    let a = Pod::start("a", "127.0.0.19").await;
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[a.addr])],
    ))
    .await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.get("orders.shop", "/slow/300").await
    });
    eventually("the request to be in flight", || a.open() >= 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.stop().await;
    let answer = in_flight.await.expect("client task");
    assert_eq!(
        answer.status, 200,
        "finished during the grace period: {answer:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting after shutdown"
    );
}
