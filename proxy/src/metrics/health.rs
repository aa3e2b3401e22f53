//! Active health checks' metrics (`crate::health`): every probe by its answer, and
//! every change of an endpoint's health. Per-endpoint labels follow the proxy's switch
//! (`--endpoint-labels`); `result` has seven values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    endpoint: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    endpoint: String,
    /// `unhealthy` (taken out) or `healthy` (back in).
    to: &'static str,
}

#[derive(Debug)]
pub struct HealthMetrics {
    checks: Family<CheckLabels, Counter>,
    changes: Family<ChangeLabels, Counter>,
}

impl HealthMetrics {
    pub fn register(registry: &mut Registry) -> HealthMetrics {
        let metrics = HealthMetrics {
            checks: Family::default(),
            changes: Family::default(),
        };
        registry.register(
            "fairway_proxy_health_checks",
            "Active health probes (grpc.health.v1 Check), by endpoint and result",
            metrics.checks.clone(),
        );
        registry.register(
            "fairway_proxy_health_changes",
            "Endpoints taken out of rotation (to=unhealthy) or back (to=healthy) by health checks",
            metrics.changes.clone(),
        );
        metrics
    }

    /// One probe of `endpoint` (already folded when per-endpoint labels are off).
    pub fn record_check(&self, endpoint: &str, result: &'static str) {
        let labels = CheckLabels {
            endpoint: endpoint.to_owned(),
            result,
        };
        self.checks.get_or_create(&labels).inc();
    }

    /// `endpoint` turned healthy or unhealthy.
    pub fn record_change(&self, endpoint: &str, healthy: bool) {
        let labels = ChangeLabels {
            endpoint: endpoint.to_owned(),
            to: if healthy { "healthy" } else { "unhealthy" },
        };
        self.changes.get_or_create(&labels).inc();
    }
}
