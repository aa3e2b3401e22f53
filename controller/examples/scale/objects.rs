//! The benchmark's Kubernetes objects (one Service, one EndpointSlice and one Route per
//! index `i`) and its measuring helpers: RSS and CPU time from /proc, percentiles.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fairway_controller::crd::{Route, RouteBackend, RouteRule, RouteSpec};
use fairway_controller::index::SERVICE_NAME_LABEL;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const NS: &str = "bench";

fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(NS.into()),
        name: Some(name),
        ..ObjectMeta::default()
    }
}

pub fn service(i: usize) -> Service {
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
pub fn slice(i: usize, per_route: usize, flip: Option<usize>) -> EndpointSlice {
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

pub fn route(i: usize) -> Route {
    let spec = RouteSpec {
        hosts: vec![
            format!("svc-{i}.{NS}"),
            format!("svc-{i}.{NS}.svc.cluster.local"),
        ],
        rules: vec![RouteRule {
            path_prefix: "/".into(),
            matches: None,
            filters: Vec::new(),
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
        health_check: None,
    };
    let mut route = Route::new(&format!("route-{i}"), spec);
    route.metadata = meta(format!("route-{i}"));
    route
}

/// Peak resident set size of this process, from /proc.
pub fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

/// Current resident set size.
pub fn rss_mib() -> f64 {
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

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// CPU time (user + system) this process used so far, from /proc/self/stat (in clock
/// ticks of 1/100 s, the Linux default `USER_HZ`).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the ')'.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall-clock time in nanoseconds since 1970: both processes read the same clock, so
/// a change in one and its arrival in the other compare.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
