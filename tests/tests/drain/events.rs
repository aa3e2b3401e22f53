//! Server-sent events from a terminating pod (issue 19, item 2, the non-gRPC half): an
//! HTTP/1.1 event stream through a real `fairway-proxy` runs on for the Route's
//! `drainTimeout` after the test marks its pod terminating in the EndpointSlice, then
//! the proxy closes it (no final chunk: the client sees the stream cut, not finished),
//! and the client's next request lands on the other pod. The pods are event streams of a
//! few lines here (one `data:` event naming the pod every 100 ms, forever).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fairway_tests::bins::free_port;
use fairway_tests::objects::{route, service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::streams::{PODS, Proxy, local_ip, pod_slice, terminate};
use crate::support::{Setup, WAIT};

const SERVICE: &str = "streams";
const HOST: &str = "events.test";
/// Between two events of a pod.
const EVERY: Duration = Duration::from_millis(100);

/// An event-stream pod; its connections end when it is dropped.
struct EventPod(tokio::task::JoinHandle<()>);

impl Drop for EventPod {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EventPod {
    async fn start(name: &'static str, addr: SocketAddr) -> EventPod {
        let listener =
            (TcpListener::bind(addr).await).unwrap_or_else(|e| panic!("{name}: bind {addr}: {e}"));
        EventPod(tokio::spawn(async move {
            // Dropped with the task: every connection ends with the pod.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(events(stream, name));
            }
        }))
    }
}

/// Answers one request with an endless chunked event stream.
async fn events(mut stream: TcpStream, name: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // A request head is well under 16 KiB; the proxy's is a few hundred bytes.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let start = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                  Transfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(start).await.is_err() {
        return;
    }
    for i in 0u64.. {
        let event = format!("data: {name} {i}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// An event stream through the proxy: the connection and what was read so far.
struct Client {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Client {
    /// `None` while the proxy does not listen yet (before its first table).
    async fn open(proxy: SocketAddr) -> Option<Client> {
        let mut stream = TcpStream::connect(proxy).await.ok()?;
        let request =
            format!("GET /events HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        Some(Client {
            stream,
            read: Vec::new(),
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.read).into_owned()
    }

    /// Reads until the first event arrives (within `within`): the pod it names.
    async fn first_pod(&mut self, within: Duration) -> Option<&'static str> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(pod) = PODS
                .iter()
                .find(|p| self.text().contains(&format!("data: {p} ")))
            {
                return Some(pod);
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(until, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.read.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until the proxy closes the stream (within [`WAIT`]); `true` if it closed.
    async fn until_closed(&mut self) -> bool {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(until, self.stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(n)) => self.read.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_from_a_terminating_pod_is_closed_after_the_drain_timeout() {
    let setup = Setup::new("drain-events").await;
    let ns = setup.ns.clone();
    let ip = local_ip();
    let ports = [free_port(), free_port()];
    let mut pods = Vec::new();
    for (i, name) in PODS.iter().enumerate() {
        pods.push(EventPod::start(name, SocketAddr::new(ip, ports[i])).await);
        (setup.create(&pod_slice(&ns, i, &ip.to_string(), ports[i], false))).await;
    }
    setup.create(&service(&ns, SERVICE, "grpc", 8080)).await;
    let mut events = route(&ns, SERVICE, &[HOST], SERVICE, 8080);
    events.spec.upstream.drain_timeout = "2s".to_owned();
    setup.create(&events).await;
    let controller = setup.controller().await;
    let proxy = Proxy::start(&setup, &controller.endpoint);

    // Routable once a stream's first event arrives; that stream is the one drained.
    let until = Instant::now() + WAIT;
    let (mut client, pinned) = loop {
        let mut seen = String::new();
        if let Some(mut client) = Client::open(proxy.listen).await {
            if let Some(pod) = client.first_pod(Duration::from_secs(2)).await {
                break (client, pod);
            }
            seen = client.text();
        }
        assert!(
            Instant::now() < until,
            "{HOST} streams within {WAIT:?}: {seen}\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let index = PODS
        .iter()
        .position(|p| *p == pinned)
        .expect("one of the pods");
    terminate(&setup, index, &ip.to_string(), ports[index]).await;
    let before = client.text().matches("data: ").count();

    assert!(
        client.until_closed().await,
        "the proxy closes the stream from the terminating {pinned}: {}\n{}",
        client.text(),
        proxy.log_tail()
    );
    let text = client.text();
    assert!(
        text.matches("data: ").count() > before,
        "the stream ran on after {pinned} turned terminating: {text}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "cut, not finished: no last chunk tells the client the stream is complete: {text}"
    );

    let mut again = (Client::open(proxy.listen).await).expect("the proxy listens");
    let landed = again.first_pod(WAIT).await;
    assert!(
        landed.is_some_and(|p| p != pinned),
        "the client's next stream lands on the other pod, not the terminating {pinned}: \
         {landed:?}"
    );
    drop(pods);
    controller.stop().await;
}
