//! Metrics of upgraded connections (WebSockets): how many are open per route and pod,
//! the bytes each way, how long they lived and why they closed. The upgrade request
//! itself is counted once in `fairway_proxy_requests_total`, with code 101.
//!
//! Per-endpoint labels follow the proxy's switch: with `--endpoint-labels=false` the
//! `endpoint` label is `""`, and gauges and counters simply add up in that one series.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Shortest lifetime bucket: a WebSocket opened and closed at once.
const LIFETIME_BUCKET_START_SECONDS: f64 = 0.1;
/// Each bucket four times the previous one.
const LIFETIME_BUCKET_FACTOR: f64 = 4.0;
/// 0.1 s times 4^11 is ~5 days: past any default lifetime.
const LIFETIME_BUCKET_COUNT: u16 = 12;

/// Which way bytes went through an upgraded connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum Direction {
    /// From the client to the pod.
    to_pod,
    /// From the pod to the client.
    to_client,
}

/// Why an upgraded connection ended (`fairway_proxy_upgrades_closed_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum CloseReason {
    /// Both sides closed (each after the other, or together).
    closed,
    /// No byte either way for the Route's `upgradeIdleTimeout`.
    idle,
    /// Older than the Route's `maxUpgradeLifetime`.
    lifetime,
    /// The pod turned terminating or left, and `drainTimeout` passed.
    drained,
    /// A read or write failed (a reset).
    error,
    /// The proxy is shutting down.
    shutdown,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    route: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    route: String,
    endpoint: String,
    direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    route: String,
    reason: CloseReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type LifetimeFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn lifetime_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LIFETIME_BUCKET_START_SECONDS,
        LIFETIME_BUCKET_FACTOR,
        LIFETIME_BUCKET_COUNT,
    ))
}

/// The upgraded-connection metrics, registered in the proxy's registry.
#[derive(Debug)]
pub struct UpgradeMetrics {
    open: Family<EndpointLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    closed: Family<CloseLabels, Counter>,
    lifetime: LifetimeFamily,
}

/// One upgraded connection's series, looked up once when it opens.
#[derive(Clone, Debug)]
pub struct UpgradeSeries {
    open: Gauge,
    to_pod: Counter,
    to_client: Counter,
}

impl UpgradeSeries {
    /// Counts `n` bytes copied in `direction`.
    pub fn bytes(&self, direction: Direction, n: usize) {
        let counter = match direction {
            Direction::to_pod => &self.to_pod,
            Direction::to_client => &self.to_client,
        };
        counter.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

impl UpgradeMetrics {
    pub fn register(registry: &mut Registry) -> UpgradeMetrics {
        let metrics = UpgradeMetrics {
            open: Family::default(),
            bytes: Family::default(),
            closed: Family::default(),
            lifetime: Family::new_with_constructor(lifetime_histogram),
        };
        registry.register(
            "fairway_proxy_upgrades_open",
            "Upgraded connections (WebSockets) open, by route and endpoint",
            metrics.open.clone(),
        );
        registry.register(
            "fairway_proxy_upgrade_bytes",
            "Bytes copied through upgraded connections, by route, endpoint and direction",
            metrics.bytes.clone(),
        );
        registry.register(
            "fairway_proxy_upgrades_closed",
            "Upgraded connections ended, by route and why",
            metrics.closed.clone(),
        );
        registry.register(
            "fairway_proxy_upgrade_duration_seconds",
            "Lifetime of upgraded connections, from 101 to close, by route",
            metrics.lifetime.clone(),
        );
        metrics
    }

    /// Counts an upgraded connection to `endpoint` (already folded to `""` when
    /// per-endpoint labels are off) as open, and returns its series.
    pub fn opened(&self, route: &str, endpoint: &str) -> UpgradeSeries {
        let labels = EndpointLabels {
            route: route.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        let open = self.open.get_or_create(&labels).clone();
        open.inc();
        let bytes = |direction| {
            self.bytes
                .get_or_create(&BytesLabels {
                    route: route.to_owned(),
                    endpoint: endpoint.to_owned(),
                    direction,
                })
                .clone()
        };
        UpgradeSeries {
            open,
            to_pod: bytes(Direction::to_pod),
            to_client: bytes(Direction::to_client),
        }
    }

    /// The connection of `series` ended after `lifetime` for `reason`.
    pub fn closed(
        &self,
        route: &str,
        series: &UpgradeSeries,
        reason: CloseReason,
        lifetime: std::time::Duration,
    ) {
        series.open.dec();
        self.closed
            .get_or_create(&CloseLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
        self.lifetime
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(lifetime.as_secs_f64());
    }
}
