//! Controller scale benchmark (design.md section 7, issues 4 and 23): 10,000 Routes over
//! 100,000 endpoints through the real index, store and gRPC server, with simulated
//! proxies as real tonic streams over loopback, run in a second process (`clients`) so
//! that their CPU time and memory are reported apart from the controller's.
//!
//! Reports: the controller's RSS (loaded from watch-like events, so the benchmark never
//! holds all Kubernetes objects at once), RSS per connected proxy, the publisher's cost
//! per version, and for each round of endpoint changes: bytes, and p50/p99/max from the
//! index change to the delta's arrival in each proxy; optionally a reconnect storm and
//! two controller replicas; last, the full rebuild times. Not a test: nothing is
//! asserted.
//!
//! ```text
//! cargo run --release -p fairway-controller --example scale
//! cargo run --release -p fairway-controller --example scale -- --proxies 5000 --storm --storm-changes 100 --storm-snapshots
//! cargo run --release -p fairway-controller --example scale -- --slices-per-round 1000 --rounds 10
//! cargo run --release -p fairway-controller --example scale -- --replicas 2 --proxies 5000
//! ```

mod clients;
mod objects;
mod shadow;
mod storm;

use storm::{Mode, storm};

use clients::Clients;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use fairway_controller::grpc::{DiscoveryService, Proxies, serve};
use fairway_controller::index::{Changes, Index};
use fairway_controller::metrics::Metrics;
use fairway_controller::state::{IndexHandle, NodeZones};
use fairway_controller::store::Store;
use fairway_proto::diff::diff;
use fairway_proto::pb::discovery_client::DiscoveryClient;
use fairway_proto::snapshot::SnapshotAssembler;
use fairway_proto::{Version, pb};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use objects::{
    cpu_seconds, ms, peak_rss_mib, percentile, route, rss_mib, service, slice, unix_nanos,
};

/// The controller binary's allocator (`src/main.rs`), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bound on every wait, so a broken run fails instead of hanging.
const WAIT: Duration = Duration::from_secs(180);
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
    /// Rounds of endpoint changes, one after the other.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Slices changed per round, one endpoint each, as a burst of watch events (1: a
    /// single pod; 1000: a large rollout).
    #[arg(long, default_value_t = 1)]
    slices_per_round: usize,
    /// The publisher's coalescing window, in milliseconds.
    #[arg(long, default_value_t = 20)]
    coalesce_ms: u64,
    /// Controller replicas, each with its own index, store, epoch and server, as two
    /// Deployment replicas watching the same API. Proxy `i` streams from replica
    /// `i % replicas`, as a Service spreads new connections.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// After the rounds, every proxy reconnects at once with a version of another epoch
    /// (as after a controller restart) and its table's digest, as this release's
    /// proxies do: each gets a rebase.
    #[arg(long)]
    storm: bool,
    /// With `--storm`: change this many slices (one endpoint each) while the proxies
    /// are away, as during a restart, so that their rebases carry those buckets.
    #[arg(long, default_value_t = 0)]
    storm_changes: usize,
    /// With `--storm`: then the same storm without digests, as the previous release's
    /// proxies (each needs a snapshot).
    #[arg(long)]
    storm_snapshots: bool,
    /// Internal: run as the simulated proxies' process, with `URL=EPOCH:SEQUENCE` per
    /// replica (where to connect, which version to resume at).
    #[arg(long, hide = true, value_delimiter = ',')]
    clients: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if opts.clients.is_empty() {
        return runtime.block_on(run(opts));
    }
    let mut targets = Vec::new();
    for spec in &opts.clients {
        let (url, version) = spec.rsplit_once('=').ok_or("--clients URL=EPOCH:SEQ")?;
        let (epoch, sequence) = version.split_once(':').ok_or("--clients URL=EPOCH:SEQ")?;
        let version = Version {
            epoch: epoch.parse()?,
            sequence: sequence.parse()?,
        };
        targets.push((url.to_owned(), version));
    }
    runtime.block_on(clients::run(targets, opts.proxies));
    Ok(())
}

/// One controller replica: its index, store and server.
struct Replica {
    handle: Arc<IndexHandle>,
    store: Arc<Store>,
    proxies: Arc<Proxies>,
    endpoint: String,
    /// Held so the streams stay open (dropping it would end them).
    _stop: watch::Sender<bool>,
}

