//! Real parts for the proxy's integration tests: pods (hyper servers on their own
//! loopback addresses that count their TCP accepts), a table built by hand, the proxy's
//! `serve` on an ephemeral port, and a keep-alive client.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairway_proto::model::{
    Backend, Endpoint, EndpointAddr, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable,
    Rule, Version,
};
use fairway_proxy::accept::{ServerConfig, serve_with_pools};
use fairway_proxy::metrics::Metrics;
use fairway_proxy::pool::Pools;
use fairway_proxy::table::{Table, TableHandle};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Upper bound for any wait in these tests: generous for a loaded 2-core CI machine.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a pod does with a request, by path: `/slow/<ms>` sleeps, `/hang` never
/// answers, `/status/<code>` answers that status, `/echo` lists the request headers in
/// its body; anything else answers `200` with the pod's name.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub accepts: Arc<AtomicUsize>,
    /// TCP connections open right now.
    pub open: Arc<AtomicUsize>,
    /// Requests answered.
    pub requests: Arc<AtomicUsize>,
    /// Requests received (answered or not yet).
    pub started: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl Pod {
    /// A pod on `ip` (e.g. `127.0.0.11`), port chosen by the kernel; serves HTTP/1.1
    /// and h2c on the same port.
    pub async fn start(name: &str, ip: &str) -> Pod {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind pod");
        let addr = listener.local_addr().expect("pod addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (a, o, r, n) = (
            Arc::clone(&accepts),
            Arc::clone(&open),
            Arc::clone(&requests),
            name.to_owned(),
        );
        let st = Arc::clone(&started);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(_) => continue,
                    },
                    _ = &mut stopped => return,
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, r, n) = (Arc::clone(&o), Arc::clone(&r), n.clone());
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        st.fetch_add(1, Ordering::SeqCst);
                        let (r, n) = (Arc::clone(&r), n.clone());
                        async move { Ok::<_, Infallible>(answer(&n, &r, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Pod {
            name: name.to_owned(),
            addr,
            accepts,
            open,
            requests,
            started,
            _stop: stop,
        }
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &str,
    requests: &AtomicUsize,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let mut body = name.to_owned();
    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    } else if path == "/hang" {
        std::future::pending::<()>().await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::OK);
    } else if path == "/echo" {
        body.push('\n');
        body.push_str(&format!("method: {}\nuri: {}\n", req.method(), req.uri()));
        for (k, v) in req.headers() {
            body.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        let received = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        body.push_str(&format!("body: {}\n", String::from_utf8_lossy(&received)));
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

pub fn set_key(service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    }
}

pub fn route_key(name: &str) -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

/// A route `shop/<name>` for `hosts`, one rule `/` over `backends` (service, weight).
pub fn route(name: &str, hosts: &[&str], backends: &[(&str, u32)]) -> Route {
    Route {
        key: route_key(name),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        rules: vec![Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: backends
                .iter()
                .map(|(service, weight)| Backend {
                    endpoint_set: set_key(service),
                    weight: *weight,
                })
                .collect(),
            unresolved: Vec::new(),
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    }
}

/// An endpoint set `shop/<service>:8080` with ready endpoints at `addrs`.
pub fn set(service: &str, addrs: &[SocketAddr]) -> EndpointSet {
    let mut set = EndpointSet::new(set_key(service));
    for addr in addrs {
        let mut endpoint = Endpoint::ready(*addr);
        endpoint.pod = Some(format!("{service}-{addr}"));
        set.endpoints.insert(EndpointAddr(*addr), endpoint);
    }
    set
}

pub fn table(routes: Vec<Route>, sets: Vec<EndpointSet>) -> RouteTable {
    RouteTable {
        routes: routes
            .into_iter()
            .map(|r| (r.key.clone(), r.into()))
            .collect::<BTreeMap<_, _>>(),
        endpoint_sets: sets
            .into_iter()
            .map(|s| (s.key.clone(), s.into()))
            .collect(),
    }
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    pub table: Arc<TableHandle>,
    pub pools: Arc<Pools>,
    pub metrics: Arc<Metrics>,
    sequence: u64,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(source: RouteTable) -> Proxy {
        Proxy::start_with(source, ServerConfig::default()).await
    }

    pub async fn start_with(source: RouteTable, config: ServerConfig) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let table = Arc::new(TableHandle::default());
        let pools = Arc::new(Pools::new());
        let metrics = Arc::new(Metrics::new(true));
        let mut proxy = Proxy {
            addr,
            table: Arc::clone(&table),
            pools: Arc::clone(&pools),
            metrics: Arc::clone(&metrics),
            sequence: 0,
            stop: None,
            done: None,
        };
        proxy.update(source);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            serve_with_pools(config, vec![listener], table, metrics, pools, shutdown)
                .await
                .expect("serve");
        });
        proxy.stop = Some(stop);
        proxy.done = Some(done);
        proxy
    }

    /// Waits until the pool's pre-warmed connection to each of `pods` is idle in the
    /// pool. The pod's accept alone is not enough: a request sent between the accept and
    /// the connection's return to the pool would open a second one.
    pub async fn prewarmed(&self, pods: &[SocketAddr]) {
        for pod in pods {
            eventually(&format!("the pre-warmed connection to {pod}"), || {
                let stats = self.pools.stats();
                stats.get(&EndpointAddr(*pod)).is_some_and(|s| s.idle == 1)
            })
            .await;
        }
    }

    /// Publishes `source` as the next table version.
    pub fn update(&mut self, source: RouteTable) {
        self.sequence += 1;
        let previous = self.table.load();
        let next = Table::build(
            Arc::new(source),
            Version {
                epoch: 1,
                sequence: self.sequence,
            },
            &previous,
            (None, None),
            Instant::now(),
        );
        self.table.store(Arc::new(next));
    }

    /// Starts the shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(WAIT, done).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(done) = &self.done {
            done.abort();
        }
    }
}

/// One keep-alive HTTP/1.1 client connection to the proxy.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn error(&self) -> Option<&str> {
        self.headers
            .get("fairway-error")
            .and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Answer {
        let request = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request).await
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Answer {
        tokio::time::timeout(WAIT, async {
            self.sender.ready().await.expect("client connection ready");
            let response = self.sender.send_request(request).await.expect("response");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
        .await
        .expect("an answer within the test bound")
    }
}

/// One HTTP/2 (prior knowledge) client connection to the proxy.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// One pod `orders` on `ip` behind a proxy with `config`, routed as `orders.shop`.
pub async fn orders_behind(ip: &str, config: ServerConfig) -> (Proxy, Pod) {
    let pod = Pod::start("orders", ip).await;
    let proxy = Proxy::start_with(
        table(
            vec![route("orders", &["orders.shop"], &[("orders", 1)])],
            vec![set("orders", &[pod.addr])],
        ),
        config,
    )
    .await;
    (proxy, pod)
}

/// Writes `raw` to the proxy in one go and reads until it closes the connection.
pub async fn exchange(proxy: &Proxy, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection within the bound")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until `condition` holds, checking every 20 ms for at most [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first body line: the pod that answered.
pub fn pod_of(answer: &Answer) -> &str {
    answer.body.lines().next().unwrap_or("")
}
