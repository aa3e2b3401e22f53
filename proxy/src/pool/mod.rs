//! Per-endpoint upstream connection pools, keyed by pod `ip:port` ([`EndpointAddr`]).
//!
//! This is the piece Fairway exists for: hyper's own client pools by scheme and
//! authority, so behind a Service name every keep-alive connection sticks to whichever
//! pod kube-proxy picked when it opened. Here the balancer picks a pod per request and
//! the request takes a connection from *that pod's* pool.
//!
//! Where to start: [`Pools::checkout`] (hot path: a lock-free map lookup, then the
//! endpoint's own short lock); [`EndpointPool`] (HTTP/1.1 LIFO idle stack with a cap,
//! one multiplexed HTTP/2 connection); [`Lease`] (returns the connection when the
//! response ends); `follow` (the task that drains endpoints that left the table,
//! pre-warms new ones, closes idle connections and reports pool sizes).

mod connect;
mod endpoint;
mod follow;
mod lease;
mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use fairway_proto::model::EndpointAddr;

pub use connect::{ConnectError, H2_KEEPALIVE_INTERVAL, H2_KEEPALIVE_TIMEOUT, tcp as connect_tcp};
pub use endpoint::{EndpointPool, PoolStats};
pub use follow::{PREWARM_LIMIT, REAP_INTERVAL, spawn_follower};
pub use lease::{Lease, Sender};
pub use settings::{ConnLimits, ConnSettings, LIMIT_JITTER_PERCENT};

// foldhash, not SipHash: the map is read on every request, and its keys are ours.
type PoolMap = foldhash::HashMap<EndpointAddr, Arc<EndpointPool>>;

/// Every endpoint's pool. Reads are lock-free (`ArcSwap` of an immutable map); the map
/// is replaced only when endpoints come or go.
#[derive(Debug, Default)]
pub struct Pools {
    map: ArcSwap<PoolMap>,
}

impl Pools {
    pub fn new() -> Self {
        Pools::default()
    }

    /// The pool of `addr`, created on first use.
    pub fn endpoint(&self, addr: EndpointAddr) -> Arc<EndpointPool> {
        if let Some(pool) = self.map.load().get(&addr) {
            return Arc::clone(pool);
        }
        let mut created = None;
        self.map.rcu(|map| {
            let mut map = PoolMap::clone(map);
            let pool = map
                .entry(addr)
                .or_insert_with(|| Arc::new(EndpointPool::new(addr)));
            created = Some(Arc::clone(pool));
            map
        });
        created.unwrap_or_else(|| Arc::new(EndpointPool::new(addr)))
    }

    /// A connection to `addr` for one request (see [`EndpointPool::checkout`]).
    pub async fn checkout(
        &self,
        addr: EndpointAddr,
        settings: &ConnSettings,
    ) -> Result<Lease, ConnectError> {
        self.endpoint(addr).checkout(settings).await
    }

    /// Drains and forgets every pool whose endpoint is not in `live`; returns them.
    pub fn retain(&self, live: &dyn Fn(&EndpointAddr) -> bool) -> Vec<Arc<EndpointPool>> {
        let current = self.map.load_full();
        if current.keys().all(live) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        self.map.rcu(|map| {
            removed.clear();
            let mut kept = PoolMap::with_capacity_and_hasher(map.len(), Default::default());
            for (addr, pool) in map.iter() {
                if live(addr) {
                    kept.insert(*addr, Arc::clone(pool));
                } else {
                    removed.push(Arc::clone(pool));
                }
            }
            kept
        });
        for pool in &removed {
            pool.drain();
        }
        removed
    }

    /// Whether `addr` has a pool.
    pub fn contains(&self, addr: &EndpointAddr) -> bool {
        self.map.load().contains_key(addr)
    }

    /// Connection counts per endpoint, in address order.
    pub fn stats(&self) -> BTreeMap<EndpointAddr, PoolStats> {
        self.map
            .load()
            .iter()
            .map(|(addr, pool)| (*addr, pool.stats()))
            .collect()
    }

    fn all(&self) -> Arc<PoolMap> {
        self.map.load_full()
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        // Idle connections would otherwise stay open until the pods close them.
        for pool in self.map.load().values() {
            pool.drain();
        }
    }
}
