//! `GET /debug/routes`: the table as the request path sees it, as JSON. For people and
//! tests, not a stable API: field names follow the domain types.

use std::sync::Arc;
use std::time::Instant;

use fairway_proto::model::Route;
use serde_json::{Map, Value, json};

use crate::pool::Pools;
use crate::table::Table;

/// Pool sizes per endpoint, supplied by whoever owns the pools: a JSON object keyed by
/// endpoint `ip:port` (e.g. `{"10.0.0.1:8080": {"idle": 3, "busy": 1}}`). Each value
/// is shown under `"pool"` of that endpoint.
pub type PoolStatsFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// A [`PoolStatsFn`] reading [`Pools::stats`].
pub fn pool_stats_fn(pools: Arc<Pools>) -> PoolStatsFn {
    Arc::new(move || {
        let stats: Map<String, Value> = pools
            .stats()
            .into_iter()
            .map(|(addr, stats)| (addr.to_string(), json!(stats)))
            .collect();
        Value::Object(stats)
    })
}

/// The whole `/debug/routes` document for `table`, with `pools` (see [`PoolStatsFn`])
/// merged into each endpoint.
pub fn routes(table: &Table, pools: Option<&Value>, now: Instant) -> Value {
    let routes: Vec<Value> = table
        .source
        .routes
        .values()
        .map(|r| route(table, r))
        .collect();
    let sets: Vec<Value> = table
        .source
        .endpoint_sets
        .values()
        .map(|set| {
            json!({
                "set": set.key.to_string(),
                "app_protocol": set.app_protocol,
                "endpoints": set.endpoints.len(),
            })
        })
        .collect();
    let backends: Map<String, Value> = table
        .stats(now)
        .into_iter()
        .map(|(backend, endpoints)| {
            let endpoints = endpoints
                .into_iter()
                .map(|stats| {
                    let pool = pools.and_then(|p| p.get(&stats.addr)).cloned();
                    let mut value = json!(stats);
                    if let Value::Object(fields) = &mut value {
                        fields.insert("pool".to_owned(), pool.unwrap_or(Value::Null));
                    }
                    value
                })
                .collect();
            (backend, Value::Array(endpoints))
        })
        .collect();
    json!({
        "version": table.version.map(|v| v.to_string()),
        "ready": table.version.is_some(),
        "routes": routes,
        "endpoint_sets": sets,
        "backends": backends,
        // Every pool, including those of endpoints that left the table and are draining.
        "pools": pools.cloned().unwrap_or(Value::Null),
    })
}

fn route(table: &Table, route: &Route) -> Value {
    let rules: Vec<Value> = route
        .rules
        .iter()
        .map(|rule| {
            let backends: Vec<Value> = rule
                .backends
                .iter()
                .map(|b| {
                    json!({
                        "endpoint_set": b.endpoint_set.to_string(),
                        "weight": b.weight,
                        "protocol": format!("{:?}", table.protocol(route, &b.endpoint_set)),
                    })
                })
                .collect();
            json!({ "path_prefix": rule.path_prefix, "backends": backends })
        })
        .collect();
    json!({
        "route": route.key.to_string(),
        "hosts": route.hosts,
        "rules": rules,
        "policy": format!("{:?}", route.load_balancer.policy),
        "slow_start_ms": route.load_balancer.slow_start.map(|d| d.as_millis() as u64),
        "upstream": {
            "protocol": format!("{:?}", route.upstream.protocol),
            "max_connections_per_endpoint": route.upstream.max_connections_per_endpoint,
            "idle_timeout_ms": route.upstream.idle_timeout.as_millis() as u64,
            "max_connection_age_ms": route.upstream.max_connection_age.map(|d| d.as_millis() as u64),
            "max_requests_per_connection": route.upstream.max_requests_per_connection,
        },
        "timeouts": {
            "request_ms": route.timeouts.request.as_millis() as u64,
            "connect_ms": route.timeouts.connect.as_millis() as u64,
        },
        "retries": {
            "attempts": route.retries.attempts,
            "budget_percent": route.retries.budget_percent,
        },
    })
}
