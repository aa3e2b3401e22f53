//! Every error status the proxy answers itself, with its `fairway-error` reason and a
//! body naming the route; retries that are safe, and none that are not.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

/// A loopback port with nothing listening: bound, then closed.
async fn dead_addr(ip: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_naming_the_host() {
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    let answer = client.get("nope.shop:4140", "/").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error(), Some("UnknownHost"));
    assert!(
        answer.body.contains("nope.shop"),
        "body names the host: {}",
        answer.body
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_is_503_naming_the_route() {
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    let answer = client.get("orders.shop", "/").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error(), Some("NoEndpoint"));
    assert!(answer.body.contains("shop/orders"), "{}", answer.body);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_everywhere_is_502_after_retries() {
    let dead = [dead_addr("127.0.0.31").await, dead_addr("127.0.0.32").await];
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &dead)],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    let answer = client.get("orders.shop", "/").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.error(), Some("ConnectFailed"));
    assert!(answer.body.contains("shop/orders"), "{}", answer.body);
    assert!(
        answer.body.to_lowercase().contains("refused"),
        "says why: {}",
        answer.body
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_within_the_request_timeout_is_504() {
    let pod = Pod::start("slow", "127.0.0.33").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.timeouts.request = Duration::from_millis(300);
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[pod.addr])])).await;
    let mut client = Client::connect(proxy.addr).await;
    let started = std::time::Instant::now();
    let answer = client.get("orders.shop", "/hang").await;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(answer.error(), Some("Timeout"));
    assert!(answer.body.contains("shop/orders"), "{}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout covers all tries together, not each one"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_endpoint() {
    let dead = dead_addr("127.0.0.34").await;
    let live = Pod::start("live", "127.0.0.35").await;
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[dead, live.addr])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    // Round robin alternates: every other first try hits the dead endpoint (until
    // outlier ejection takes it out); none of them may fail.
    for _ in 0..10 {
        let answer = client.get("orders.shop", "/").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(pod_of(&answer), "live");
    }
    // Connect failures retry any method: the request was never sent.
    let post = Request::post("/")
        .header("host", "orders.shop")
        .body(Full::new(Bytes::from_static(b"order")))
        .expect("request");
    assert_eq!(client.send(post).await.status, 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_retried_after_it_was_sent_but_a_get_is() {
    let a = Pod::start("a", "127.0.0.36").await;
    let b = Pod::start("b", "127.0.0.37").await;
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[a.addr, b.addr])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    // `/status/503`: each pod answers 503. A POST's 503 goes straight back.
    let post = Request::post("/status/503")
        .header("host", "orders.shop")
        .body(Full::new(Bytes::from_static(b"pay once")))
        .expect("request");
    let answer = client.send(post).await;
    assert_eq!(answer.status, 503);
    let total = a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst);
    assert_eq!(total, 1, "a POST reaches exactly one pod once");

    // A GET's 503 is retried (attempts: 2 by default): three tries, both pods seen.
    let answer = client.get("orders.shop", "/status/503").await;
    assert_eq!(answer.status, 503, "still 503 after the retries");
    let total = a.requests.load(Ordering::SeqCst) + b.requests.load(Ordering::SeqCst);
    assert_eq!(total, 1 + 3, "a GET is tried 1 + 2 times");
    assert!(a.requests.load(Ordering::SeqCst) >= 1 && b.requests.load(Ordering::SeqCst) >= 1);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_requests_route_by_their_authority() {
    let pod = Pod::start("orders", "127.0.0.38").await;
    let proxy = Proxy::start(table(
        vec![route("orders", &["orders.shop"], &[("orders", 1)])],
        vec![set("orders", &[pod.addr])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    // As an app with HTTP_PROXY set sends it: absolute URI, Host of the proxy itself.
    let request = Request::get("http://orders.shop:8080/echo?q=1")
        .header("host", "proxy.local")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = client.send(request).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.body.contains("uri: /echo?q=1\n"),
        "origin-form upstream: {}",
        answer.body
    );
    assert!(
        answer.body.contains("host: orders.shop:8080\n"),
        "{}",
        answer.body
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pick_is_ended_even_when_the_client_goes_away() {
    let pod = Pod::start("a", "127.0.0.39").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.timeouts.request = Duration::from_millis(200);
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[pod.addr])])).await;
    let in_flight = |proxy: &Proxy| -> u32 {
        proxy
            .table
            .load()
            .stats(std::time::Instant::now())
            .values()
            .flatten()
            .map(|s| s.in_flight)
            .sum()
    };
    // A timeout, an answered request, and a client that hangs up mid-request.
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("orders.shop", "/hang").await.status, 504);
    assert_eq!(client.get("orders.shop", "/").await.status, 200);
    let addr = proxy.addr;
    let gone = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.get("orders.shop", "/slow/5000").await
    });
    eventually("the slow request to be in flight", || {
        in_flight(&proxy) == 1
    })
    .await;
    gone.abort();
    eventually("in-flight to return to zero after the client left", || {
        in_flight(&proxy) == 0
    })
    .await;
    proxy.stop().await;
}

