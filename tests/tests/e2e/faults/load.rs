//! The fault run's load: keep-alive HTTP/1.1 clients sending idempotent GETs through
//! the proxy, each on its own connection, reconnecting when one breaks (unlike the demo's
//! load, whose connections are the point and never change). Every answer is classified
//! and counted against the phase that was current when the request was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairway::demo::pods::POD_HEADER;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// A request with no answer by then is counted failed and its connection dropped:
/// beyond any route timeout the run sets, so it only fires if the proxy hangs.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to the proxy (on loopback).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Failure reasons kept per phase for the report (the counts are complete).
const KEPT_REASONS: usize = 8;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200, a pod named itself, the body is whole.
    Ok,
    /// Headers arrived, then the body broke off: the proxy can no longer replay it.
    AfterHeaders,
    /// Anything else, with why.
    Failed(String),
}

/// Counts for one phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    pub after_headers: u64,
    pub failed: u64,
    /// The first few failure reasons, for the assertion message.
    pub reasons: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.sent += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::AfterHeaders => self.after_headers += 1,
            Outcome::Failed(reason) => {
                self.failed += 1;
                if self.reasons.len() < KEPT_REASONS {
                    self.reasons.push(reason);
                }
            }
        }
    }
}

/// Load settings.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    pub target: SocketAddr,
    pub host: String,
    pub connections: usize,
    /// Between two requests of one client: bounds the rate on a shared 2-core box.
    pub pause: Duration,
    /// Requests per client at most, whatever the duration.
    pub max_requests: u64,
    pub phases: usize,
}

/// A running load; [`Soak::stop`] ends it and returns the per-phase counts.
#[derive(Debug)]
pub struct Soak {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    tallies: Arc<Mutex<Vec<Tally>>>,
    tasks: JoinSet<()>,
}

impl Soak {
    pub fn start(config: SoakConfig) -> Soak {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let tallies = Arc::new(Mutex::new(vec![Tally::default(); config.phases]));
        let mut tasks = JoinSet::new();
        for _ in 0..config.connections {
            tasks.spawn(client(
                config.clone(),
                Arc::clone(&stop),
                Arc::clone(&phase),
                Arc::clone(&tallies),
            ));
        }
        Soak {
            stop,
            phase,
            tallies,
            tasks,
        }
    }

    /// Requests sent from now on count towards phase `i`.
    pub fn set_phase(&self, i: usize) {
        self.phase.store(i, Ordering::Relaxed);
    }

    /// The phase requests are being counted towards.
    pub fn phase(&self) -> usize {
        self.phase.load(Ordering::Relaxed)
    }

    /// The counts so far.
    pub fn tallies(&self) -> Vec<Tally> {
        self.tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops every client (a request in flight finishes, within [`CLIENT_TIMEOUT`]).
    pub async fn stop(mut self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::sleep(CLIENT_TIMEOUT + Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => { self.tasks.abort_all(); break }
            }
        }
        self.tallies()
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(target: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("connect to the proxy: no answer in {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connect to the proxy: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with the proxy: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn client(
    config: SoakConfig,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    tallies: Arc<Mutex<Vec<Tally>>>,
) {
    let mut sender: Option<Sender> = None;
    for i in 0..config.max_requests {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let at_phase = phase.load(Ordering::Relaxed);
        let outcome = match sender.as_mut() {
            Some(s) => one(s, &config.host, i).await,
            None => match connect(config.target).await {
                Ok(mut s) => {
                    let outcome = one(&mut s, &config.host, i).await;
                    sender = Some(s);
                    outcome
                }
                Err(reason) => Outcome::Failed(reason),
            },
        };
        if outcome != Outcome::Ok {
            // The connection is broken, or in an unknown state: start afresh.
            sender = None;
        }
        if let Some(t) = tallies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(at_phase)
        {
            t.add(outcome);
        }
        tokio::time::sleep(config.pause).await;
    }
}

/// One `GET /soak/N` on `sender`, classified.
async fn one(sender: &mut Sender, host: &str, n: u64) -> Outcome {
    let started = Instant::now();
    let attempt = async {
        if let Err(e) = sender.ready().await {
            return Outcome::Failed(format!("proxy connection not ready: {e}"));
        }
        let request = hyper::Request::get(format!("/soak/{n}"))
            .header(hyper::header::HOST, host)
            .body(Empty::new());
        let Ok(request) = request else {
            return Outcome::Failed("build request".to_owned());
        };
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => return Outcome::Failed(format!("before response headers: {e}")),
        };
        let status = response.status();
        let pod = response
            .headers()
            .get(POD_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) if status.is_success() && pod.is_some() => return Outcome::AfterHeaders,
            Err(e) => return Outcome::Failed(format!("{status}, then the body broke: {e}")),
        };
        match pod {
            Some(pod) if status.is_success() && body == pod.as_bytes() => Outcome::Ok,
            Some(pod) if status.is_success() => Outcome::Failed(format!(
                "{status} from {pod} with a body of {} bytes that is not its name (truncated?)",
                body.len()
            )),
            _ => Outcome::Failed(format!(
                "{status} after {:?}: {}",
                started.elapsed(),
                String::from_utf8_lossy(&body).trim()
            )),
        }
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(format!("no answer within {CLIENT_TIMEOUT:?}")),
    }
}
