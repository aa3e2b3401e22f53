//! A pod that says what it was sent: its name in `x-fairway-pod` (as the demo's pods),
//! and in its body the `Host` and target it got, so a test sees what a rewrite did. It
//! also sends `x-pod-only`, a header a response edit can remove. A `fails` pod answers a
//! request for a path ending in `/status/NNN` with that status (the others answer 200 whatever the path),
//! so a test can make one pod of a Service fail on purpose.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use fairway::demo::pods::POD_HEADER;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A header every answer carries, for response edits to remove.
pub const POD_ONLY: &str = "x-pod-only";

/// One running echo pod; stops when dropped.
pub struct Echo {
    pub requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    pub async fn start(name: &str, addr: SocketAddr, fails: bool) -> Echo {
        let listener = (TcpListener::bind(addr).await)
            .unwrap_or_else(|e| panic!("echo pod {name} on {addr}: {e}"));
        let requests = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&requests);
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, counted) = (name.clone(), Arc::clone(&counted));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let response = answer(&name, fails, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let io = TokioIo::new(stream);
                    let _ = http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Echo { requests, task }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

fn answer<B>(name: &str, fails: bool, request: &Request<B>) -> Response<Full<Bytes>> {
    let host = request.headers().get(hyper::header::HOST);
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let asked = target
        .split_once("/status/")
        .and_then(|(_, s)| s.parse().ok());
    let status = match asked.and_then(|s| StatusCode::from_u16(s).ok()) {
        Some(status) if fails => status,
        _ => StatusCode::OK,
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{host} {target}"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = name.parse() {
        headers.insert(POD_HEADER, value);
    }
    headers.insert(POD_ONLY, hyper::header::HeaderValue::from_static("1"));
    response
}
