//! The simulated proxies, in a process of their own: the example runs itself again with
//! `--clients`, so the proxies' CPU time and memory are reported apart from the
//! controller's (both still share the machine's cores).
//!
//! Each simulated proxy is one real tonic stream on its own TCP connection, as a proxy
//! has. It decodes only what the protocol needs to answer (the version and which kind of
//! message it is; [`Skinny`]), not the endpoints, since a real proxy does that work on
//! its own node. It acks every delta and every snapshot's end, and reports each one on
//! stdout as a line `r ID EPOCH SEQUENCE UNIX_NANOS BYTES KIND` (KIND `d`elta or `s`napshot,
//! BYTES the message's, or the whole snapshot's, encoded size); a stream that fails is
//! reported as `e ID MESSAGE` and opened again.
//!
//! Commands on stdin, one per line: `storm MODE` drops every stream at once and opens it
//! again with a hello naming a version of another epoch, as proxies do after a controller
//! restart: MODE `digests` sends each proxy's table digest, as this release's proxies do
//! (each gets a rebase; [`crate::shadow`]), `snapshots` none, as the previous release's
//! (each gets a snapshot). `drop` drops every stream and holds it closed until
//! `reconnect MODE` (the table can change in between, as during a restart). `cpu` prints
//! `cpu SECONDS PEAK_RSS_MIB` (this process's CPU time so far); end of input prints that
//! line once more and exits. Rebases are reported with KIND `b`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fairway_proto::{Version, pb};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::objects::{cpu_seconds, peak_rss_mib, unix_nanos};
use crate::shadow::Shadow;
use crate::{Opts, Replica, WAIT};

/// Connect attempts per simulated proxy: thousands of connects at once overflow the
/// listen backlog, and a real proxy retries with backoff too.
const CONNECT_ATTEMPTS: u32 = 40;
/// The method's path (the generated client's).
const STREAM_PATH: &str = "/fairway.discovery.v1.Discovery/Stream";

/// A `ControllerMessage` read only as far as a proxy must to answer it: the version, and
/// which of the oneof's fields is set (their contents stay undecoded bytes). Tags are
/// discovery.proto's.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Skinny {
    #[prost(message, optional, tag = "1")]
    pub version: Option<pb::Version>,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub begin: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub chunk: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub end: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "5")]
    pub delta: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "6")]
    pub rebase: Option<Bytes>,
}

type Inbound = tonic::Streaming<Skinny>;

/// Opens a stream to `endpoint` with a hello resuming at `from`, retrying refused or
/// reset connects with a growing pause.
async fn open(
    endpoint: &str,
    id: usize,
    from: Version,
    digest: Option<pb::TableDigest>,
) -> Result<(mpsc::Sender<pb::ProxyMessage>, Inbound), String> {
    let mut last = String::new();
    for attempt in 0..CONNECT_ATTEMPTS {
        let opened = async {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel(16);
            let mut hello = pb::ProxyMessage::hello(
                format!("proxy-{id}"),
                format!("node-{}", id % 50),
                None,
                Some(from),
            );
            if let Some(pb::proxy_message::Kind::Hello(hello)) = &mut hello.kind {
                hello.digest = digest.clone();
            }
            tx.send(hello).await.map_err(|e| e.to_string())?;
            let codec = tonic_prost::ProstCodec::<pb::ProxyMessage, Skinny>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_PATH);
            let request = tonic::Request::new(ReceiverStream::new(rx));
            let inbound = grpc
                .streaming(request, path, codec)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((tx, inbound.into_inner()))
        };
        match opened.await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
        let pause = 20 + 20 * u64::from(attempt.min(10));
        tokio::time::sleep(Duration::from_millis(pause + (id % 20) as u64)).await;
    }
    Err(last)
}

