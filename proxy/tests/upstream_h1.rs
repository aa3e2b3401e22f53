//! The proxy's own HTTP/1.1 client against a pod that writes raw bytes: every framing a
//! pod may answer with (length, chunked with trailers, until close, none, interim 1xx),
//! malformed answers (502), and when the connection is reused, counted by the pod's own
//! accepts.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A pod answering each request by its path with fixed bytes; counts its accepts.
struct RawPod {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

fn answer(method: &str, path: &str, body: &[u8]) -> (Vec<u8>, bool) {
    if method == "head" {
        // The length a GET would have, and no body (RFC 9110 §9.3.2).
        return (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_vec(),
            false,
        );
    }
    let (bytes, close): (&[u8], bool) = match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n",
            false,
        ),
        "/close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil close", true),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/nocontent" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "/hops" => (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
              X-Secret: 1\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/garbage" => (b"SURELY NOT HTTP\r\n\r\n", true),
        "/conflict" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            true,
        ),
        "/length" => {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len().to_string().len(),
                body.len()
            );
            return (reply.into_bytes(), false);
        }
        _ => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
    };
    (bytes.to_vec(), close)
}

/// Serves one connection: reads each head (and a Content-Length body), answers.
async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or("/").to_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + length].to_vec();
        buf.drain(..end + 4 + length);
        let (reply, close) = answer(&method, &path, &body);
        if stream.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

impl RawPod {
    async fn start(ip: &str) -> RawPod {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind raw pod");
        let addr = listener.local_addr().expect("addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepts);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        RawPod { addr, accepts }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn proxy_for(pod: &RawPod) -> Proxy {
    Proxy::start(table(
        vec![route("raw", &["raw.shop"], &[("raw", 1)])],
        vec![set("raw", &[pod.addr])],
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_reaches_the_client_and_the_connection_is_reused_when_it_may_be() {
    let pod = RawPod::start("127.0.0.61").await;
    let proxy = proxy_for(&pod).await;
    // The pool pre-warms one connection for a new endpoint: wait for it, so every
    // request below has that one connection to reuse.
    proxy.prewarmed(&[pod.addr]).await;
    let mut client = Client::connect(proxy.addr).await;

    let answer = client.get("raw.shop", "/chunked").await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "hello world")
    );
    let answer = client.get("raw.shop", "/continue").await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "ok"),
        "1xx skipped"
    );
    let answer = client.get("raw.shop", "/nocontent").await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (204, ""));
    let answer = client.get("raw.shop", "/hops").await;
    assert_eq!(answer.headers["x-kept"], "yes", "{:?}", answer.headers);
    for hop in ["connection", "keep-alive", "x-secret"] {
        assert!(
            !answer.headers.contains_key(hop),
            "{hop} stays on the pod's hop: {:?}",
            answer.headers
        );
    }
    // The same over h2c, where hyper writes the response from its map.
    let mut h2 = h2_client(proxy.addr).await;
    let request = Request::get("http://raw.shop/hops")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = h2.send_request(request).await.expect("an h2c answer");
    assert_eq!(
        response.headers()["x-kept"],
        "yes",
        "{:?}",
        response.headers()
    );
    assert!(
        !response.headers().contains_key("x-secret")
            && !response.headers().contains_key("keep-alive"),
        "{:?}",
        response.headers()
    );
    let head = Request::head("/")
        .header("host", "raw.shop")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = client.send(head).await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, ""),
        "HEAD: no body"
    );
    let post = Request::post("/length")
        .header("host", "raw.shop")
        .body(Full::new(Bytes::from_static(b"12345")))
        .expect("request");
    let answer = client.send(post).await;
    assert_eq!(answer.body, "5", "the pod read a 5-byte body");
    assert_eq!(pod.accepts(), 1, "one connection carried all of the above");

    let answer = client.get("raw.shop", "/close").await;
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "until close")
    );
    let answer = client.get("raw.shop", "/").await;
    assert_eq!(answer.body, "ok");
    assert_eq!(pod.accepts(), 2, "a body delimited by close is not reused");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_are_502_and_their_connections_are_dropped() {
    let pod = RawPod::start("127.0.0.62").await;
    let proxy = proxy_for(&pod).await;
    let mut client = Client::connect(proxy.addr).await;
    for path in ["/garbage", "/conflict"] {
        let before = pod.accepts();
        let answer = client.get("raw.shop", path).await;
        assert_eq!(answer.status, 502, "{path}: {answer:?}");
        assert_eq!(answer.error(), Some("UpstreamReset"), "{path}");
        assert!(
            answer.body.contains("malformed") || answer.body.contains("parsing"),
            "{path}: {}",
            answer.body
        );
        let answer = client.get("raw.shop", "/").await;
        assert_eq!(answer.body, "ok", "{path}: the next request works");
        assert!(pod.accepts() > before, "{path}: on a new connection");
    }
    proxy.stop().await;
}
