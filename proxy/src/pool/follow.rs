//! The task that keeps the pools in step with the table: drains endpoints that left it,
//! pre-warms endpoints that joined it, closes idle connections past their timeout, and
//! reports pool sizes to metrics.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::EndpointAddr;
use tokio::task::JoinHandle;

use super::{ConnSettings, PoolKey, Pools};
use crate::metrics::Metrics;
use crate::table::{Table, TableHandle};

/// How often idle connections are checked against their idle timeout (and pool sizes
/// reported): an idle connection lives at most this much past its timeout.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Most endpoints pre-warmed for one table change: a first table with 10k endpoints
/// must not open 10k connections at once; the rest connect on their first request.
pub const PREWARM_LIMIT: usize = 256;

/// Starts following `table`. The task runs until aborted (the server aborts it when it
/// stops).
pub fn spawn_follower(
    pools: Arc<Pools>,
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    let mut changes = table.subscribe();
    tokio::spawn(async move {
        let mut reap = tokio::time::interval(REAP_INTERVAL);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live = HashSet::new();
        // The current table first: it may have been stored before we subscribed.
        let mut current = changes.borrow_and_update().clone();
        apply(&pools, &current, &mut live, &metrics);
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    current = changes.borrow_and_update().clone();
                    apply(&pools, &current, &mut live, &metrics);
                }
                _ = reap.tick() => {
                    reap_and_report(&pools, &live, &metrics);
                    report_in_flight(&current, &metrics);
                }
            }
        }
    })
}

/// What each endpoint of `table` needs from its connections, in address order. An
/// endpoint used by several routes takes the first route's settings.
fn endpoint_settings(table: &Table) -> BTreeMap<EndpointAddr, (ConnSettings, bool)> {
    let mut out = BTreeMap::new();
    for route in table.source.routes.values() {
        for rule in &route.rules {
            for backend in &rule.backends {
                let Some(set) = table.source.endpoint_sets.get(&backend.endpoint_set) else {
                    continue;
                };
                let protocol = table.protocol(route, &set.key);
                let tls = table.tls(&route.key, &set.key);
                let settings = ConnSettings::new(route, protocol, tls);
                for endpoint in set.endpoints.values() {
                    out.entry(endpoint.addr)
                        .or_insert_with(|| (settings.clone(), endpoint.ready));
                }
            }
        }
    }
    out
}

fn apply(pools: &Arc<Pools>, table: &Table, live: &mut HashSet<EndpointAddr>, metrics: &Metrics) {
    let wanted = endpoint_settings(table);
    live.clear();
    live.extend(wanted.keys().copied());
    for gone in pools.retain(&|addr| live.contains(addr)) {
        tracing::debug!(addr = %gone.addr(), "endpoint left the table: draining its pool");
        metrics.remove_endpoint(&gone.addr().to_string());
    }
    if table.version.is_none() {
        return;
    }
    // Pre-warm endpoints that joined; on the very first table everything is new, and
    // the cap keeps a big table from opening a connection storm.
    let mut warmed = 0;
    for (addr, (settings, ready)) in wanted {
        if warmed == PREWARM_LIMIT {
            break;
        }
        let key = PoolKey::new(addr, &settings);
        if !ready || pools.contains(&key) {
            continue;
        }
        warmed += 1;
        let pool = pools.endpoint(key);
        tokio::spawn(async move {
            if let Err(error) = pool.prewarm(&settings).await {
                tracing::debug!(%addr, %error, "pre-warming a new endpoint failed");
            }
        });
    }
}

fn reap_and_report(pools: &Pools, live: &HashSet<EndpointAddr>, metrics: &Metrics) {
    let now = Instant::now();
    let mut label = String::new();
    let mut forget = Vec::new();
    for (key, pool) in pools.all().iter() {
        let empty = pool.reap(now);
        if !live.contains(&key.addr) && empty {
            // A request that raced a table change re-created this pool after the
            // endpoint left: forget it now that it is idle.
            label.clear();
            let _ = write!(label, "{}", key.addr);
            forget.push(key.addr);
            metrics.remove_endpoint(&label);
        }
    }
    // Per endpoint: its plaintext and TLS pools (if both) count together.
    for (addr, stats) in pools.stats() {
        if forget.contains(&addr) {
            continue;
        }
        label.clear();
        let _ = write!(label, "{addr}");
        metrics.set_pool_connections(&label, u64::from(stats.idle), u64::from(stats.busy));
    }
    if !forget.is_empty() {
        pools.retain(&|addr| !forget.contains(addr));
    }
}

/// Per (route, endpoint) in-flight counts, from the balancers (which count them anyway).
fn report_in_flight(table: &Table, metrics: &Metrics) {
    for (backend, endpoints) in table.stats(Instant::now()) {
        // Keys read "namespace/name -> set"; the metric is per route.
        let route = backend.split(" -> ").next().unwrap_or(&backend);
        for endpoint in endpoints {
            metrics.set_in_flight(route, &endpoint.addr, u64::from(endpoint.in_flight));
        }
    }
}
