//! `fairway demo`: the seed scenario on one machine, no cluster.
//!
//! Pods on 127.0.0.x, the controller in `--static-dir` mode on a temporary directory, a
//! proxy following it, and two identical keep-alive loads: one through fairway-proxy,
//! one through a per-connection L4 balancer standing in for kube-proxy. A few seconds
//! in, the demo "scales up" by rewriting the EndpointSlice file (and the stand-in's
//! backend list); at the end it prints per-pod shares before and after for both paths
//! and writes an SVG chart. Everything runs in this process, so nothing outlives it.

pub mod chart;
pub mod l4;
pub mod load;
pub mod pods;
pub mod shares;
#[cfg(test)]
mod tests;
mod yaml;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::oneshot;

use load::{Load, LoadConfig, Sample};
use pods::Pod;

/// The Route's host, as the seed's gateway would call the Service.
const HOST: &str = "orders.shop.svc.cluster.local";
/// Share chart resolution.
const BUCKET: Duration = Duration::from_millis(500);
/// How long the proxy may take to apply its first table before the demo gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Random ports to try before giving up on finding one free on every pod address.
const PORT_TRIES: usize = 20;

/// Demo options.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Pods after the scale-up (one before it).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub pods: u8,
    /// Total run time in seconds; the scale-up happens at one third.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(3..=50))]
    pub duration: u64,
    /// Keep-alive connections per load (the gateway's pool size).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: u16,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "target/fairway-demo.svg")]
    pub chart: PathBuf,
}

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("start pod {addr}: {source}")]
    StartPod {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("write the static-dir files: {0}")]
    WriteConfig(std::io::Error),
    #[error("bind a local port: {0}")]
    Bind(std::io::Error),
    #[error("start the controller: {0}")]
    Controller(String),
    #[error("start the proxy: {0}")]
    Proxy(String),
    #[error("the proxy applied no table within {0:?}")]
    NotReady(Duration),
    #[error("start the load: {0}")]
    Load(std::io::Error),
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
}

/// What the demo measured: per-pod shares (percent, in pod order) of the requests made
/// from one second after the scale-up to the end, and failures over the whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub pods: Vec<String>,
    pub proxy_after: Vec<f64>,
    pub l4_after: Vec<f64>,
    pub proxy_failed: u64,
    pub l4_failed: u64,
}

/// Runs the whole demo, prints its results and returns them.
pub async fn run(args: DemoArgs) -> Result<Report, DemoError> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(DemoError::WriteConfig)?;
    let pods = start_pods(args.pods).await?;
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    println!("pods: {}", list(&pods));

    // One ready pod to begin with.
    yaml::write(dir.path(), HOST, &pods[..1]).map_err(DemoError::WriteConfig)?;
    let (controller_url, stop_controller) = start_controller(dir.path().to_path_buf()).await?;
    let (proxy_addr, proxy_admin, stop_proxy) = start_proxy(&controller_url).await?;
    wait_ready(proxy_admin).await?;
    println!(
        "controller {controller_url} (static dir {}), proxy {proxy_addr}",
        dir.path().display()
    );

    let l4 = l4::L4Balancer::start(localhost(0), vec![pods[0].addr])
        .await
        .map_err(DemoError::Bind)?;
    let t0 = Instant::now();
    let load_config = |target| LoadConfig {
        target,
        host: HOST.to_owned(),
        connections: usize::from(args.connections),
        pause: Duration::from_millis(5),
    };
    let through_proxy = Load::start(load_config(proxy_addr), t0)
        .await
        .map_err(DemoError::Load)?;
    let through_l4 = Load::start(load_config(l4.addr), t0)
        .await
        .map_err(DemoError::Load)?;

    let total = Duration::from_secs(args.duration);
    let scale_at = total / 3;
    tokio::time::sleep(scale_at).await;
    println!(
        "t={:.1}s scaling up 1 -> {} pods (rewriting the EndpointSlice)",
        t0.elapsed().as_secs_f64(),
        pods.len()
    );
    yaml::write(dir.path(), HOST, &pods).map_err(DemoError::WriteConfig)?;
    l4.set_backends(pods.iter().map(|p| p.addr).collect());
    let scaled = t0.elapsed();
    tokio::time::sleep(total.saturating_sub(scaled)).await;

    let proxy_samples = through_proxy.stop().await;
    let l4_samples = through_l4.stop().await;
    let end = t0.elapsed();
    let _ = stop_proxy.send(());
    let _ = stop_controller.send(());

    // Give the change one second to reach the proxy before judging "after".
    let after = scaled + Duration::from_secs(1);
    let (proxy_after, proxy_failed) = report(
        "through fairway-proxy (a pod per request)",
        &proxy_samples,
        &names,
        scaled,
        after,
        end,
    );
    let (l4_after, l4_failed) = report(
        "through a per-connection L4 balancer (kube-proxy stand-in)",
        &l4_samples,
        &names,
        scaled,
        after,
        end,
    );
    let proxy_rows = shares::timeline(&proxy_samples, &names, BUCKET, end);
    let l4_rows = shares::timeline(&l4_samples, &names, BUCKET, end);
    if let Some(parent) = args.chart.parent() {
        std::fs::create_dir_all(parent).map_err(DemoError::WriteConfig)?;
    }
    chart::draw(
        &args.chart,
        &names,
        &[
            chart::Panel {
                title: "fairway-proxy: pod chosen per request",
                rows: &proxy_rows,
            },
            chart::Panel {
                title: "L4 stand-in: pod chosen per connection",
                rows: &l4_rows,
            },
        ],
        BUCKET,
        scaled,
    )?;
    println!("\nchart: {}", args.chart.display());
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(Report {
        pods: names,
        proxy_after,
        l4_after,
        proxy_failed,
        l4_failed,
    })
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Starts `n` pods on 127.0.0.11, .12, ... all on one port: an EndpointSlice gives one
/// port for all its endpoints, as a Deployment's pods share their container port.
async fn start_pods(n: u8) -> Result<Vec<Pod>, DemoError> {
    let mut last = None;
    for _ in 0..PORT_TRIES {
        let port = rand::random_range(20_000..60_000);
        let mut pods = Vec::new();
        for i in 0..n {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i)), port);
            match Pod::start(&format!("orders-{}", i + 1), addr).await {
                Ok(pod) => pods.push(pod),
                Err(source) => {
                    last = Some(DemoError::StartPod { addr, source });
                    break;
                }
            }
        }
        if pods.len() == usize::from(n) {
            return Ok(pods);
        }
    }
    Err(last.unwrap_or(DemoError::Bind(std::io::Error::other("no free port"))))
}

