//! Fairness gauges, refreshed from the balancers' share windows at scrape time (state
//! metrics, so they can never drift from the balancers):
//!
//! - `fairway_proxy_share_skew{route,backend}`: the skew of one Route's balancer over
//!   one endpoint set (`fairway_proto::load` defines it: the worst relative deviation
//!   of a pod's share from its expected share over the window). Listed from the first
//!   request the balancer picks; 0 while the window holds no request.
//! - `fairway_proxy_endpoint_share{route,backend,endpoint}` and
//!   `fairway_proxy_endpoint_expected_share{...}`: each pod's share of the window's
//!   requests, and the share it should have had. Per-endpoint series, so absent with
//!   `--endpoint-labels=false` (a folded share would always read 1).

use std::sync::atomic::AtomicU64;

use fairway_proto::load::BackendLoad;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Ratio = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    route: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    route: String,
    backend: String,
    endpoint: String,
}

/// The fairness gauges of one registry.
#[derive(Debug)]
pub struct ShareMetrics {
    endpoint_labels: bool,
    skew: Family<BackendLabels, Ratio>,
    share: Family<EndpointLabels, Ratio>,
    expected: Family<EndpointLabels, Ratio>,
}

impl ShareMetrics {
    pub fn register(registry: &mut Registry, endpoint_labels: bool) -> Self {
        let skew = Family::<BackendLabels, Ratio>::default();
        let share = Family::<EndpointLabels, Ratio>::default();
        let expected = Family::<EndpointLabels, Ratio>::default();
        registry.register(
            "fairway_proxy_share_skew",
            "Worst relative deviation of a pod's share of requests from its expected \
             share over the last 5 s, per route and backend (0 = fair)",
            skew.clone(),
        );
        registry.register(
            "fairway_proxy_endpoint_share",
            "A pod's share of its backend's requests over the last 5 s",
            share.clone(),
        );
        registry.register(
            "fairway_proxy_endpoint_expected_share",
            "The share of its backend's requests a pod should have had over the last 5 s \
             (weights, slow start, zone hints)",
            expected.clone(),
        );
        ShareMetrics {
            endpoint_labels,
            skew,
            share,
            expected,
        }
    }

    /// Replaces every series with `loads` (from `Table::load`). Backends no longer in
    /// the table disappear.
    pub fn refresh(&self, loads: &[BackendLoad]) {
        self.skew.clear();
        self.share.clear();
        self.expected.clear();
        for load in loads {
            let (route, backend) = (load.route.to_string(), load.set.to_string());
            self.skew
                .get_or_create(&BackendLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                })
                .set(load.skew().unwrap_or(0.0));
            let requests = load.requests();
            let expected: f64 = load.endpoints.iter().map(|e| e.expected).sum();
            if !self.endpoint_labels || requests == 0 || expected <= 0.0 {
                continue;
            }
            for endpoint in &load.endpoints {
                let labels = EndpointLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                    endpoint: endpoint.addr.to_string(),
                };
                self.share
                    .get_or_create(&labels)
                    .set(endpoint.requests as f64 / requests as f64);
                self.expected
                    .get_or_create(&labels)
                    .set(endpoint.expected / expected);
            }
        }
    }
}
