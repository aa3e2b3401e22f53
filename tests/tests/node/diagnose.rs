//! What a node test keeps for a post-mortem when a rollout misbehaves: a sampler that
//! records, every few seconds, what each controller replica and proxy reports about its
//! table (so a table that stops following the EndpointSlices shows when and where), and
//! a dump of every log at the end. Files go under `$FAIRWAY_NODE_DUMP` (default
//! `/tmp/fairway-node-dump/NAMESPACE`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::gateway::now_ms;
use crate::support::kubectl_out;

/// Between two samples: a stall of a few seconds still shows.
const EVERY: Duration = Duration::from_secs(2);
/// At most this many samples (20 minutes): the sampler never outlives a hung test.
const MAX_SAMPLES: u32 = 600;
/// The metrics a sample keeps (the rest of `/metrics` is noise here).
const KEPT: &[&str] = &[
    "fairway_controller_table_version",
    "fairway_controller_index_endpoints",
    "fairway_controller_proxies_connected",
    "fairway_controller_proxy_lag_versions",
    "fairway_proxy_table_version",
    "fairway_proxy_discovery_connected",
    "fairway_proxy_discovery_reconnects_total",
];

/// The directory a test's dumps go to.
pub fn dir(ns: &str) -> PathBuf {
    let base = std::env::var_os("FAIRWAY_NODE_DUMP")
        .map_or_else(|| PathBuf::from("/tmp/fairway-node-dump"), PathBuf::from);
    let dir = base.join(ns);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Samples the release in `fairway_ns` and the slices of `ns` until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(fairway_ns: &str, ns: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, fairway_ns, ns) = (Arc::clone(&stop), fairway_ns.to_owned(), ns.to_owned());
        let path = dir(&ns).join("samples.txt");
        let thread = std::thread::spawn(move || {
            let mut out = String::new();
            for _ in 0..MAX_SAMPLES {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                out.push_str(&sample(&fairway_ns, &ns));
                let _ = std::fs::write(&path, &out);
                std::thread::sleep(EVERY);
            }
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One sample: per fairway pod its kept metrics, and the slice's endpoint conditions.
fn sample(fairway_ns: &str, ns: &str) -> String {
    let mut out = format!("--- {}\n", now_ms());
    let pods = kubectl_out(&["-n", fairway_ns, "get", "pods", "-o", "name"]);
    for pod in pods.stdout.lines() {
        let name = pod.trim_start_matches("pod/");
        let port = if name.contains("controller") {
            9090
        } else {
            4191
        };
        let path = format!("/api/v1/namespaces/{fairway_ns}/pods/{name}:{port}/proxy/metrics");
        let metrics = kubectl_out(&["get", "--raw", &path]);
        let kept: Vec<&str> = (metrics.stdout.lines())
            .filter(|l| KEPT.iter().any(|k| l.starts_with(k)))
            .collect();
        out.push_str(&format!(
            "{name}: {}{}\n",
            kept.join(" | "),
            metrics.stderr.trim()
        ));
    }
    let slices = kubectl_out(&[
        "-n",
        ns,
        "get",
        "endpointslices",
        "-o",
        "jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}/{.conditions.terminating} {end}",
    ]);
    out.push_str(&format!("slices: {}\n", slices.stdout));
    out
}

/// Writes every fairway pod's log (all containers, previous runs too) and the controllers'
/// `/debug/routes` into the dump directory of `ns`.
pub fn dump(fairway_ns: &str, ns: &str) -> PathBuf {
    let dir = dir(ns);
    let pods = kubectl_out(&["-n", fairway_ns, "get", "pods", "-o", "name"]);
    for pod in pods.stdout.lines() {
        let name = pod.trim_start_matches("pod/");
        let log = kubectl_out(&["-n", fairway_ns, "logs", name, "--all-containers"]);
        let _ = std::fs::write(dir.join(format!("{name}.log")), log.stdout + &log.stderr);
        if name.contains("controller") {
            let path =
                format!("/api/v1/namespaces/{fairway_ns}/pods/{name}:9090/proxy/debug/routes");
            let routes = kubectl_out(&["get", "--raw", &path]);
            let _ = std::fs::write(dir.join(format!("{name}.routes.json")), routes.stdout);
        }
    }
    let events = kubectl_out(&["-n", ns, "get", "events", "--sort-by=.lastTimestamp"]);
    let _ = std::fs::write(dir.join("events.txt"), events.stdout);
    dir
}
