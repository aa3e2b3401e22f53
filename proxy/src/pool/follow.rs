//! The task that keeps the pools in step with the table: drains endpoints that left it,
//! marks those that turned terminating (their idle connections close, their streamed
//! responses end after the Route's `drainTimeout`), pre-warms endpoints that joined it,
//! closes idle connections past their timeout, and reports pool sizes to metrics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{EndpointAddr, RouteTable};
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
        let mut leaving = BTreeSet::new();
        // The current table first: it may have been stored before we subscribed.
        let mut current = changes.borrow_and_update().clone();
        apply(&pools, &current, &mut live, &metrics);
        mark_leaving(&pools, &current, &mut leaving);
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    current = changes.borrow_and_update().clone();
                    apply(&pools, &current, &mut live, &metrics);
                    mark_leaving(&pools, &current, &mut leaving);
                }
                _ = reap.tick() => {
                    // A pool created after its pod turned terminating (a request to the
                    // last serving pod) is marked here.
                    mark_pools(&pools, &leaving);
                    reap_and_report(&pools, &live, &metrics);
                    report_in_flight(&current, &metrics);
                }
            }
        }
    })
}

/// What each endpoint of `table` needs from its connections, in address order (an
/// endpoint used by several routes takes the first route's settings, for pre-warming),
/// and every pool the table uses: one per endpoint and TLS identity (a CA change
/// leaves the old identity's pool unused, so it drains).
fn endpoint_settings(
    table: &Table,
) -> (
    BTreeMap<EndpointAddr, (ConnSettings, bool)>,
    HashSet<PoolKey>,
) {
    let mut out = BTreeMap::new();
    let mut keys = HashSet::new();
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
                    keys.insert(PoolKey::new(endpoint.addr, &settings));
                    out.entry(endpoint.addr)
                        .or_insert_with(|| (settings.clone(), endpoint.ready));
                }
            }
        }
    }
    (out, keys)
}

/// The endpoints of `table` that are terminating: a pod is terminating as a whole, so
/// one set that says so is enough.
fn terminating(table: &RouteTable) -> BTreeSet<EndpointAddr> {
    (table.endpoint_sets.values())
        .flat_map(|set| set.endpoints.values())
        .filter(|e| e.terminating)
        .map(|e| e.addr)
        .collect()
}

fn mark_leaving(pools: &Pools, table: &Table, leaving: &mut BTreeSet<EndpointAddr>) {
    *leaving = terminating(&table.source);
    mark_pools(pools, leaving);
}

fn mark_pools(pools: &Pools, leaving: &BTreeSet<EndpointAddr>) {
    for pool in pools.all().values() {
        pool.set_leaving(leaving.contains(&pool.addr()));
    }
}

fn apply(pools: &Arc<Pools>, table: &Table, live: &mut HashSet<PoolKey>, metrics: &Metrics) {
    let (wanted, keys) = endpoint_settings(table);
    *live = keys;
    for gone in pools.retain(&|key| live.contains(key)) {
        tracing::debug!(addr = %gone.addr(), "endpoint (or its TLS identity) left the table: draining its pool");
        if !wanted.contains_key(&gone.addr()) {
            metrics.remove_endpoint(&gone.addr().to_string());
        }
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

fn reap_and_report(pools: &Pools, live: &HashSet<PoolKey>, metrics: &Metrics) {
    let now = Instant::now();
    let mut label = String::new();
    let mut forget = Vec::new();
    for (key, pool) in pools.all().iter() {
        let empty = pool.reap(now);
        if !live.contains(key) && empty {
            // A request that raced a table change re-created this pool after the
            // endpoint left: forget it now that it is idle.
            forget.push(key.clone());
        }
    }
    if !forget.is_empty() {
        pools.retain(&|key| !forget.contains(key));
    }
    let live_addrs: HashSet<EndpointAddr> = live.iter().map(|key| key.addr).collect();
    for key in forget.iter().filter(|key| !live_addrs.contains(&key.addr)) {
        label.clear();
        let _ = write!(label, "{}", key.addr);
        metrics.remove_endpoint(&label);
    }
    // Per endpoint: its plaintext and TLS pools (if both) count together.
    for (addr, stats) in pools.stats() {
        label.clear();
        let _ = write!(label, "{addr}");
        metrics.set_pool_connections(&label, u64::from(stats.idle), u64::from(stats.busy));
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;
    use std::sync::Arc;

    use fairway_proto::model::{Endpoint, EndpointSet, EndpointSetKey};

    use super::*;

    fn ep(last: u8, terminating: bool) -> Endpoint {
        let mut e = Endpoint::ready(([10, 0, 0, last], 8080).into());
        e.ready = !terminating;
        e.terminating = terminating;
        e
    }

    fn table(sets: &[(&str, &[Endpoint])]) -> RouteTable {
        let mut table = RouteTable::default();
        for (service, endpoints) in sets {
            let key = EndpointSetKey {
                namespace: "shop".to_owned(),
                service: (*service).to_owned(),
                port: NonZeroU16::MIN,
            };
            let mut set = EndpointSet::new(key.clone());
            set.endpoints = endpoints.iter().map(|e| (e.addr, e.clone())).collect();
            table.endpoint_sets.insert(key, Arc::new(set));
        }
        table
    }

    fn addrs(lasts: &[u8]) -> BTreeSet<EndpointAddr> {
        lasts
            .iter()
            .map(|&l| EndpointAddr(([10, 0, 0, l], 8080).into()))
            .collect()
    }

    #[test]
    fn the_terminating_endpoints_of_every_set_are_leaving() {
        let cases: [(&str, RouteTable, BTreeSet<EndpointAddr>); 4] = [
            ("no endpoints", table(&[]), addrs(&[])),
            (
                "all ready",
                table(&[("orders", &[ep(1, false), ep(2, false)])]),
                addrs(&[]),
            ),
            (
                "one terminating in a rollout",
                table(&[("orders", &[ep(1, false), ep(2, true)])]),
                addrs(&[2]),
            ),
            (
                // Still picked (KEP-1669), but going: its streams must end in time too.
                "the last serving ones, in two sets",
                table(&[("orders", &[ep(1, true)]), ("billing", &[ep(3, true)])]),
                addrs(&[1, 3]),
            ),
        ];
        for (name, table, expected) in cases {
            assert_eq!(terminating(&table), expected, "{name}");
        }
    }
}
