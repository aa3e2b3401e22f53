//! What the health checker (`crate::health`) needs from a table: which endpoint gets
//! which check, and the balancers that take its verdict.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fairway_proto::model::{EndpointAddr, GrpcHealthCheck};

use super::{BackendState, Table};

/// One probe to run: an endpoint and the check asked of it. Routes that ask the same
/// check of the same endpoint share one probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeKey {
    pub addr: EndpointAddr,
    pub check: GrpcHealthCheck,
}

impl Table {
    /// Every probe this table asks for, with the balancers each verdict feeds: for
    /// each Route with a health check, every endpoint of every set it uses.
    pub fn health_targets(&self) -> HashMap<ProbeKey, Vec<Arc<BackendState>>> {
        let mut targets: HashMap<ProbeKey, Vec<Arc<BackendState>>> = HashMap::new();
        for (route_key, route) in &self.source.routes {
            let Some(check) = &route.health_check else {
                continue;
            };
            let Some(backends) = self.shape.backends.get(route_key) else {
                continue;
            };
            for (set_key, backend) in backends {
                let Some(set) = self.source.endpoint_sets.get(set_key) else {
                    continue;
                };
                for &addr in set.endpoints.keys() {
                    let key = ProbeKey {
                        addr,
                        check: check.clone(),
                    };
                    targets.entry(key).or_default().push(Arc::clone(backend));
                }
            }
        }
        targets
    }
}

impl BackendState {
    /// An active health check's verdict on `addr` (see [`Balancer::set_health`]).
    ///
    /// [`Balancer::set_health`]: crate::balance::Balancer::set_health
    pub fn set_health(&self, addr: EndpointAddr, healthy: bool, now: Instant) -> bool {
        self.lock().set_health(addr, healthy, now)
    }
}
