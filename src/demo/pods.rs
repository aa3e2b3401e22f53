//! Stand-in pods: real HTTP/1.1 servers on distinct loopback addresses
//! (`127.0.0.11:PORT`, `127.0.0.12:PORT`, ...), each answering with its name and counting
//! the requests and TCP connections it took, so shares are measured where they land.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The header every pod answer carries: which pod answered.
pub const POD_HEADER: &str = "x-fairway-pod";

/// One running pod.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pod {
    /// Binds `addr` (port 0 picks one) and serves until dropped.
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Pod> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(
            listener,
            Bytes::from(name.to_owned()),
            Arc::clone(&requests),
            Arc::clone(&connections),
        ));
        Ok(Pod {
            name: name.to_owned(),
            addr,
            requests,
            connections,
            task,
        })
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn serve(
    listener: TcpListener,
    name: Bytes,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                requests.fetch_add(1, Ordering::Relaxed);
                let response = Response::builder()
                    .header(POD_HEADER, name.as_ref())
                    .body(Full::new(name.clone()));
                async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
