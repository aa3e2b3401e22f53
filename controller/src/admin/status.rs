//! `GET /api/v1/status`: what the live page and `kubectl fairway` show, as one JSON
//! document. Per Route: hosts, policy, conditions, endpoint counts, the cluster-wide
//! skew and request rate from the proxies' load reports, and per pod its share against
//! its expected share; then every connected proxy with its applied version and lag.
//!
//! Read-only and free of secrets: names, addresses, versions and counts, the same facts
//! `/debug/routes` and Route status already show. Field names are the API (camelCase);
//! pure, built from a snapshot of the state so it is tested without a server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use fairway_proto::load::{BackendLoad, LoadReport};
use fairway_proto::{Endpoint, EndpointSetKey, RouteKey};
use serde::Serialize;

use crate::grpc::ProxyInfo;
use crate::index::{ComputedStatus, ConditionState};
use crate::load::{RouteLoad, aggregate};
use crate::store::Published;

/// The whole document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The newest published version, `"EPOCH.SEQUENCE"` (a string: see `/debug/routes`).
    pub version: String,
    /// Whether the first full sync is published.
    pub ready: bool,
    pub routes: Vec<RouteView>,
    pub proxies: Vec<ProxyView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// `namespace/name`.
    pub route: String,
    /// Empty for a Route not in the table (not accepted, or no valid host).
    pub hosts: Vec<String>,
    pub policy: Option<String>,
    pub conditions: Vec<ConditionView>,
    pub endpoints: CountsView,
    /// Cluster-wide skew (`fairway_proto::load`); `None` without reported requests.
    pub skew: Option<f64>,
    /// Requests per second over the reporting proxies' windows (about the last 5 s).
    pub requests_per_second: f64,
    /// Proxies whose latest report covers this Route.
    pub proxies_reporting: usize,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CountsView {
    pub ready: u32,
    pub serving: u32,
    pub total: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    /// `namespace/service:port`.
    pub set: String,
    pub skew: Option<f64>,
    pub pods: Vec<PodView>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    /// `ip:port`.
    pub address: String,
    /// The EndpointSlice's `targetRef` name, if any.
    pub pod: Option<String>,
    /// `ready`, `terminating` or `not-ready`.
    pub state: &'static str,
    /// Requests over the reporting proxies' windows.
    pub requests: u64,
    pub in_flight: u32,
    /// Its part of the backend's reported requests (0..1); `None` without any.
    pub share: Option<f64>,
    /// The part it should have had.
    pub expected_share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    pub id: String,
    pub node: String,
    pub zone: Option<String>,
    pub connected_at_unix_ms: u64,
    /// The version it acked: the table it serves.
    pub applied: Option<String>,
    pub lag_versions: u64,
}

/// Builds the document from one snapshot of the controller's state.
pub fn status(
    latest: &Published,
    statuses: &BTreeMap<RouteKey, ComputedStatus>,
    proxies: &[ProxyInfo],
    reports: &[Arc<LoadReport>],
) -> StatusView {
    let loads = aggregate(reports.iter().map(Arc::as_ref));
    let routes = statuses
        .iter()
        .map(|(key, computed)| route_view(latest, key, computed, loads.get(key)))
        .collect();
    let proxies = proxies
        .iter()
        .map(|p| ProxyView {
            id: p.id.clone(),
            node: p.node.clone(),
            zone: p.zone.clone(),
            connected_at_unix_ms: p
                .connected_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            applied: p.last_acked.map(|v| v.to_string()),
            lag_versions: p.lag(latest.version),
        })
        .collect();
    StatusView {
        version: latest.version.to_string(),
        ready: !latest.is_initial(),
        routes,
        proxies,
    }
}

fn route_view(
    latest: &Published,
    key: &RouteKey,
    computed: &ComputedStatus,
    load: Option<&RouteLoad>,
) -> RouteView {
    let route = latest.table.routes.get(key);
    let mut sets: Vec<&EndpointSetKey> = route
        .map(|r| {
            (r.rules.iter())
                .flat_map(|rule| rule.backends.iter().map(|b| &b.endpoint_set))
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    sets.dedup();
    let backends: Vec<BackendView> = sets
        .into_iter()
        .map(|set| {
            let reported = load.and_then(|l| l.backends.iter().find(|b| &b.set == set));
            backend_view(latest, set, reported)
        })
        .collect();
    let window_seconds = WINDOW_SECONDS;
    let requests: u64 = load
        .map(|l| l.backends.iter().map(BackendLoad::requests).sum())
        .unwrap_or(0);
    let counts = computed.endpoints;
    RouteView {
        route: key.to_string(),
        hosts: route.map(|r| r.hosts.clone()).unwrap_or_default(),
        policy: route.map(|r| format!("{:?}", r.load_balancer.policy)),
        conditions: vec![
            condition("Accepted", &computed.accepted),
            condition("ResolvedRefs", &computed.resolved_refs),
        ],
        endpoints: CountsView {
            ready: counts.ready,
            serving: counts.serving,
            total: counts.total,
        },
        skew: load.and_then(|l| l.skew),
        requests_per_second: requests as f64 / window_seconds,
        proxies_reporting: load.map_or(0, |l| l.proxies),
        backends,
    }
}

/// The proxies' share window (5 slots of 1 s, the last one partial): rates are
/// requests over this, so they read a little low while a slot fills.
const WINDOW_SECONDS: f64 = 5.0;

fn backend_view(
    latest: &Published,
    set: &EndpointSetKey,
    load: Option<&BackendLoad>,
) -> BackendView {
    let requests: u64 = load.map_or(0, BackendLoad::requests);
    let expected: f64 = load.map_or(0.0, |l| l.endpoints.iter().map(|e| e.expected).sum());
    let endpoints = latest
        .table
        .endpoint_sets
        .get(set)
        .map(|s| s.endpoints.values().collect::<Vec<_>>())
        .unwrap_or_default();
    let pods = endpoints
        .into_iter()
        .map(|endpoint| {
            let figures = load.and_then(|l| l.endpoints.iter().find(|e| e.addr == endpoint.addr));
            PodView {
                address: endpoint.addr.to_string(),
                pod: endpoint.pod.clone(),
                state: state(endpoint),
                requests: figures.map_or(0, |f| f.requests),
                in_flight: figures.map_or(0, |f| f.in_flight),
                share: (requests > 0)
                    .then(|| figures.map_or(0, |f| f.requests) as f64 / requests as f64),
                expected_share: (expected > 0.0)
                    .then(|| figures.map_or(0.0, |f| f.expected) / expected),
            }
        })
        .collect();
    BackendView {
        set: set.to_string(),
        skew: load.and_then(BackendLoad::skew),
        pods,
    }
}

fn state(endpoint: &Endpoint) -> &'static str {
    if endpoint.ready {
        "ready"
    } else if endpoint.serving && endpoint.terminating {
        "terminating"
    } else {
        "not-ready"
    }
}

fn condition(kind: &'static str, c: &ConditionState) -> ConditionView {
    ConditionView {
        kind,
        status: c.status.as_str(),
        reason: c.reason.as_str(),
        message: c.message.clone(),
    }
}

#[cfg(test)]
mod tests;
