//! A keep-alive load: a fixed set of HTTP/1.1 connections, each sending requests one
//! after another at a bounded rate, recording which pod answered and when. This is the
//! seed's gateway: its connections are opened once and never re-balanced.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::pods::POD_HEADER;

/// One answered request: when (since the load started) and which pod, or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub pod: Option<String>,
}

/// Load settings.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: SocketAddr,
    pub host: String,
    pub connections: usize,
    /// Pause between two requests on one connection: bounds the rate on a small box.
    pub pause: Duration,
}

/// A running load; [`Load::stop`] ends it and returns every sample.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Opens `connections` keep-alive connections and starts sending on each.
    pub async fn start(config: LoadConfig, start: Instant) -> std::io::Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for _ in 0..config.connections {
            let stream = TcpStream::connect(config.target).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tasks.spawn(async move {
                let _ = conn.await;
            });
            tasks.spawn(drive(
                sender,
                config.clone(),
                start,
                Arc::clone(&stop),
                Arc::clone(&samples),
            ));
        }
        Ok(Load {
            stop,
            samples,
            tasks,
        })
    }

    /// A copy of the samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        // Connections end when their request loops drop the senders.
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => { self.tasks.abort_all(); break }
            }
        }
        self.samples()
    }
}

async fn drive(
    mut sender: http1::SendRequest<Empty<Bytes>>,
    config: LoadConfig,
    start: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let request = Request::get("/")
            .header(hyper::header::HOST, &config.host)
            .body(Empty::new());
        let Ok(request) = request else { return };
        let pod = match sender.send_request(request).await {
            Ok(response) => {
                let pod = response
                    .headers()
                    .get(POD_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // Read the body so the connection can carry the next request.
                let _ = response.into_body().collect().await;
                pod
            }
            Err(_) => None,
        };
        let failed = pod.is_none();
        samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Sample {
                at: start.elapsed(),
                pod,
            });
        if failed && sender.ready().await.is_err() {
            return;
        }
        tokio::time::sleep(config.pause).await;
    }
}