/// A pod that accepts and never answers: with `timeouts.perTry` it costs an idempotent
/// request one try, which goes to the healthy pod; a POST is not retried and gets
/// `504 TryTimeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pod_costs_one_try_under_a_per_try_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.63:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        // Accept and hold every connection, reading nothing, answering nothing.
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let live = Pod::start("live", "127.0.0.64").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.timeouts.request = Duration::from_secs(5);
    r.timeouts.per_try = Some(Duration::from_millis(200));
    let proxy = Proxy::start(table(
        vec![r],
        vec![set("orders", &[silent_addr, live.addr])],
    ))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    for i in 0..6 {
        let answer = client.get("orders.shop", "/").await;
        assert_eq!(answer.status, 200, "GET {i}: {answer:?}");
        assert_eq!(pod_of(&answer), "live", "GET {i}");
    }
    proxy.stop().await;

    // Alone, the silent pod answers a POST (never retried once sent) with
    // `504 TryTimeout`: the per-try limit ended it, not the 5 s request timeout
    // (`Timeout`).
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.timeouts.request = Duration::from_secs(5);
    r.timeouts.per_try = Some(Duration::from_millis(200));
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[silent_addr])])).await;
    let mut client = Client::connect(proxy.addr).await;
    let post = Request::post("/")
        .header("host", "orders.shop")
        .body(Full::new(Bytes::from_static(b"x")))
        .expect("request");
    let answer = client.send(post).await;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(answer.error(), Some("TryTimeout"), "{answer:?}");
    assert!(answer.body.contains("per-try timeout"), "{}", answer.body);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_share_on_a_missing_service_is_500_naming_it() {
    let pod = Pod::start("stable", "127.0.0.71").await;
    let mut split = route("split", &["split.shop"], &[("stable", 1)]);
    split.rules[0]
        .unresolved
        .push(fairway_proto::model::UnresolvedBackend {
            service: "gone".into(),
            weight: 1,
            reason: "ServiceNotFound".into(),
            message: "service shop/gone not found".into(),
        });
    let proxy = Proxy::start(table(vec![split], vec![set("stable", &[pod.addr])])).await;
    let mut client = Client::connect(proxy.addr).await;
    let (mut ok, mut missing) = (0, 0);
    for _ in 0..40 {
        let answer = client.get("split.shop", "/").await;
        match answer.status.as_u16() {
            200 => ok += 1,
            500 => {
                assert_eq!(answer.error(), Some("ServiceNotFound"));
                assert!(
                    answer.body.contains("service shop/gone not found"),
                    "{}",
                    answer.body
                );
                missing += 1;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert!(
        ok > 0 && missing > 0,
        "the missing Service keeps its share ({missing}/40), the rest is served ({ok}/40)"
    );
    proxy.stop().await;
}
