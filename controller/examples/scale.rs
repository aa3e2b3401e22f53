//! Controller scale benchmark (design.md section 7, issue 4): 10,000 Routes over
//! 100,000 endpoints through the real index, store and gRPC server, with 1,000
//! simulated proxies as real tonic streams over loopback in this process.
//!
//! Reports: peak RSS (VmHWM), full rebuild time, the publisher's cost per version, and
//! for one endpoint change pushed to every stream: bytes, and p50/p99/max from the
//! index change to the delta's arrival in each proxy. Not a test: nothing is asserted.
//!
//! ```text
//! cargo run --release -p fairway-controller --example scale
//! cargo run --release -p fairway-controller --example scale -- --proxies 100 --rounds 50
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fairway_controller::crd::{Route, RouteBackend, RouteRule, RouteSpec};
use fairway_controller::grpc::{DiscoveryService, Proxies, serve};
use fairway_controller::index::{Index, SERVICE_NAME_LABEL};
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::store::Store;
use fairway_proto::diff::diff;
use fairway_proto::pb::controller_message::Kind;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::snapshot::SnapshotAssembler;
use fairway_proto::{Version, pb};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Bound on every wait, so a broken run fails instead of hanging.
const WAIT: Duration = Duration::from_secs(120);
/// gRPC (5) plus HTTP/2 DATA frame (9) header bytes around each message on the wire.
const FRAMING_BYTES: usize = 14;

#[derive(Debug, Parser)]
struct Opts {
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Endpoints per Route (each Route has its own Service).
    #[arg(long, default_value_t = 10)]
    endpoints_per_route: usize,
    #[arg(long, default_value_t = 1_000)]
    proxies: usize,
    /// One-endpoint changes pushed, one after the other.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Slices changed per round, one endpoint each, as a burst of watch events (1: a
    /// single pod; 1000: heavy churn).
    #[arg(long, default_value_t = 1)]
    slices_per_round: usize,
    /// The publisher's coalescing window, in milliseconds.
    #[arg(long, default_value_t = 20)]
    coalesce_ms: u64,
}

const NS: &str = "bench";

fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(NS.into()),
        name: Some(name),
        ..ObjectMeta::default()
    }
}

fn service(i: usize) -> Service {
    Service {
        metadata: meta(format!("svc-{i}")),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 8080,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Service `i`'s slice; endpoint `flip` (if any) is terminating instead of ready.
fn slice(i: usize, per_route: usize, flip: Option<usize>) -> EndpointSlice {
    let endpoints = (0..per_route).map(|j| {
        let n = (i * per_route + j + 1) as u32;
        let terminating = flip == Some(j);
        Endpoint {
            addresses: vec![format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255)],
            conditions: Some(EndpointConditions {
                ready: Some(!terminating),
                serving: Some(true),
                terminating: Some(terminating),
            }),
            node_name: Some(format!("node-{}", j % 50)),
            zone: Some(format!("zone-{}", j % 3)),
            ..Endpoint::default()
        }
    });
    let mut metadata = meta(format!("svc-{i}-1"));
    metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.into(),
        format!("svc-{i}"),
    )]));
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: Some(endpoints.collect()),
        metadata,
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(9000),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    }
}

