//! Metrics of the sidecar's captured connections (`--outbound-listen`): what became of
//! each one, so an operator can see how much of a pod's traffic Fairway balances and
//! how much it only passes on. Labels are closed sets (no Service or pod names).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What became of one captured connection
/// (`fairway_proxy_outbound_connections_total{outcome}`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum Outcome {
    /// HTTP to a known Service port whose Route sends there: balanced per request.
    balanced,
    /// To a known Service port, but not HTTP/1 for one of its Routes: passed through
    /// after detection.
    detected_pass_through,
    /// To an address the table does not know: passed through at once.
    unknown_pass_through,
    /// Not redirected (no original destination), or failed before a decision.
    refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// The captured-connection metrics, registered in the proxy's registry.
#[derive(Debug)]
pub struct OutboundMetrics {
    connections: Family<OutcomeLabels, Counter>,
}

impl OutboundMetrics {
    pub fn register(registry: &mut Registry) -> OutboundMetrics {
        let metrics = OutboundMetrics {
            connections: Family::default(),
        };
        registry.register(
            "fairway_proxy_outbound_connections",
            "Captured outbound connections (sidecar), by what became of them",
            metrics.connections.clone(),
        );
        metrics
    }

    /// Counts one captured connection's outcome.
    pub fn connection(&self, outcome: Outcome) {
        self.connections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
