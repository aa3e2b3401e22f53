//! Hostile and malformed input over raw TCP: the proxy answers with the exact status
//! (or closes), never forwards a smuggled request, and keeps serving.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fairway_proxy::accept::ServerConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEADER_BYTES: usize = 8192;
const MAX_HEADERS: usize = 20;
const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(500);

async fn proxy_and_pod(ip: &str) -> (Proxy, Pod) {
    let config = ServerConfig {
        max_header_bytes: MAX_HEADER_BYTES,
        max_headers: MAX_HEADERS,
        header_read_timeout: HEADER_READ_TIMEOUT,
        ..ServerConfig::default()
    };
    orders_behind(ip, config).await
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_431() {
    let (proxy, pod) = proxy_and_pod("127.0.0.41").await;
    let big = "a".repeat(MAX_HEADER_BYTES * 2);
    let raw = format!("GET / HTTP/1.1\r\nHost: orders.shop\r\nX-Big: {big}\r\n\r\n");
    let response = exchange(&proxy, raw.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431() {
    let (proxy, pod) = proxy_and_pod("127.0.0.42").await;
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: orders.shop\r\n");
    for i in 0..MAX_HEADERS * 2 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let response = exchange(&proxy, raw.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_shapes_are_400() {
    let (proxy, pod) = proxy_and_pod("127.0.0.43").await;
    let cases: [(&str, &str); 8] = [
        ("bad request line", "GARBAGE\r\n\r\n"),
        (
            "bad method token",
            "G(T / HTTP/1.1\r\nHost: orders.shop\r\n\r\n",
        ),
        (
            "duplicate differing Content-Length",
            "POST / HTTP/1.1\r\nHost: orders.shop\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "Content-Length list with differing values",
            "POST / HTTP/1.1\r\nHost: orders.shop\r\nContent-Length: 3, 5\r\n\r\nabcde",
        ),
        (
            "negative Content-Length",
            "POST / HTTP/1.1\r\nHost: orders.shop\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            "POST / HTTP/1.1\r\nHost: orders.shop\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: orders.shop\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            "GET / HTTP/1.1\r\nHost: orders.shop\r\nContent-Length : 0\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        let response = exchange(&proxy, raw.as_bytes()).await;
        assert!(
            status_line(&response).starts_with("HTTP/1.1 400"),
            "{what}: expected 400, got {response:?}"
        );
    }
    let response = exchange(&proxy, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 400"),
        "no Host: {response}"
    );
    assert!(
        response.contains("fairway-error: MissingHost"),
        "{response}"
    );
    assert_eq!(
        pod.requests.load(Ordering::SeqCst),
        0,
        "nothing malformed reached the pod"
    );
    // Still serving.
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("orders.shop", "/").await.status, 200);
    proxy.stop().await;
}

/// `Content-Length` together with `Transfer-Encoding` (CL.TE and TE.CL smuggling
/// shapes), in either order: `400 ConflictingFraming`, the connection closes, and
/// neither the request nor what follows it reaches the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400_and_smuggles_nothing() {
    let (proxy, pod) = proxy_and_pod("127.0.0.44").await;
    for (order, headers) in [
        ("CL.TE", "Content-Length: 4\r\nTransfer-Encoding: chunked"),
        ("TE.CL", "Transfer-Encoding: chunked\r\nContent-Length: 4"),
    ] {
        let raw = format!(
            "POST /echo HTTP/1.1\r\nHost: orders.shop\r\n{headers}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: orders.shop\r\n\r\n"
        );
        let response = exchange(&proxy, raw.as_bytes()).await;
        assert!(
            status_line(&response).starts_with("HTTP/1.1 400"),
            "{order}: {response}"
        );
        assert!(
            response.contains("fairway-error: ConflictingFraming"),
            "{order}: {response}"
        );
        assert_eq!(
            response.matches("HTTP/1.1 ").count(),
            1,
            "{order}: one answer, then the connection closes: {response}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        pod.requests.load(Ordering::SeqCst),
        0,
        "neither the request nor the smuggled GET reached the pod"
    );
    // The next, ordinary connection is served.
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("orders.shop", "/").await.status, 200);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_after_the_header_read_timeout() {
    let (proxy, pod) = proxy_and_pod("127.0.0.45").await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let started = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nHost: orders.shop\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for byte in head.iter().take(60) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Did the proxy close on us?
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the proxy closed the slow connection");
    assert!(
        closed_after >= HEADER_READ_TIMEOUT && closed_after < HEADER_READ_TIMEOUT * 6,
        "closed after {closed_after:?}, header read timeout is {HEADER_READ_TIMEOUT:?}"
    );
    assert_eq!(pod.requests.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_and_forwarded_for_is_set() {
    let (proxy, _pod) = proxy_and_pod("127.0.0.46").await;
    let hops = "Connection: close, x-secret\r\nX-Secret: hidden\r\nKeep-Alive: timeout=5\r\n\
                Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
                TE: gzip\r\nTrailer: x-checksum\r\n";
    // Each way a request's fields reach the pod: hyper's path (an `Upgrade` hands the
    // connection to hyper); the fast loop with fields that need the map's edits; the
    // fast loop copying the client's raw lines, less the fixed hop-by-hop ones.
    let cases = [
        (
            format!(
                "GET /echo HTTP/1.1\r\nHost: orders.shop\r\n{hops}Upgrade: websocket\r\n\
                 X-Forwarded-For: 203.0.113.7\r\nX-End-To-End: kept\r\n\r\n"
            ),
            "203.0.113.7, 127.0.0.1",
        ),
        (
            format!(
                "GET /echo HTTP/1.1\r\nHost: orders.shop\r\n{hops}\
                 X-Forwarded-For: 203.0.113.7\r\nX-End-To-End: kept\r\n\r\n"
            ),
            "203.0.113.7, 127.0.0.1",
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: orders.shop\r\nConnection: close\r\n\
             Keep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             Proxy-Connection: keep-alive\r\nX-End-To-End: kept\r\n\r\n"
                .to_owned(),
            "127.0.0.1",
        ),
    ];
    for (raw, forwarded_for) in cases {
        let response = exchange(&proxy, raw.as_bytes()).await;
        assert!(
            status_line(&response).starts_with("HTTP/1.1 200"),
            "{response}"
        );
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let gone = [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ];
        let kept = [
            "x-end-to-end: kept".to_owned(),
            format!("x-forwarded-for: {forwarded_for}"),
            "x-forwarded-proto: http".to_owned(),
        ];
        assert_echoed(body, &gone, &kept, &raw);
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_clients_raw_fields_reach_an_h2c_pod_cleaned() {
    // The fast loop keeps a request's fields raw; to an h2c pod they go through hyper's
    // map, where the hop-by-hop ones must still be dropped and `Host` becomes
    // `:authority`.
    let pod = Pod::start("a", "127.0.0.48").await;
    let mut r = route("orders", &["orders.shop"], &[("orders", 1)]);
    r.upstream.protocol = fairway_proto::model::UpstreamProtocol::Http2;
    let proxy = Proxy::start(table(vec![r], vec![set("orders", &[pod.addr])])).await;
    let raw = "GET /echo?x=1 HTTP/1.1\r\nHost: orders.shop\r\nConnection: close\r\n\
               Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
               Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-End-To-End: kept\r\n\r\n";
    let response = exchange(&proxy, raw.as_bytes()).await;
    assert!(
        status_line(&response).starts_with("HTTP/1.1 200"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.contains("\nuri: http://orders.shop/echo?x=1\n"),
        "{body}"
    );
    // hyper's HTTP/2 drops the connection-specific ones itself; not the others.
    let gone = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "host",
    ];
    let kept = [
        "x-end-to-end: kept".to_owned(),
        "x-forwarded-for: 127.0.0.1".to_owned(),
    ];
    assert_echoed(body, &gone, &kept, raw);
    proxy.stop().await;
}

/// Checks the pod's `/echo` listing of the headers it got: no field named in `gone`,
/// every line of `kept`. `sent` is what the client wrote, for the failure message.
fn assert_echoed(body: &str, gone: &[&str], kept: &[String], sent: &str) {
    for name in gone {
        assert!(
            !body.contains(&format!("\n{name}:")),
            "{name} reached the pod:\n{sent}\n{body}"
        );
    }
    for line in kept {
        assert!(
            body.contains(&format!("\n{line}\n")),
            "{line:?} did not reach the pod:\n{sent}\n{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_the_same_port() {
    let (proxy, pod) = proxy_and_pod("127.0.0.47").await;
    let mut h2 = h2_client(proxy.addr).await;
    for _ in 0..3 {
        let request = http::Request::get("http://orders.shop/")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let response = tokio::time::timeout(WAIT, h2.send_request(request))
            .await
            .expect("bounded")
            .expect("h2 response");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(pod.requests.load(Ordering::SeqCst), 3);
    proxy.stop().await;
}
