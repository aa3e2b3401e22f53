//! Accepting downstream connections: a cap on how many are open at once, `TCP_NODELAY`,
//! HTTP/1.1 and HTTP/2 prior knowledge on one port, header limits and the header-read
//! timeout, and a graceful stop. Each connection starts in the fast loop
//! (`super::downstream`); what it hands off is served by hyper-util's `auto` builder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http::header::HeaderValue;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::{ServerConfig, downstream, rewind};
use crate::forward::{self, RequestBody, Shared};
use crate::headers;

/// hyper's smallest allowed HTTP/1.1 read buffer (it panics below this).
const MIN_READ_BUFFER: usize = 8192;

/// Pause after an accept error such as EMFILE: retrying at once would spin a core
/// while the process is out of file descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The connection builder for `config`.
pub fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // The whole request head must fit the read buffer, so this caps header bytes;
        // a larger head is answered `431`.
        .max_buf_size(config.max_header_bytes.max(MIN_READ_BUFFER));
    if config.max_headers != super::DEFAULT_MAX_HEADERS {
        // Only when it differs: hyper's own limit (also 100) parses into a fixed array,
        // a configured one into a vector filled per request.
        http1.max_headers(config.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        // RFC 8441: WebSockets over HTTP/2 (`CONNECT` with `:protocol`).
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The two phases of a stop, as the connections see them.
#[derive(Clone)]
pub struct Phases {
    /// True once shutdown began: close each connection after its next response.
    pub draining: watch::Receiver<bool>,
    /// True once accepting stopped: idle connections close, in-flight ones finish.
    pub stop: watch::Receiver<bool>,
}

/// Accepts until `stop` turns true, one task per connection, at most
/// `config.max_connections` at once: each connection holds one of `slots` until it
/// ends (past the cap, accepting pauses and the kernel's backlog holds new clients),
/// so the caller can wait for all of them by taking every slot back.
pub async fn accept_loop(
    config: &ServerConfig,
    listener: TcpListener,
    shared: Arc<Shared>,
    phases: Phases,
    slots: Arc<Semaphore>,
) {
    let mut stop = phases.stop.clone();
    let connections = Connections::new(config, shared, phases);
    loop {
        let Some(permit) = slot(&slots, &mut stop).await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = connections.connection(permit);
                tokio::spawn(conn.serve(stream, peer, BytesMut::new()));
            }
            Err(error) => {
                // Per-connection failures (reset before accept, out of descriptors):
                // the listener itself stays good.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// A slot under the connection cap, or `None` once the server stops (or the cap is
/// closed): past the cap a loop waits here, and the kernel's backlog holds new clients.
async fn slot(
    slots: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        permit = Arc::clone(slots).acquire_owned() => permit.ok(),
        _ = stop.wait_for(|stop| *stop) => None,
    }
}

/// What every connection of one loop shares, to make each [`Connection`] from.
struct Connections {
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    limits: downstream::Limits,
    header_read_timeout: std::time::Duration,
    phases: Phases,
}

impl Connections {
    fn new(config: &ServerConfig, shared: Arc<Shared>, phases: Phases) -> Connections {
        Connections {
            builder: Arc::new(builder(config)),
            shared,
            limits: downstream::Limits {
                max_head: config.max_header_bytes,
                max_headers: config.max_headers,
            },
            header_read_timeout: config.header_read_timeout,
            phases,
        }
    }

    /// A connection holding `permit`, its slot under the cap.
    fn connection(&self, permit: OwnedSemaphorePermit) -> Connection {
        Connection {
            builder: Arc::clone(&self.builder),
            shared: Arc::clone(&self.shared),
            limits: self.limits,
            header_read_timeout: self.header_read_timeout,
            stop: self.phases.stop.clone(),
            draining: self.phases.draining.clone(),
            _permit: permit,
        }
    }
}

/// One downstream connection and its slot under the cap.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    limits: downstream::Limits,
    header_read_timeout: std::time::Duration,
    stop: watch::Receiver<bool>,
    draining: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// Serves the connections the sidecar's outbound side hands over (captured HTTP, its
/// first bytes already read) as if accepted here, until `stop` turns true; each holds
/// one of `slots`, like an accepted connection.
pub async fn captured_loop(
    config: &ServerConfig,
    mut captured: mpsc::Receiver<super::Captured>,
    shared: Arc<Shared>,
    phases: Phases,
    slots: Arc<Semaphore>,
) {
    let mut stop = phases.stop.clone();
    let connections = Connections::new(config, shared, phases);
    loop {
        let next = tokio::select! {
            next = captured.recv() => next,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let Some(super::Captured { stream, peer, read }) = next else {
            return;
        };
        let Some(permit) = slot(&slots, &mut stop).await else {
            return;
        };
        let conn = connections.connection(permit);
        tokio::spawn(conn.serve(stream, peer, read));
    }
}

impl Connection {
    async fn serve(self, mut stream: TcpStream, peer: SocketAddr, read: BytesMut) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "setting TCP_NODELAY");
        }
        // Formatted once per connection, cloned (a reference count) per request.
        let client = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let fast = downstream::Loop {
            shared: &self.shared,
            client: &client,
            limits: self.limits,
            header_read_timeout: self.header_read_timeout,
            stop: self.stop.clone(),
            draining: self.draining.clone(),
        };
        match fast.run_from(read, &mut stream).await {
            downstream::Ended::Closed => {}
            downstream::Ended::Handoff(read) => self.hyper(read, stream, peer, client).await,
        }
    }

    /// hyper serves the rest of the connection (HTTP/2, and HTTP/1.1 requests the fast
    /// loop does not take), starting with the bytes the loop had read.
    async fn hyper(
        mut self,
        read: Bytes,
        stream: TcpStream,
        peer: SocketAddr,
        client: HeaderValue,
    ) {
        let shared = Arc::clone(&self.shared);
        let service = service_fn(move |request: Request<Incoming>| {
            let request = request.map(RequestBody::Hyper);
            // Boxed: hyper spawns a task per HTTP/2 stream and moves this future into it
            // (and tokio boxes futures over 16 KiB itself); inline, the whole request
            // future (kilobytes) was copied several times per call, a quarter of the
            // instructions of a gRPC call (docs/benchmarks.md).
            let handled = Box::pin(forward::handle(
                Arc::clone(&shared),
                client.clone(),
                false,
                request,
            ));
            async move {
                let mut response = handled.await?;
                // hyper writes from the map: copy an HTTP/1.1 pod's raw fields into it.
                headers::materialize(&mut response);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let stream = rewind::Rewound::new(read, stream);
        // With upgrades: a `101` hands the connection to the upgrade's tunnel.
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "downstream connection ended");
                }
                return;
            }
            _ = self.draining.wait_for(|draining| *draining) => {}
        }
        // Draining or stopping: finish the requests in flight, take no new ones
        // (HTTP/1.1 closes after the response in flight, HTTP/2 sends GOAWAY).
        conn.as_mut().graceful_shutdown();
        if let Err(error) = conn.await {
            tracing::debug!(%peer, %error, "downstream connection ended while stopping");
        }
    }
}
