//! The downstream HTTP/1.1 fast loop and its handoff to hyper, over raw TCP: requests
//! the loop serves and requests it hands off share one connection, in order, and the
//! loop's own limits hold.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fairway_proxy::accept::ServerConfig;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

async fn proxy_and_pod(ip: &str) -> (Proxy, Pod) {
    let config = ServerConfig {
        header_read_timeout: HEADER_READ_TIMEOUT,
        ..ServerConfig::default()
    };
    orders_behind(ip, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_of_both_paths_are_answered_in_order_on_one_connection() {
    let (proxy, pod) = proxy_and_pod("127.0.0.81").await;
    // The pool pre-warms one connection for a new endpoint: wait for it, so every
    // request below has that one connection to reuse.
    proxy.prewarmed(&[pod.addr]).await;
    // GET and a small PUT: the fast loop. A chunked POST: handed to hyper, which then
    // serves the rest of the connection (the last GET, which asks to close).
    let raw = b"GET /echo?n=1 HTTP/1.1\r\nHost: orders.shop\r\n\r\n\
PUT /echo?n=2 HTTP/1.1\r\nHost: orders.shop\r\nContent-Length: 5\r\n\r\nhello\
POST /echo?n=3 HTTP/1.1\r\nHost: orders.shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n\
GET /echo?n=4 HTTP/1.1\r\nHost: orders.shop\r\nConnection: close\r\n\r\n";
    let out = exchange(&proxy, raw).await;
    assert_eq!(
        out.matches("HTTP/1.1 200 OK\r\n").count(),
        4,
        "four answers: {out}"
    );
    let order: Vec<usize> = [
        "uri: /echo?n=1",
        "uri: /echo?n=2",
        "uri: /echo?n=3",
        "uri: /echo?n=4",
    ]
    .iter()
    .map(|uri| {
        out.find(uri)
            .unwrap_or_else(|| panic!("{uri} answered: {out}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "answers in request order: {out}"
    );
    assert!(
        out.contains("body: hello\n"),
        "the PUT's body reached the pod: {out}"
    );
    assert!(
        out.contains("body: world\n"),
        "the chunked body reached the pod: {out}"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 4);
    assert_eq!(pod.accepts(), 1, "all four over one pooled pod connection");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_and_errors_are_framed_for_keep_alive() {
    let (proxy, _pod) = proxy_and_pod("127.0.0.82").await;
    let raw = b"HEAD / HTTP/1.1\r\nHost: orders.shop\r\n\r\n\
GET / HTTP/1.1\r\nHost: nowhere.shop\r\n\r\n\
GET / HTTP/1.1\r\nHost: orders.shop\r\nConnection: close\r\n\r\n";
    let out = exchange(&proxy, raw).await;
    let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
    assert_eq!(
        heads,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK"
        ],
        "a HEAD answer has no body to misread as the next response: {out}"
    );
    assert!(out.contains("fairway-error: UnknownHost"), "{out}");
    assert!(
        out.ends_with("orders"),
        "the last body is the pod's name: {out}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_no_uri_is_400_with_its_reason() {
    let (proxy, pod) = proxy_and_pod("127.0.0.85").await;
    let out = exchange(
        &proxy,
        b"GET http://[::1/x HTTP/1.1\r\nHost: orders.shop\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("fairway-error: MalformedRequest\r\n"), "{out}");
    assert_eq!(
        out.matches("HTTP/1.1 ").count(),
        1,
        "closed after the 400: {out}"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 0, "nothing forwarded");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_short_is_cut_off_by_the_header_read_timeout() {
    let (proxy, pod) = proxy_and_pod("127.0.0.83").await;
    let started = Instant::now();
    let out = exchange(
        &proxy,
        b"PUT /echo HTTP/1.1\r\nHost: orders.shop\r\nContent-Length: 10\r\n\r\nhel",
    )
    .await;
    assert!(out.is_empty(), "closed without an answer: {out}");
    assert!(
        started.elapsed() >= HEADER_READ_TIMEOUT,
        "not closed before the timeout"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 0, "nothing forwarded");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_cancels_its_request() {
    let (proxy, pod) = proxy_and_pod("127.0.0.84").await;
    proxy.prewarmed(&[pod.addr]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /hang HTTP/1.1\r\nHost: orders.shop\r\n\r\n")
        .await
        .expect("write");
    eventually("the pod has the request", || {
        pod.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    // The request is dropped with the client, and its pooled connection with it: a
    // mid-request connection cannot be reused.
    eventually(
        "the pod's connection closes with the cancelled request",
        || pod.open() == 0,
    )
    .await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_proxy_closes_keep_alive_connections_after_their_next_response() {
    let pod = Pod::start("orders-1", "127.0.0.72").await;
    let config = fairway_proxy::accept::ServerConfig {
        drain_delay: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let mut proxy = Proxy::start_with(
        table(
            vec![route("orders", &["orders.shop"], &[("orders", 1)])],
            vec![set("orders", &[pod.addr])],
        ),
        config,
    )
    .await;
    let mut client = Client::connect(proxy.addr).await;
    let before = client.get("orders.shop", "/").await;
    assert_eq!(before.status, 200);
    assert!(
        before.headers.get("connection").is_none(),
        "keep-alive before the drain: {:?}",
        before.headers
    );
    proxy.begin_stop();
    // New connections are still accepted and served while draining; the drain has
    // begun once such an answer says close.
    let started = std::time::Instant::now();
    loop {
        let mut fresh = Client::connect(proxy.addr).await;
        let during = fresh.get("orders.shop", "/").await;
        assert_eq!(
            during.status, 200,
            "still accepting and serving while draining"
        );
        if during
            .headers
            .get("connection")
            .is_some_and(|v| v == "close")
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "the drain never began");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = client.get("orders.shop", "/").await;
    assert_eq!(
        after.status, 200,
        "the kept-alive connection is served once more"
    );
    assert_eq!(
        after.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "and told to close, so the client reconnects elsewhere: {:?}",
        after.headers
    );
    proxy.stop().await;
}
