//! `GET /debug/routes`: the table as the request path sees it, as JSON. For people and
//! tests, not a stable API: field names follow the domain types.
//!
//! Typed views borrowed from the table, serialised straight into the response body: a
//! `serde_json::Value` tree of a 10k-endpoint table cost ~60 MiB for one request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use fairway_proto::model::Route;
use serde::Serialize;

use crate::balance::EndpointStats;
use crate::pool::{PoolStats, Pools};
use crate::table::Table;

/// Pool sizes per endpoint `ip:port`, supplied by whoever owns the pools. Each is shown
/// under `"pool"` of that endpoint, and all of them (draining ones too) under `"pools"`.
pub type PoolStatsFn = Arc<dyn Fn() -> BTreeMap<String, PoolStats> + Send + Sync>;

/// A [`PoolStatsFn`] reading [`Pools::stats`].
pub fn pool_stats_fn(pools: Arc<Pools>) -> PoolStatsFn {
    Arc::new(move || {
        pools
            .stats()
            .into_iter()
            .map(|(addr, stats)| (addr.to_string(), stats))
            .collect()
    })
}

#[derive(Serialize)]
struct Document<'a> {
    version: Option<String>,
    ready: bool,
    zone: Option<&'a str>,
    routes: Vec<RouteView<'a>>,
    endpoint_sets: Vec<SetView<'a>>,
    backends: BTreeMap<String, Vec<EndpointView<'a>>>,
    pools: Option<&'a BTreeMap<String, PoolStats>>,
}

#[derive(Serialize)]
struct SetView<'a> {
    set: String,
    app_protocol: Option<&'a str>,
    endpoints: usize,
}

#[derive(Serialize)]
struct EndpointView<'a> {
    #[serde(flatten)]
    stats: EndpointStats,
    pool: Option<&'a PoolStats>,
}

#[derive(Serialize)]
struct RouteView<'a> {
    route: String,
    hosts: &'a [String],
    rules: Vec<RuleView<'a>>,
    policy: String,
    slow_start_ms: Option<u64>,
    upstream: UpstreamView,
    timeouts: TimeoutsView,
    retries: RetriesView,
}

#[derive(Serialize)]
struct RuleView<'a> {
    path_prefix: &'a str,
    backends: Vec<BackendView>,
}

#[derive(Serialize)]
struct BackendView {
    endpoint_set: String,
    weight: u32,
    protocol: String,
}

#[derive(Serialize)]
struct UpstreamView {
    protocol: String,
    max_connections_per_endpoint: u32,
    idle_timeout_ms: u64,
    max_connection_age_ms: Option<u64>,
    max_requests_per_connection: u32,
}

#[derive(Serialize)]
struct TimeoutsView {
    request_ms: u64,
    connect_ms: u64,
}

#[derive(Serialize)]
struct RetriesView {
    attempts: u32,
    budget_percent: u32,
}

/// The whole `/debug/routes` document for `table`, with `pools` (see [`PoolStatsFn`])
/// merged into each endpoint, as pretty JSON.
pub fn routes(table: &Table, pools: Option<&BTreeMap<String, PoolStats>>, now: Instant) -> Vec<u8> {
    let backends = table
        .stats(now)
        .into_iter()
        .map(|(backend, endpoints)| {
            let endpoints = endpoints
                .into_iter()
                .map(|stats| EndpointView {
                    pool: pools.and_then(|p| p.get(&stats.addr)),
                    stats,
                })
                .collect();
            (backend, endpoints)
        })
        .collect();
    let document = Document {
        version: table.version.map(|v| v.to_string()),
        ready: table.version.is_some(),
        zone: table.zone.as_deref(),
        routes: table
            .source
            .routes
            .values()
            .map(|r| route(table, r))
            .collect(),
        endpoint_sets: table
            .source
            .endpoint_sets
            .values()
            .map(|set| SetView {
                set: set.key.to_string(),
                app_protocol: set.app_protocol.as_deref(),
                endpoints: set.endpoints.len(),
            })
            .collect(),
        backends,
        pools,
    };
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_vec_pretty(&document).unwrap_or_default()
}

fn route<'a>(table: &Table, route: &'a Route) -> RouteView<'a> {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    RouteView {
        route: route.key.to_string(),
        hosts: &route.hosts,
        rules: route
            .rules
            .iter()
            .map(|rule| RuleView {
                path_prefix: &rule.path_prefix,
                backends: rule
                    .backends
                    .iter()
                    .map(|b| BackendView {
                        endpoint_set: b.endpoint_set.to_string(),
                        weight: b.weight,
                        protocol: format!("{:?}", table.protocol(route, &b.endpoint_set)),
                    })
                    .collect(),
            })
            .collect(),
        policy: format!("{:?}", route.load_balancer.policy),
        slow_start_ms: route.load_balancer.slow_start.map(millis),
        upstream: UpstreamView {
            protocol: format!("{:?}", route.upstream.protocol),
            max_connections_per_endpoint: route.upstream.max_connections_per_endpoint,
            idle_timeout_ms: millis(route.upstream.idle_timeout),
            max_connection_age_ms: route.upstream.max_connection_age.map(millis),
            max_requests_per_connection: route.upstream.max_requests_per_connection,
        },
        timeouts: TimeoutsView {
            request_ms: millis(route.timeouts.request),
            connect_ms: millis(route.timeouts.connect),
        },
        retries: RetriesView {
            attempts: route.retries.attempts,
            budget_percent: route.retries.budget_percent,
        },
    }
}