/// Loads a replica as its watchers would: one object at a time, each built and dropped
/// at once, so RSS afterwards is the controller's own.
async fn start_replica(opts: &Opts) -> Result<Replica, Box<dyn std::error::Error>> {
    let per = opts.endpoints_per_route;
    let handle = IndexHandle::new();
    handle.update(|idx| {
        let mut changes = Changes::default();
        for i in 0..opts.routes {
            for more in [
                idx.apply_service(&service(i)),
                idx.apply_slice(&slice(i, per, None)),
                idx.apply_route(&route(i)),
            ] {
                changes.routes.extend(more.routes);
                changes.endpoint_sets.extend(more.endpoint_sets);
            }
        }
        changes
    });
    let store = Store::new();
    let coalesce = Duration::from_millis(opts.coalesce_ms);
    tokio::spawn(store.clone().run(handle.clone(), coalesce));
    handle.mark_synced();
    let mut latest = store.subscribe();
    tokio::time::timeout(WAIT, latest.wait_for(|p| !p.is_initial())).await??;
    let (stop, stopping) = watch::channel(false);
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
    Ok(Replica {
        handle,
        store,
        proxies,
        endpoint,
        _stop: stop,
    })
}

fn since(t0: u128, at: u128) -> Duration {
    Duration::from_nanos(at.saturating_sub(t0) as u64)
}

/// Waits until the replicas together list `n` proxies.
async fn wait_connected(replicas: &[Replica], n: usize) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let connected: usize = replicas.iter().map(|r| r.proxies.len()).sum();
        if connected >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {connected} of {n} proxies connected"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One snapshot, as a new proxy of today gets it: the generated client, full decode.
async fn snapshot_probe(endpoint: &str) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let mut client = DiscoveryClient::connect(endpoint.to_owned()).await?;
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
        "| snapshot to one new proxy (generated client, assembled) | {}, {:.1} MiB in {messages} messages, {} endpoints |",
        ms(t.elapsed()),
        bytes as f64 / 1048576.0,
        table.endpoint_count()
    );
    Ok(())
}

