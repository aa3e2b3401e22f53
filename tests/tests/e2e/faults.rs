//! Scenario 8, faults under load (issue 8, point 4): keep-alive GETs run through a proxy
//! while, in turn, a pod is SIGKILLed and restarted, the controller is SIGKILLed and
//! restarted, the apiserver is restarted, a pod accepts and never answers, a pod resets
//! mid-response, and latency, drops and resets are injected between the proxy and every
//! pod. Idempotent requests must not fail while a healthy endpoint exists; the only
//! tolerated failures are resets after the response headers were forwarded, which no
//! proxy can replay (the client has the headers), counted on their own. The proxy's RSS
//! is sampled throughout and must not grow.
//!
//! `FAIRWAY_SOAK_SECS` sets the time under load (default [`DEFAULT_SOAK_SECS`], split
//! evenly over the phases; restarts add their own time); `bench/soak.sh` runs it for
//! 10 minutes and prints the table.

mod backends;
mod load;
mod report;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fairway_controller::crd::TimeoutsSpec;
use fairway_tests::faultproxy::{FaultProxy, Faults};
use fairway_tests::objects::{State, endpoint, route};
use k8s_openapi::api::discovery::v1::Endpoint;

use crate::world::{POD_PORT, World, http_get, pod_ip};
pub use backends::backend_main;
use backends::{Flaky, Hung, PodProcess};
use load::{Soak, SoakConfig};
use report::{Phase, Report, RssSample};

/// Seconds under load when `FAIRWAY_SOAK_SECS` is unset: short enough for CI.
const DEFAULT_SOAK_SECS: u64 = 80;
/// No phase shorter than this, however short the run: each fault needs a few seconds
/// of traffic to show.
const MIN_PHASE: Duration = Duration::from_secs(5);
/// The pods' subnet, 10.244.SUBNET.0/24 (scenarios 1-7 use 1-7).
const SUBNET: u8 = 8;
/// Clients, each on its own keep-alive connection to the proxy.
const CLIENTS: usize = 6;
/// Between two requests of one client.
const CLIENT_PAUSE: Duration = Duration::from_millis(5);
/// Requests per client at most: far above what the longest run sends at that pace.
const MAX_REQUESTS_PER_CLIENT: u64 = 2_000_000;
/// The Route's request timeout: short, so a hung pod costs seconds, not the default 15 s.
const REQUEST_TIMEOUT: &str = "2s";
/// Each try's limit: three tries (attempts 2) fit in the request timeout.
const PER_TRY_TIMEOUT: &str = "500ms";
/// How long a SIGKILLed pod stays down before it is restarted.
const POD_DOWN: Duration = Duration::from_secs(1);
/// Pod kills in one phase at most, however long the phase.
const MAX_POD_KILLS: usize = 500;
/// The flaky pod resets every this many requests before writing anything ...
const FLAKY_RESET_BEFORE: u64 = 5;
/// ... and every this many after the headers and part of the body.
const FLAKY_RESET_AFTER: u64 = 13;
/// How often the proxy's RSS is read.
const RSS_EVERY: Duration = Duration::from_secs(1);
/// RSS in the last phase may be this factor of the first phase's peak ...
const RSS_GROWTH_FACTOR: f64 = 1.5;
/// ... plus this much (allocator and pool warm-up in a debug build).
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// The phases, in order.
const PHASES: [&str; 8] = [
    "baseline",
    "pod SIGKILL + restart",
    "controller SIGKILL + restart",
    "apiserver restart",
    "pod accepts, never answers",
    "pod resets mid-response",
    "latency, drops, resets",
    "recovery",
];

fn soak_duration() -> Duration {
    let secs = std::env::var("FAIRWAY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SOAK_SECS);
    Duration::from_secs(secs)
}

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:{POD_PORT}")
        .parse()
        .unwrap_or_else(|e| panic!("{ip}: {e}"))
}

fn ready(addrs: &[SocketAddr]) -> Vec<Endpoint> {
    addrs
        .iter()
        .map(|a| endpoint(&a.ip().to_string(), State::Ready))
        .collect()
}

/// Keeps the load running for `d`, checking every second that no process died.
async fn hold(w: &mut World, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        w.check_processes();
        tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
    }
}

