//! The simulated proxies, in a process of their own: the example runs itself again with
//! `--clients`, so the proxies' CPU time and memory are reported apart from the
//! controller's (both still share the machine's cores).
//!
//! Each simulated proxy is one real tonic stream on its own TCP connection, as a proxy
//! has. It decodes only what the protocol needs to answer (the version and which kind of
//! message it is; [`Skinny`]), not the endpoints, since a real proxy does that work on
//! its own node. It acks every delta and every snapshot's end, and reports each one on
//! stdout as a line `r ID EPOCH SEQUENCE UNIX_NANOS BYTES KIND` (KIND `d`elta or `s`napshot,
//! BYTES the message's, or the whole snapshot's, encoded size).
//!
//! Commands on stdin, one per line: `storm` drops every stream at once and opens it
//! again with a hello naming a version of another epoch, as proxies do after a controller
//! restart (each gets a snapshot); `cpu` prints `cpu SECONDS PEAK_RSS_MIB` (this
//! process's CPU time so far); end of input prints that line once more and exits.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fairway_proto::{Version, pb};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::objects::{cpu_seconds, peak_rss_mib};

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
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

type Inbound = tonic::Streaming<Skinny>;

/// Opens a stream to `endpoint` with a hello resuming at `from`, retrying refused or
/// reset connects with a growing pause.
async fn open(
    endpoint: &str,
    id: usize,
    from: Version,
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
            let hello = pb::ProxyMessage::hello(
                format!("proxy-{id}"),
                format!("node-{}", id % 50),
                None,
                Some(from),
            );
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

/// One simulated proxy: follows its stream, reconnecting at each storm.
async fn proxy(
    endpoint: String,
    id: usize,
    from: Version,
    mut storms: watch::Receiver<u64>,
    out: mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let mut resume = from;
    loop {
        let (tx, mut inbound) = open(&endpoint, id, resume).await?;
        let mut snapshot_bytes = 0;
        loop {
            let message = tokio::select! {
                changed = storms.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    break;
                }
                message = inbound.message() => message.map_err(|e| e.to_string())?,
            };
            let Some(message) = message else {
                return Ok(());
            };
            let bytes = prost::Message::encoded_len(&message);
            let version = message.version.map(Version::from).ok_or("no version")?;
            let kind = if message.delta.is_some() {
                'd'
            } else if message.end.is_some() {
                's'
            } else {
                snapshot_bytes += bytes;
                continue;
            };
            let _ = tx.send(pb::ProxyMessage::ack(version)).await;
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
        }
        // After a restart the proxy names its last version, of an epoch the new
        // controller does not know: it gets a snapshot.
        resume = Version {
            epoch: resume.epoch.wrapping_add(1_000_000),
            sequence: resume.sequence,
        };
    }
}

/// The `--clients` process: `proxies` streams spread over `targets` (one per controller
/// replica: where to connect, which version to resume at) by id, as a Service spreads
/// new connections over replicas.
pub async fn run(targets: Vec<(String, Version)>, proxies: usize) {
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let (storm, storms) = watch::channel(0u64);
    for id in 0..proxies {
        let (endpoint, from) = targets[id % targets.len()].clone();
        let (storms, out) = (storms.clone(), out.clone());
        tokio::spawn(async move {
            if let Err(e) = proxy(endpoint, id, from, storms, out).await {
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
        match command.trim() {
            "storm" => storm.send_modify(|n| *n += 1),
            "cpu" => {
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