async fn run(opts: Opts) -> Result<(), Box<dyn std::error::Error>> {
    fairway_controller::process::install_crypto_provider();
    let per = opts.endpoints_per_route;
    println!(
        "# {} Routes, {} endpoints, {} proxies, {} replica(s), {} rounds of {} slice change(s), coalesce {} ms",
        opts.routes,
        opts.routes * per,
        opts.proxies,
        opts.replicas,
        opts.rounds,
        opts.slices_per_round,
        opts.coalesce_ms
    );
    let base_rss = rss_mib();
    let t = Instant::now();
    let mut replicas = Vec::new();
    for _ in 0..opts.replicas.max(1) {
        replicas.push(start_replica(&opts).await?);
    }
    let loaded_rss = rss_mib();
    println!(
        "| controller loaded from events, first version published ({} replica(s)) | {} |",
        replicas.len(),
        ms(t.elapsed())
    );
    println!(
        "| controller RSS: loaded (index + first version), minus the runtime's {base_rss:.0} MiB | {:.0} MiB |",
        loaded_rss - base_rss
    );
    snapshot_probe(&replicas[0].endpoint).await?;
    let probed_rss = rss_mib();

    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let mut clients = Clients::spawn(&opts, &replicas)?;
    wait_connected(&replicas, opts.proxies).await?;
    let connected_rss = rss_mib();
    println!(
        "| {} streams connected (resumed, no snapshot) | {} |",
        opts.proxies,
        ms(t.elapsed())
    );
    println!(
        "| controller RSS with the streams / per connected proxy | {:.0} MiB / {:.1} KiB |",
        connected_rss - base_rss,
        (connected_rss - probed_rss) * 1024.0 / opts.proxies.max(1) as f64
    );

    let (mut latencies, mut publish, mut message_bytes) = (Vec::new(), Vec::new(), 0);
    let (cpu_rounds, clients_rounds) = (cpu_seconds(), clients.cpu().await?.0);
    // Round 0 is a warm-up, not measured: the first version after the initial one also
    // builds the table the publisher recycles from then on.
    for round in 0..=opts.rounds {
        let targets: Vec<usize> = (0..opts.slices_per_round)
            .map(|k| (round * 7919 + k * 13) % opts.routes)
            .collect();
        let flipped: Vec<_> = (targets.iter())
            .map(|&t| slice(t, per, Some(round % per)))
            .collect();
        let before: Vec<Version> = replicas.iter().map(|r| r.store.latest().version).collect();
        let mut watches: Vec<_> = replicas.iter().map(|r| r.store.subscribe()).collect();
        let (t0, wall0) = (Instant::now(), unix_nanos());
        // Every replica watches the same API: each sees each event.
        for s in &flipped {
            for r in &replicas {
                r.handle.update(|idx| idx.apply_slice(s));
            }
        }
        for (w, before) in watches.iter_mut().zip(&before) {
            tokio::time::timeout(WAIT, w.wait_for(|p| p.version > *before)).await??;
        }
        // Wait out the coalescing window in case the burst spilled into a second
        // version, then take the last one: a proxy counts once it has every change.
        if opts.slices_per_round > 1 {
            tokio::time::sleep(Duration::from_millis(opts.coalesce_ms * 3)).await;
        }
        if round > 0 {
            publish.push(t0.elapsed());
        }
        let versions: Vec<Version> = replicas.iter().map(|r| r.store.latest().version).collect();
        let arrivals =
            (clients.wait_all(&versions, opts.proxies, &['d'], &mut message_bytes)).await?;
        if round > 0 {
            latencies.extend(arrivals.into_iter().map(|(at, _)| since(wall0, at)));
        }
        // Put the endpoints back (not measured), and drain until every proxy has it.
        let before: Vec<Version> = replicas.iter().map(|r| r.store.latest().version).collect();
        for r in &replicas {
            r.handle.update(|idx| {
                let mut changes = Changes::default();
                for &t in &targets {
                    changes
                        .endpoint_sets
                        .extend(idx.apply_slice(&slice(t, per, None)).endpoint_sets);
                }
                changes
            });
        }
        let mut restored = Vec::new();
        for (w, before) in watches.iter_mut().zip(&before) {
            restored.push(
                tokio::time::timeout(WAIT, w.wait_for(|p| p.version > *before))
                    .await??
                    .version,
            );
        }
        clients
            .wait_all(&restored, opts.proxies, &['d'], &mut 0)
            .await?;
    }
    let (cpu_rounds, clients_rounds) = (
        cpu_seconds() - cpu_rounds,
        clients.cpu().await?.0 - clients_rounds,
    );
    latencies.sort();
    publish.sort();
    let per_push = message_bytes / (opts.proxies * (opts.rounds + 1)).max(1);
    println!(
        "| {} endpoint change(s) per round: delta bytes per proxy | {per_push} B ({} B with framing) |",
        opts.slices_per_round,
        per_push + FRAMING_BYTES
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
        "| CPU during the rounds (incl. restoring), controller / simulated proxies | {cpu_rounds:.1} s / {clients_rounds:.1} s |"
    );

    if opts.storm {
        storm(&opts, &replicas, &mut clients, Mode::Digests).await?;
        if opts.storm_snapshots {
            storm(&opts, &replicas, &mut clients, Mode::Snapshots).await?;
        }
    }
    let cpu_all = cpu_seconds() - cpu0;
    let stream_errors = clients.stream_errors.load(Ordering::Relaxed);
    let (clients_cpu, clients_rss) = clients.finish().await?;
    println!("| simulated streams that failed and were opened again | {stream_errors} |");
    println!(
        "| CPU from the clients' start to the end, controller / simulated proxies | {cpu_all:.1} s / {clients_cpu:.1} s |"
    );
    println!(
        "| peak RSS: controller process / simulated proxies' process | {:.0} MiB / {clients_rss:.0} MiB |",
        peak_rss_mib()
    );
    drop(replicas);
    rebuild(&opts);
    Ok(())
}

/// Full rebuild timings on a standalone index, last, since they hold every Kubernetes
/// object at once.
fn rebuild(opts: &Opts) {
    let per = opts.endpoints_per_route;
    let services: Vec<_> = (0..opts.routes).map(service).collect();
    let slices: Vec<_> = (0..opts.routes).map(|i| slice(i, per, None)).collect();
    let routes: Vec<_> = (0..opts.routes).map(route).collect();
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
    println!(
        "| index: cold build / full relist of everything | {} / {} |",
        ms(cold),
        ms(t.elapsed())
    );
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
}