fn route(i: usize) -> Route {
    let spec = RouteSpec {
        hosts: vec![
            format!("svc-{i}.{NS}"),
            format!("svc-{i}.{NS}.svc.cluster.local"),
        ],
        rules: vec![RouteRule {
            path_prefix: "/".into(),
            backends: vec![RouteBackend {
                service: format!("svc-{i}"),
                port: IntOrString::Int(8080),
                weight: 1,
            }],
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
    };
    let mut route = Route::new(&format!("route-{i}"), spec);
    route.metadata = meta(format!("route-{i}"));
    route
}

/// Peak resident set size of this process, from /proc.
fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

/// Current resident set size.
fn rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// One delta received by a simulated proxy.
struct Receipt {
    version: Version,
    at: Instant,
    bytes: usize,
}

/// Connect attempts per simulated proxy: a thousand connects at once can overflow the
/// listen backlog, and a real proxy retries with backoff too.
const CONNECT_ATTEMPTS: u32 = 20;

type Stream = (
    mpsc::Sender<pb::ProxyMessage>,
    tonic::Streaming<pb::ControllerMessage>,
);

/// Opens a stream resumed at `from`, retrying refused or reset connects.
async fn open(endpoint: &str, id: usize, from: Version) -> Result<Stream, String> {
    let mut last = String::new();
    for attempt in 0..CONNECT_ATTEMPTS {
        let opened = async {
            let mut client = DiscoveryClient::connect(endpoint.to_owned())
                .await
                .map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel(16);
            let hello = pb::ProxyMessage::hello(
                format!("proxy-{id}"),
                format!("node-{}", id % 50),
                None,
                Some(from),
            );
            tx.send(hello).await.map_err(|e| e.to_string())?;
            let inbound = client
                .stream(ReceiverStream::new(rx))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((tx, inbound.into_inner()))
        };
        match opened.await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(20 + 20 * u64::from(attempt))).await;
    }
    Err(last)
}

/// A simulated proxy: resumes at `from` (it "already has" the table), then acks every
/// delta and reports its arrival.
async fn proxy(
    endpoint: String,
    id: usize,
    from: Version,
    report: mpsc::UnboundedSender<Receipt>,
) -> Result<(), String> {
    let (tx, mut inbound) = open(&endpoint, id, from).await?;
    while let Some(message) = inbound.message().await.map_err(|e| e.to_string())? {
        let at = Instant::now();
        let bytes = message.encoded_len();
        let version = message.table_version().map_err(|e| e.to_string())?;
        if !matches!(message.kind, Some(Kind::Delta(_))) {
            return Err(format!(
                "proxy-{id} got a snapshot message; it resumed at {from}"
            ));
        }
        let _ = tx.send(pb::ProxyMessage::ack(version)).await;
        if report.send(Receipt { version, at, bytes }).is_err() {
            break;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = Opts::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(opts))
}

async fn run(opts: Opts) -> Result<(), Box<dyn std::error::Error>> {
    fairway_controller::process::install_crypto_provider();
    let per = opts.endpoints_per_route;
    println!(
        "# {} Routes, {} endpoints, {} proxies, {} rounds of {} slice change(s), coalesce {} ms",
        opts.routes,
        opts.routes * per,
        opts.proxies,
        opts.rounds,
        opts.slices_per_round,
        opts.coalesce_ms
    );
    let services: Vec<Service> = (0..opts.routes).map(service).collect();
    let slices: Vec<EndpointSlice> = (0..opts.routes).map(|i| slice(i, per, None)).collect();
    let routes: Vec<Route> = (0..opts.routes).map(route).collect();

    // Full rebuild: every object into an empty index, then a relist of everything.
    let mut index = Index::new();
    let t = Instant::now();
    index.replace_services(&services);
    index.replace_slices(&slices);
    index.replace_routes(&routes);
    let cold = t.elapsed();
    let t = Instant::now();
    index.replace_services(&services);
    index.replace_slices(&slices);
    index.replace_routes(&routes);
    let relist = t.elapsed();
    let endpoints = index.table().endpoint_count();
    println!(
        "| index: cold build (services, slices, routes) | {} |",
        ms(cold)
    );
    println!("| index: full relist of everything | {} |", ms(relist));
    println!(
        "| table | {} routes, {} sets, {endpoints} endpoints |",
        index.table().routes.len(),
        index.table().endpoint_sets.len()
    );

    // What a naive publisher would pay per version; the real one patches (O(changes)).
    let t = Instant::now();
    let copy = index.table().clone();
    let clone_time = t.elapsed();
    index.apply_slice(&slice(0, per, Some(0)));
    let t = Instant::now();
    let d = diff(&copy, index.table());
    println!(
        "| for reference, a full table copy / full diff (the publisher avoids both) | {} / {} ({} endpoint changed) |",
        ms(clone_time),
        ms(t.elapsed()),
        d.endpoint_changes()
    );
    index.apply_slice(&slice(0, per, None));
    drop(copy);
    println!("| peak RSS after the index | {:.0} MiB |", peak_rss_mib());

    // The real store, publisher and server.
    let handle = IndexHandle::new();
    handle.update(|idx| {
        let mut changes = idx.replace_services(&services);
        changes.routes.extend(idx.replace_slices(&slices).routes);
        changes.routes.extend(idx.replace_routes(&routes).routes);
        changes
    });
    drop((index, services, slices, routes));
    let store = Store::new();
    tokio::spawn(
        store
            .clone()
            .run(handle.clone(), Duration::from_millis(opts.coalesce_ms)),
    );
    handle.mark_synced();
    let mut latest = store.subscribe();
    tokio::time::timeout(WAIT, latest.wait_for(|p| !p.is_initial())).await??;
    println!(
        "| RSS with the controller loaded (index, first version published; Kubernetes objects dropped) | {:.0} MiB |",
        rss_mib()
    );
    let (_stop, stopping) = watch::channel(false);
    let proxies = Proxies::new(Arc::new(NodeZones::default()));
    let service = DiscoveryService::new(
        store.clone(),
        proxies.clone(),
        Arc::new(Metrics::new()),
        stopping,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(listener, service, std::future::pending()));

    // One snapshot, as a new proxy gets it.
    let t = Instant::now();
    let mut client = DiscoveryClient::connect(endpoint.clone()).await?;
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ProxyMessage::hello(
        "snapshot-probe",
        "node",
        None,
        None,
    ))
    .await?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    let (mut assembler, mut bytes, mut messages) = (SnapshotAssembler::new(), 0, 0);
    let table = loop {
        let message = inbound.message().await?.ok_or("stream ended")?;
        bytes += message.encoded_len() + FRAMING_BYTES;
        messages += 1;
        if let Some(table) = assembler.feed(message)? {
            break table;
        }
    };
    println!(
        "| snapshot to one new proxy (assembled) | {}, {:.1} MiB in {messages} messages, {} endpoints |",
        ms(t.elapsed()),
        bytes as f64 / 1048576.0,
        table.endpoint_count()
    );
    drop((table, inbound, tx));

    // The simulated proxies, resumed at the current version.
    let from = store.latest().version;
    let (report, mut receipts) = mpsc::unbounded_channel();
    let t = Instant::now();
    for id in 0..opts.proxies {
        let (endpoint, report) = (endpoint.clone(), report.clone());
        tokio::spawn(async move {
            if let Err(e) = proxy(endpoint, id, from, report).await {
                eprintln!("proxy-{id}: {e}");
            }
        });
    }
    drop(report);
    let deadline = Instant::now() + WAIT;
    while proxies.len() < opts.proxies {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} proxies connected",
                proxies.len(),
                opts.proxies
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "| {} streams connected (resumed, no snapshot) | {} |",
        opts.proxies,
        ms(t.elapsed())
    );

    let mut latencies = Vec::new();
    let mut publish = Vec::new();
    let mut message_bytes = 0;
    // Round 0 is a warm-up, not measured: the first version after the initial one also
    // builds the table the publisher recycles from then on.
    for round in 0..=opts.rounds {
        let targets: Vec<usize> = (0..opts.slices_per_round)
            .map(|k| (round * 7919 + k * 13) % opts.routes)
            .collect();
        let flipped: Vec<EndpointSlice> = (targets.iter())
            .map(|&t| slice(t, per, Some(round % per)))
            .collect();
        let before = store.latest().version;
        let mut published = store.subscribe();
        let t0 = Instant::now();
        for s in &flipped {
            handle.update(|idx| idx.apply_slice(s));
        }
        let version = tokio::time::timeout(WAIT, published.wait_for(|p| p.version > before))
            .await??
            .version;
        // Wait out the coalescing window in case the burst spilled into a second
        // version, then take the last one.
        if opts.slices_per_round > 1 {
            tokio::time::sleep(Duration::from_millis(opts.coalesce_ms * 3)).await;
        }
        let version = store.latest().version.max(version);
        if round > 0 {
            publish.push(t0.elapsed());
        }
        // A burst may span two versions: the latency that counts is when each proxy
        // has the last one (all changes applied).
        let mut got = 0;
        while got < opts.proxies {
            let receipt = tokio::time::timeout(WAIT, receipts.recv())
                .await?
                .ok_or("all proxies ended")?;
            message_bytes += receipt.bytes;
            if receipt.version != version {
                continue;
            }
            if round > 0 {
                latencies.push(receipt.at.duration_since(t0));
            }
            got += 1;
        }
        // Put the endpoints back (not measured), and drain until every proxy has it.
        let before = store.latest().version;
        handle.update(|idx| {
            let mut changes = fairway_controller::index::Changes::default();
            for &t in &targets {
                let more = idx.apply_slice(&slice(t, per, None));
                changes.endpoint_sets.extend(more.endpoint_sets);
            }
            changes
        });
        let restored = tokio::time::timeout(WAIT, published.wait_for(|p| p.version > before))
            .await??
            .version;
        let mut done = 0;
        while done < opts.proxies {
            let receipt = tokio::time::timeout(WAIT, receipts.recv())
                .await?
                .ok_or("all proxies ended")?;
            if receipt.version == restored {
                done += 1;
            }
        }
    }
    latencies.sort();
    publish.sort();
    // Bytes of the measured deltas, per proxy and round.
    let per_push = message_bytes / (opts.proxies * (opts.rounds + 1)).max(1);
    println!(
        "| {} endpoint change(s) per round: delta bytes per proxy | {per_push} B ({} B on the wire with framing) |",
        opts.slices_per_round,
        per_push + FRAMING_BYTES
    );
    println!(
        "| same, bytes to all {} proxies | {:.1} KiB |",
        opts.proxies,
        ((per_push + FRAMING_BYTES) * opts.proxies) as f64 / 1024.0
    );
    println!(
        "| change -> published (coalesce window + patch + diff), p50 / max | {} / {} |",
        ms(percentile(&publish, 0.5)),
        ms(percentile(&publish, 1.0))
    );
    println!(
        "| change -> received, {} samples, p50 / p99 / max | {} / {} / {} |",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!(
        "| peak RSS, whole process (controller + {} client streams) | {:.0} MiB |",
        opts.proxies,
        peak_rss_mib()
    );
    Ok(())
}