/// One simulated proxy: follows its stream, reconnecting at each storm, and after a
/// stream error (reported as a line `e ID`) resuming at the version it applied last, as
/// a real proxy does.
async fn proxy(
    endpoint: String,
    id: usize,
    from: Version,
    storms: Storms,
    shadow: Shadow,
    out: mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let Storms {
        mut count,
        mut hold,
        digests,
    } = storms;
    let (mut resume, mut applied, mut digest) = (from, from, None);
    loop {
        let (tx, mut inbound) = open(&endpoint, id, resume, digest.take()).await?;
        let mut snapshot_bytes = 0;
        let storm = loop {
            let message = tokio::select! {
                changed = count.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    break true;
                }
                message = inbound.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(status) => {
                    let _ = out.send(format!("e {id} {}", status.message()));
                    break false;
                }
            };
            let bytes = prost::Message::encoded_len(&message);
            let version = message.version.map(Version::from).ok_or("no version")?;
            let kind = if message.delta.is_some() {
                'd'
            } else if message.rebase.is_some() {
                'b'
            } else if message.end.is_some() {
                's'
            } else {
                snapshot_bytes += bytes;
                continue;
            };
            let _ = tx.send(pb::ProxyMessage::ack(version)).await;
            applied = version;
            let total = if kind == 's' {
                std::mem::take(&mut snapshot_bytes) + bytes
            } else {
                bytes
            };
            let line = format!(
                "r {id} {} {} {} {total} {kind}",
                version.epoch,
                version.sequence,
                unix_nanos()
            );
            if out.send(line).is_err() {
                return Ok(());
            }
        };
        if storm {
            // Held closed while the table changes, as during a restart.
            while *hold.borrow_and_update() {
                if hold.changed().await.is_err() {
                    return Ok(());
                }
            }
            if digests.load(Ordering::Relaxed) {
                digest = shadow.digest(applied).await;
            }
            // After a restart the proxy names its last version, of an epoch the new
            // controller does not know: it gets a rebase for its digest, or a snapshot
            // (also if this stream fails before that applies).
            applied = Version {
                epoch: applied.epoch.wrapping_add(1_000_000),
                sequence: applied.sequence,
            };
        }
        resume = applied;
    }
}

/// What a simulated proxy follows of the storm commands.
#[derive(Clone)]
struct Storms {
    /// Bumped at each storm or drop: end the stream.
    count: watch::Receiver<u64>,
    /// While true, a dropped stream stays closed.
    hold: watch::Receiver<bool>,
    /// Whether the next hello carries a digest.
    digests: Arc<AtomicBool>,
}

/// The `--clients` process: `proxies` streams spread over `targets` (one per controller
/// replica: where to connect, which version to resume at) by id, as a Service spreads
/// new connections over replicas.
pub async fn run(targets: Vec<(String, Version)>, proxies: usize) {
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let (storm, count) = watch::channel(0u64);
    let (hold_tx, hold) = watch::channel(false);
    let digests = Arc::new(AtomicBool::new(true));
    let storms = Storms {
        count,
        hold,
        digests: digests.clone(),
    };
    let shadows: Vec<Shadow> = (targets.iter())
        .map(|(endpoint, _)| Shadow::follow(endpoint.clone(), out.clone()))
        .collect();
    for id in 0..proxies {
        let (endpoint, from) = targets[id % targets.len()].clone();
        let (storms, out) = (storms.clone(), out.clone());
        let shadow = shadows[id % targets.len()].clone();
        tokio::spawn(async move {
            if let Err(e) = proxy(endpoint, id, from, storms, shadow, out).await {
                eprintln!("proxy-{id}: {e}");
            }
        });
    }
    // One writer owns stdout, flushing whenever it has caught up; the last line is the
    // process's end.
    let writer = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut stdout = std::io::BufWriter::new(stdout.lock());
        while let Some(line) = lines.blocking_recv() {
            let mut next = Some(line);
            while let Some(line) = next {
                if line == LAST_LINE {
                    let _ = stdout.flush();
                    return;
                }
                let _ = writeln!(stdout, "{line}");
                next = lines.try_recv().ok();
            }
            let _ = stdout.flush();
        }
    });
    let cpu = || format!("cpu {:.2} {:.0}", cpu_seconds(), peak_rss_mib());
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(command)) = stdin.next_line().await {
        let mode = |m: &str| digests.store(m == "digests", Ordering::Relaxed);
        match command
            .trim()
            .split_once(' ')
            .unwrap_or((command.trim(), ""))
        {
            ("storm", m) => {
                mode(m);
                storm.send_modify(|n| *n += 1);
            }
            ("drop", _) => {
                hold_tx.send_replace(true);
                storm.send_modify(|n| *n += 1);
            }
            ("reconnect", m) => {
                mode(m);
                hold_tx.send_replace(false);
            }
            ("cpu", _) => {
                let _ = out.send(cpu());
            }
            _ => {}
        }
    }
    let _ = out.send(cpu());
    let _ = out.send(LAST_LINE.to_owned());
    // Bounded: the proxies' tasks still hold senders, so the writer ends on the last
    // line, not on a closed channel.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Marks the end of the output.
