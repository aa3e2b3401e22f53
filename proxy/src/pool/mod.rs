//! Per-endpoint upstream connection pools, keyed by pod `ip:port` ([`EndpointAddr`])
//! and, for TLS to pods, by what the connections verify ([`PoolKey`]).
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

pub use connect::{
    ConnectError, H2_KEEPALIVE_INTERVAL, H2_KEEPALIVE_TIMEOUT, Negotiated, tcp as connect_tcp,
    tls as connect_tls,
};
pub use endpoint::{EndpointPool, PoolStats};
pub use follow::{PREWARM_LIMIT, REAP_INTERVAL, spawn_follower};
pub use lease::{Lease, Sender};
pub use settings::{ConnLimits, ConnSettings, LIMIT_JITTER_PERCENT};

use crate::tls::TlsIdentity;

// foldhash, not SipHash: the map is read on every request, and its keys are ours.
type PoolMap = foldhash::HashMap<PoolKey, Arc<EndpointPool>>;

/// Which pool a connection belongs to: its pod's address, and plaintext or TLS with
/// what it verified. So a pool never mixes plaintext and TLS connections, nor TLS
/// connections verified against another CA or name: a Route never gets a connection
/// that another Route's (weaker) settings accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: EndpointAddr,
    pub tls: Option<TlsIdentity>,
}

impl PoolKey {
    /// The pool for connections to `addr` made as `settings` say.
    pub fn new(addr: EndpointAddr, settings: &ConnSettings) -> Self {
        PoolKey {
            addr,
            tls: settings.tls.as_ref().map(|tls| tls.identity.clone()),
        }
    }
}

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

    /// The pool of `key`, created on first use.
    pub fn endpoint(&self, key: PoolKey) -> Arc<EndpointPool> {
        if let Some(pool) = self.map.load().get(&key) {
            return Arc::clone(pool);
        }
        let addr = key.addr;
        let mut created = None;
        self.map.rcu(|map| {
            let mut map = PoolMap::clone(map);
            let pool = map
                .entry(key.clone())
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
        self.endpoint(PoolKey::new(addr, settings))
            .checkout(settings)
            .await
    }

    /// Drains and forgets every pool whose key is not `live`; returns them.
    pub fn retain(&self, live: &dyn Fn(&PoolKey) -> bool) -> Vec<Arc<EndpointPool>> {
        let current = self.map.load_full();
        if current.keys().all(live) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        self.map.rcu(|map| {
            removed.clear();
            let mut kept = PoolMap::with_capacity_and_hasher(map.len(), Default::default());
            for (key, pool) in map.iter() {
                if live(key) {
                    kept.insert(key.clone(), Arc::clone(pool));
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

    /// Whether `key` has a pool.
    pub fn contains(&self, key: &PoolKey) -> bool {
        self.map.load().contains_key(key)
    }

    /// Connection counts per endpoint (its plaintext and TLS pools together), in
    /// address order.
    pub fn stats(&self) -> BTreeMap<EndpointAddr, PoolStats> {
        let mut out: BTreeMap<EndpointAddr, PoolStats> = BTreeMap::new();
        for (key, pool) in self.map.load().iter() {
            let stats = pool.stats();
            let sum = out.entry(key.addr).or_default();
            sum.idle += stats.idle;
            sum.busy += stats.busy;
            sum.draining |= stats.draining;
        }
        out
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
