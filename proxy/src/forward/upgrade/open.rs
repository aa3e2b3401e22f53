//! One upgraded connection's life after the switch: counted open in its balancer,
//! its bytes copied by `tunnel`, ended by the peers, its limits, or its pod draining.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fairway_proto::model::{EndpointAddr, EndpointSetKey, Route};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::forward::tunnel;
use crate::metrics::Metrics;
use crate::table::{BackendState, Table};

/// Counts an upgraded connection open in its balancer while it lives.
pub struct Opened {
    backend: Arc<BackendState>,
    addr: EndpointAddr,
}

impl Opened {
    pub fn new(backend: Arc<BackendState>, addr: EndpointAddr) -> Self {
        backend.upgrade_opened(addr);
        Opened { backend, addr }
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.backend.upgrade_closed(self.addr);
    }
}

/// One upgraded connection from the pod's `101` to its close.
pub struct Tunnel {
    pub open: Opened,
    pub route: Arc<Route>,
    pub metrics: Arc<Metrics>,
    pub tables: watch::Receiver<Arc<Table>>,
}

impl Tunnel {
    pub async fn run(self, client: hyper::upgrade::OnUpgrade, pod: hyper::upgrade::OnUpgrade) {
        let addr = self.open.addr;
        let (client, pod) = match tokio::try_join!(client, pod) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%addr, %error, "an upgrade did not complete");
                return;
            }
        };
        let metrics = &self.metrics;
        let route = self.route.key.to_string();
        let series = metrics
            .upgrades
            .opened(&route, &metrics.endpoint_label(&addr.to_string()));
        let upgrades = &self.route.upstream.upgrades;
        let limits = tunnel::Limits {
            idle: Some(upgrades.idle_timeout).filter(|d| !d.is_zero()),
            lifetime: upgrades.max_lifetime,
        };
        let set = self.open.backend.set.clone();
        let drain = drained(self.tables, set, addr, self.route.upstream.drain_timeout);
        let started = Instant::now();
        let reason = tunnel::run(
            TokioIo::new(client),
            TokioIo::new(pod),
            limits,
            drain,
            |d, n| {
                series.bytes(d, n);
            },
        )
        .await;
        tracing::debug!(%addr, route, ?reason, "upgraded connection ended");
        metrics
            .upgrades
            .closed(&route, &series, reason, started.elapsed());
    }
}

/// Completes `grace` after the endpoint `addr` of `set` turned terminating or left the
/// table (a pod that is merely not ready keeps its tunnels: readiness flaps).
async fn drained(
    mut tables: watch::Receiver<Arc<Table>>,
    set: EndpointSetKey,
    addr: EndpointAddr,
    grace: Duration,
) {
    loop {
        let leaving = {
            let table = tables.borrow_and_update();
            table.version.is_some() && is_leaving(&table, &set, addr)
        };
        if leaving {
            tokio::time::sleep(grace).await;
            return;
        }
        if tables.changed().await.is_err() {
            // The proxy is stopping; the tunnel ends with it.
            return std::future::pending().await;
        }
    }
}

fn is_leaving(table: &Table, set: &EndpointSetKey, addr: EndpointAddr) -> bool {
    table
        .source
        .endpoint_sets
        .get(set)
        .and_then(|s| s.endpoints.get(&addr))
        .is_none_or(|e| e.terminating)
}