const LAST_LINE: &str = "end";

// The controller side: the process running the above, and what it reports.

/// One message received by a simulated proxy (a delta, or a whole snapshot).
#[derive(Debug)]
pub struct Receipt {
    version: Version,
    /// Wall clock (both processes read the same one), nanoseconds since 1970.
    at: u128,
    bytes: usize,
    /// `d`elta, `s`napshot or re`b`ase.
    kind: char,
}

/// The clients' process and what it reports.
pub struct Clients {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    cpu: mpsc::UnboundedReceiver<(f64, f64)>,
    /// Streams that failed and were opened again.
    pub stream_errors: Arc<AtomicUsize>,
    /// How long the last table digest took to compute, in seconds.
    pub digest: Arc<std::sync::Mutex<Option<f64>>>,
}

impl Clients {
    pub fn spawn(opts: &Opts, replicas: &[Replica]) -> Result<Self, Box<dyn std::error::Error>> {
        let targets: Vec<String> = (replicas.iter())
            .map(|r| {
                let v = r.store.latest().version;
                format!("{}={}:{}", r.endpoint, v.epoch, v.sequence)
            })
            .collect();
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--proxies")
            .arg(opts.proxies.to_string())
            .arg("--clients")
            .arg(targets.join(","))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (receipt_tx, receipts) = mpsc::unbounded_channel();
        let (cpu_tx, cpu) = mpsc::unbounded_channel();
        let errors = Arc::new(AtomicUsize::new(0));
        let stream_errors = errors.clone();
        let digest = Arc::new(std::sync::Mutex::new(None));
        let digest_seconds = digest.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let f: Vec<&str> = line.split(' ').collect();
                match f.as_slice() {
                    ["r", _id, epoch, sequence, at, bytes, kind] => {
                        let parsed = (|| {
                            Some(Receipt {
                                version: Version {
                                    epoch: epoch.parse().ok()?,
                                    sequence: sequence.parse().ok()?,
                                },
                                at: at.parse().ok()?,
                                bytes: bytes.parse().ok()?,
                                kind: kind.chars().next()?,
                            })
                        })();
                        if let Some(receipt) = parsed {
                            let _ = receipt_tx.send(receipt);
                        }
                    }
                    ["digest", seconds] => {
                        if let Ok(seconds) = seconds.parse() {
                            *digest_seconds
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) = Some(seconds);
                        }
                    }
                    ["e", ..] => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    ["cpu", seconds, rss] => {
                        let _ = cpu_tx.send((
                            seconds.parse().unwrap_or(f64::NAN),
                            rss.parse().unwrap_or(f64::NAN),
                        ));
                    }
                    _ => eprintln!("clients: {line}"),
                }
            }
        });
        Ok(Clients {
            child,
            stdin,
            receipts,
            cpu,
            stream_errors,
            digest,
        })
    }

    pub async fn command(&mut self, command: &str) -> std::io::Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await
    }

    /// The clients' CPU seconds so far and their peak RSS.
    pub async fn cpu(&mut self) -> Result<(f64, f64), Box<dyn std::error::Error>> {
        self.command("cpu").await?;
        Ok(tokio::time::timeout(WAIT, self.cpu.recv())
            .await?
            .ok_or("clients gone")?)
    }

    /// Waits until every proxy has received `target` of its replica in a message of one
    /// of `kinds` (other receipts are counted in `bytes` and dropped). Returns each
    /// arrival time and the kind it came in.
    pub async fn wait_all(
        &mut self,
        targets: &[Version],
        proxies: usize,
        kinds: &[char],
        bytes: &mut usize,
    ) -> Result<Vec<(u128, char)>, Box<dyn std::error::Error>> {
        let mut arrivals = Vec::with_capacity(proxies);
        while arrivals.len() < proxies {
            let receipt = tokio::time::timeout(WAIT, self.receipts.recv())
                .await?
                .ok_or("the clients' process ended")?;
            *bytes += receipt.bytes;
            if targets.contains(&receipt.version) && kinds.contains(&receipt.kind) {
                arrivals.push((receipt.at, receipt.kind));
            }
        }
        Ok(arrivals)
    }

    pub async fn finish(mut self) -> Result<(f64, f64), Box<dyn std::error::Error>> {
        drop(self.stdin);
        let last = tokio::time::timeout(Duration::from_secs(10), self.cpu.recv()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.start_kill();
        Ok(last?.ok_or("clients gone")?)
    }
}
