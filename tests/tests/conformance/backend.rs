//! Real backends for the conformance runs: an HTTP/1.1 and an h2c server on their own
//! loopback addresses, each recording every request it received (method, target,
//! headers, body), so a test can prove what did, and did not, reach a pod.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_LENGTH;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-conformance-backend";
/// Answered for every other path: at least 5 bytes, so h2spec's flow-control check
/// 6.9.2/2 (which needs a longer answer than the window it sets) runs instead of skipping.
pub const DEFAULT_BODY: &[u8] = b"hello from the backend\n";
/// Answered for `GET /big`: large enough that a slow reader cannot take it in one window.
pub const BIG_BODY: usize = 1 << 20;

/// One request as the backend saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// `Err` when the body broke off (the proxy gave up on the client's body).
    pub body: Result<Bytes, String>,
}

impl Received {
    /// `METHOD target (N body bytes | body error)`, for failure messages.
    pub fn summary(&self) -> String {
        let body = match &self.body {
            Ok(bytes) => format!("{} body bytes", bytes.len()),
            Err(e) => format!("body error: {e}"),
        };
        format!("{} {} ({body})", self.method, self.target)
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2c,
}

/// A running backend; stops when dropped.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Binds `ip` on a port the kernel picks and serves until dropped.
    pub async fn start(name: &'static str, ip: [u8; 4], protocol: Protocol) -> Backend {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .unwrap_or_else(|e| panic!("bind backend {name} on {ip:?}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("backend {name} address: {e}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, name, protocol, Arc::clone(&received)));
        Backend {
            addr,
            received,
            task,
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forgets what was received (between cases).
    pub fn clear(&self) {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn serve(
    listener: TcpListener,
    name: &'static str,
    protocol: Protocol,
    received: Arc<Mutex<Vec<Received>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let received = Arc::clone(&received);
                async move { Ok::<_, Infallible>(answer(name, request, &received).await) }
            });
            let io = TokioIo::new(stream);
            let _ = match protocol {
                Protocol::Http1 => {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                }
                Protocol::H2c => {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                }
            };
        });
    }
}

async fn answer(
    name: &'static str,
    request: Request<hyper::body::Incoming>,
    received: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    let big = parts.uri.path() == "/big";
    received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Received {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body,
        });
    let body = if big {
        Bytes::from(vec![b'x'; BIG_BODY])
    } else {
        Bytes::from_static(DEFAULT_BODY)
    };
    let response = Response::builder()
        .header(BACKEND_HEADER, name)
        .header(CONTENT_LENGTH, body.len());
    // HEAD: the length a GET would get, no body. (hyper's HTTP/2 server resets a HEAD
    // stream whose response carries a body, so the backend must not send one.)
    let body = if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    response.body(Full::new(body)).unwrap_or_default()
}