/// Points the slice at exactly `addrs` and waits until both proxies applied it.
async fn endpoints(w: &mut World, key: &str, addrs: &[SocketAddr]) {
    w.set_endpoints("soak-a", ready(addrs)).await;
    let want: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let want: Vec<(&str, &str)> = want.iter().map(|a| (a.as_str(), "ready")).collect();
    w.converged_set(key, &want).await;
}

/// `fairway_proxy_retries_total` of the proxy at `admin`, summed per reason.
async fn retries(admin: SocketAddr) -> [u64; 3] {
    let Some((200, text)) = http_get(admin, "/metrics").await else {
        panic!("the proxy's /metrics did not answer");
    };
    let mut by_reason = [0; 3];
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fairway_proxy_retries_total{") else {
            continue;
        };
        let value: u64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        let slot = ["not_sent", "reset", "status"]
            .iter()
            .position(|r| rest.contains(&format!("reason=\"{r}\"")));
        if let Some(i) = slot {
            by_reason[i] += value;
        }
    }
    by_reason
}

/// The proxy's endpoints as `/debug/routes` shows them: ejected ones with the time
/// left, and which take new requests.
async fn ejections(admin: SocketAddr) -> String {
    let Some((200, body)) = http_get(admin, "/debug/routes").await else {
        return "(/debug/routes did not answer)".to_owned();
    };
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut found = Vec::new();
    let mut stack = vec![&doc];
    // Bounded by the document's size: every value is visited once.
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(o) if o.contains_key("ejected_for_ms") => found.push(v),
            serde_json::Value::Object(o) => stack.extend(o.values()),
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    let mut parts: Vec<String> = found
        .iter()
        .map(|e| {
            let addr = e["addr"].as_str().unwrap_or("?");
            let ejected = e["ejected_for_ms"].as_u64().map_or(String::new(), |ms| {
                format!(" ejected {:.1}s", ms as f64 / 1000.0)
            });
            let eligible = if e["eligible"] == true {
                ""
            } else {
                " not eligible"
            };
            format!("{addr}{ejected}{eligible}")
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

/// Whether `tc netem` works in this network namespace (the kernel has `sch_netem`).
fn netem_available() -> Result<(), String> {
    let out = Command::new("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .output()
        .map_err(|e| format!("running tc: {e}"))?;
    if out.status.success() {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// With `sch_netem`: delay and loss on every packet the pods send (source in their
/// subnet). The fault proxies still inject the resets, which netem cannot.
fn netem_on() {
    let subnet = format!("10.244.{SUBNET}.0/24");
    let steps: [&[&str]; 3] = [
        &["qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio"],
        &[
            "qdisc", "add", "dev", "lo", "parent", "1:3", "handle", "30:", "netem", "delay", "2ms",
            "5ms", "loss", "1%",
        ],
        &[
            "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "src", &subnet, "flowid", "1:3",
        ],
    ];
    for args in steps {
        let out = Command::new("tc").args(args).output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        assert!(ok, "tc {}: {out:?}", args.join(" "));
    }
}

fn netem_off() {
    let _ = Command::new("tc")
        .args(["qdisc", "del", "dev", "lo", "root"])
        .output();
}

/// Reads the proxy's RSS every [`RSS_EVERY`] until `stop`.
fn sample_rss(
    pid: u32,
    start: Instant,
    soak: Arc<Soak>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<RssSample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        // Bounded by `stop`, and by a day's worth of samples whatever happens.
        for _ in 0..86_400 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            if let Some(kib) = kib {
                samples.push(RssSample {
                    at: start.elapsed(),
                    phase: soak.phase(),
                    kib,
                });
            }
            tokio::time::sleep(RSS_EVERY).await;
        }
        samples
    })
}

/// Scenario 8. See the module docs.
pub async fn faults_under_load() {
    let total = soak_duration();
    let phase_len = (total / PHASES.len() as u32).max(MIN_PHASE);
    let mut w = World::new("e2e-faults").await;
    let pod_addrs: Vec<SocketAddr> = (11..=13).map(|h| addr(&pod_ip(SUBNET, h))).collect();
    let mut pods = Vec::new();
    for (i, a) in pod_addrs.iter().enumerate() {
        pods.push(PodProcess::start(&format!("p{}", i + 1), *a, &w.logs).await);
    }
    w.create_service("soak", i32::from(POD_PORT)).await;
    w.create_slice("soak-a", "soak", i32::from(POD_PORT), ready(&pod_addrs))
        .await;
    let mut r = route(&w.ns, "soak", &["soak.e2e"], "soak", i32::from(POD_PORT));
    r.spec.timeouts = TimeoutsSpec {
        request: REQUEST_TIMEOUT.to_owned(),
        // A pod that accepts and never answers costs one try, not the request.
        per_try: Some(PER_TRY_TIMEOUT.to_owned()),
        ..TimeoutsSpec::default()
    };
    w.create_route(&r).await;
    w.start().await;
    let key = w.set_key("soak", POD_PORT);
    endpoints(&mut w, &key, &pod_addrs).await;

    let proxy = (w.proxies[0].listen, w.proxies[0].admin, w.proxies[0].pid());
    let start = Instant::now();
    let soak = Arc::new(Soak::start(SoakConfig {
        target: proxy.0,
        host: "soak.e2e".to_owned(),
        connections: CLIENTS,
        pause: CLIENT_PAUSE,
        max_requests: MAX_REQUESTS_PER_CLIENT,
        phases: PHASES.len(),
    }));
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(proxy.2, start, Arc::clone(&soak), Arc::clone(&stop_rss));
    let mut report = Report::new(total, CLIENTS, REQUEST_TIMEOUT);
    let mut retried_before = retries(proxy.1).await;

    for (i, name) in PHASES.iter().enumerate() {
        soak.set_phase(i);
        let began = Instant::now();
        eprintln!("s8: phase {i}: {name} ({:?} in)", start.elapsed());
        let note = match i {
            1 => {
                let mut kills = 0;
                // Failed requests after each kill, to tell a first kill from later ones.
                let mut failed_per_kill = Vec::new();
                // The proxy's view half-way through the first few outages.
                let mut views = Vec::new();
                while began.elapsed() < phase_len && kills < MAX_POD_KILLS {
                    let failed_before = soak.tallies()[i].failed;
                    let n = pods.len();
                    let pod = &mut pods[kills % n];
                    pod.kill();
                    tokio::time::sleep(POD_DOWN / 2).await;
                    if views.len() < 3 {
                        views.push(format!("{} down: {}", pod.name, ejections(proxy.1).await));
                    }
                    tokio::time::sleep(POD_DOWN / 2).await;
                    pod.restart().await;
                    kills += 1;
                    tokio::time::sleep(POD_DOWN).await;
                    failed_per_kill.push(soak.tallies()[i].failed - failed_before);
                }
                format!(
                    "{kills} SIGKILLs in turn, each pod down {POD_DOWN:?}; failed after each: \
                     {failed_per_kill:?}; the proxy's endpoints mid-outage: {}",
                    views.join(" | ")
                )
            }
            2 => {
                w.kill_controller();
                hold(&mut w, phase_len / 2).await;
                let restarting = Instant::now();
                w.start_controller().await;
                endpoints(&mut w, &key, &pod_addrs).await;
                let back = restarting.elapsed();
                hold(&mut w, phase_len.saturating_sub(began.elapsed())).await;
                format!(
                    "down {:?}; restarted and converged in {back:?}",
                    phase_len / 2
                )
            }
            3 => {
                let cluster = w.cluster;
                let restarted = Instant::now();
                (tokio::task::spawn_blocking(move || cluster.restart()).await)
                    .unwrap_or_else(|e| panic!("restart the apiserver: {e}"))
                    .unwrap_or_else(|e| panic!("restart the apiserver: {e}"));
                let took = restarted.elapsed();
                hold(&mut w, phase_len).await;
                format!("etcd + apiserver restarted in {took:?}")
            }
            4 => {
                let hung = Hung::start(addr(&pod_ip(SUBNET, 31))).await;
                let mut with = pod_addrs.clone();
                with.push(hung.addr);
                endpoints(&mut w, &key, &with).await;
                hold(&mut w, phase_len).await;
                endpoints(&mut w, &key, &pod_addrs).await;
                format!(
                    "{} connections accepted and never answered",
                    hung.accepted.load(Ordering::Relaxed)
                )
            }
            5 => {
                let flaky = Flaky::start(
                    "flaky",
                    addr(&pod_ip(SUBNET, 32)),
                    FLAKY_RESET_BEFORE,
                    FLAKY_RESET_AFTER,
                )
                .await;
                let mut with = pod_addrs.clone();
                with.push(flaky.addr);
                endpoints(&mut w, &key, &with).await;
                hold(&mut w, phase_len).await;
                endpoints(&mut w, &key, &pod_addrs).await;
                let c = &flaky.counts;
                report.flaky_after_headers = c.reset_after_headers.load(Ordering::Relaxed);
                format!(
                    "flaky pod: {} requests, {} answered, {} reset before headers, {} after",
                    c.requests.load(Ordering::Relaxed),
                    c.answered.load(Ordering::Relaxed),
                    c.reset_before_headers.load(Ordering::Relaxed),
                    report.flaky_after_headers
                )
            }
            6 => injected(&mut w, &key, &pod_addrs, phase_len).await,
            _ => {
                hold(&mut w, phase_len).await;
                String::new()
            }
        };
        let retried_now = retries(proxy.1).await;
        let retried: [u64; 3] = std::array::from_fn(|k| retried_now[k] - retried_before[k]);
        retried_before = retried_now;
        eprintln!("s8: phase {i} done after {:?}: {note}", began.elapsed());
        report.phases.push(Phase {
            name,
            took: began.elapsed(),
            retried,
            note,
        });
    }

    stop_rss.store(true, Ordering::Relaxed);
    let rss = rss.await.unwrap_or_else(|e| panic!("the RSS sampler: {e}"));
    let soak = Arc::into_inner(soak).unwrap_or_else(|| unreachable!("the sampler has ended"));
    let tallies = soak.stop().await;
    w.check_processes();
    report.finish(tallies, rss);
    println!("{}", report.table());
    report.assert(RSS_GROWTH_FACTOR, RSS_SLACK_KIB);
}

/// Phase 6: latency, drops and resets between the proxy and every pod, by `tc netem`
/// where the kernel has it, and by fault proxies (always, for the resets).
async fn injected(w: &mut World, key: &str, pods: &[SocketAddr], d: Duration) -> String {
    let netem = netem_available();
    match &netem {
        Ok(()) => {
            println!("s8: sch_netem available: tc netem adds delay and loss on the pods' packets");
            netem_on();
        }
        Err(e) => println!(
            "s8: this kernel has no sch_netem (`tc qdisc add dev lo root netem delay 1ms`: \
             {e}); latency, drops and resets come from tests/src/faultproxy.rs instead"
        ),
    }
    let ms = Duration::from_millis;
    // One pod slow but sound, one behind dropped connections, one behind resets.
    let faults = [
        Faults {
            latency: ms(2),
            jitter: ms(10),
            ..Faults::default()
        },
        Faults {
            latency: ms(1),
            jitter: ms(5),
            drop_per_mille: 30,
            ..Faults::default()
        },
        Faults {
            latency: ms(1),
            jitter: ms(5),
            reset_per_mille: 30,
            ..Faults::default()
        },
    ];
    let mut proxies = Vec::new();
    for (i, (pod, faults)) in pods.iter().zip(faults).enumerate() {
        let listen = addr(&pod_ip(SUBNET, 21 + i as u8));
        let fp = (FaultProxy::start(listen, *pod, faults).await)
            .unwrap_or_else(|e| panic!("start a fault proxy on {listen}: {e}"));
        proxies.push(fp);
    }
    let fronts: Vec<SocketAddr> = proxies.iter().map(|p| p.addr).collect();
    endpoints(w, key, &fronts).await;
    hold(w, d).await;
    endpoints(w, key, pods).await;
    if netem.is_ok() {
        netem_off();
    }
    let stats: Vec<String> = proxies
        .iter()
        .map(|p| {
            let s = p.stats();
            format!(
                "{}: {} conns, {} chunks, {} dropped, {} reset",
                p.upstream, s.connections, s.chunks, s.dropped, s.reset
            )
        })
        .collect();
    let how = if netem.is_ok() {
        "netem + fault proxies"
    } else {
        "fault proxies (no sch_netem)"
    };
    format!("{how}: {}", stats.join("; "))
}