fn list(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| format!("{}={}", p.name, p.addr))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Parser)]
struct ControllerCli {
    #[command(flatten)]
    args: fairway_controller::Args,
}

#[derive(Parser)]
struct ProxyCli {
    #[command(flatten)]
    args: fairway_proxy::Args,
}

async fn start_controller(dir: PathBuf) -> Result<(String, oneshot::Sender<()>), DemoError> {
    // Port 0: the kernel picks, and the listeners stay bound, so nothing can race us.
    let cli = ControllerCli::try_parse_from([
        "fairway-controller".to_string(),
        format!("--static-dir={}", dir.display()),
        // One machine, loopback only, no apiserver to review tokens with.
        "--no-auth".to_string(),
        "--grpc-addr=127.0.0.1:0".to_string(),
        "--admin-addr=127.0.0.1:0".to_string(),
    ])
    .map_err(|e| DemoError::Controller(e.to_string()))?;
    let config = fairway_controller::Config::from_args(cli.args);
    let running = fairway_controller::process::start(config)
        .await
        .map_err(|e| DemoError::Controller(e.to_string()))?;
    let grpc = running.grpc_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = running
            .serve(async move {
                let _ = stopped.await;
            })
            .await
        {
            eprintln!("controller: {e}");
        }
    });
    Ok((format!("http://{grpc}"), stop))
}

async fn start_proxy(
    controller: &str,
) -> Result<(SocketAddr, SocketAddr, oneshot::Sender<()>), DemoError> {
    let cli = ProxyCli::try_parse_from([
        "fairway-proxy".to_string(),
        format!("--controller={controller}"),
        // Loopback to an in-process controller: nothing to encrypt against.
        "--controller-plaintext".to_string(),
        "--listen=127.0.0.1:0".to_string(),
        "--admin-addr=127.0.0.1:0".to_string(),
        "--id=demo-proxy".to_string(),
        "--node=demo".to_string(),
    ])
    .map_err(|e| DemoError::Proxy(e.to_string()))?;
    let config =
        fairway_proxy::Config::from_args(cli.args).map_err(|e| DemoError::Proxy(e.to_string()))?;
    let listeners = fairway_proxy::process::Listeners::bind(&config)
        .await
        .map_err(|e| DemoError::Proxy(e.to_string()))?;
    let unbound = || DemoError::Proxy("listener has no local address".into());
    let listen = listeners.proxy_addr().ok_or_else(unbound)?;
    let admin = listeners.admin_addr().ok_or_else(unbound)?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = fairway_proxy::process::run_on(listeners, config, async move {
            let _ = stopped.await;
        })
        .await
        {
            eprintln!("proxy: {e}");
        }
    });
    Ok((listen, admin, stop))
}

/// Polls the proxy's `/ready` until it has applied a first table.
async fn wait_ready(admin: SocketAddr) -> Result<(), DemoError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if admin_ready(admin).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(DemoError::NotReady(READY_TIMEOUT))
}

async fn admin_ready(admin: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await else {
        return false;
    };
    let request = format!("GET /ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response.starts_with(b"HTTP/1.1 200")
}

/// Prints one path's shares; returns the shares after the scale-up and all failures.
fn report(
    title: &str,
    samples: &[Sample],
    pods: &[String],
    scaled: Duration,
    after: Duration,
    end: Duration,
) -> (Vec<f64>, u64) {
    let (before, failed_before) = shares::shares(samples, pods, Duration::ZERO, scaled);
    let (later, failed_after) = shares::shares(samples, pods, after, end);
    println!("\n{title}");
    println!("  {:<12} {:>8} {:>8}", "pod", "before", "after");
    for (i, pod) in pods.iter().enumerate() {
        println!("  {:<12} {:>7.1}% {:>7.1}%", pod, before[i], later[i]);
    }
    println!(
        "  requests: {} answered, {} failed",
        samples.iter().filter(|s| s.pod.is_some()).count(),
        failed_before + failed_after
    );
    (later, failed_before + failed_after)
}
