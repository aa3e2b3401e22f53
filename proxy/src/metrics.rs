//! The proxy's Prometheus metrics (design.md 5b), one registry per process, served by
//! the admin server's `GET /metrics`.
//!
//! The request path calls [`Metrics::record_request`] once per request; the pools call
//! [`Metrics::set_in_flight`] and [`Metrics::set_pool_connections`]; discovery calls
//! the `discovery_*` and [`Metrics::set_table_version`] methods. With
//! `--endpoint-labels=false` every `endpoint` label is `""` and per-endpoint values are
//! summed into that one series, so cardinality stays per route, not per pod. The
//! fairness gauges (`shares`) are refreshed from the balancers at scrape time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fairway_proto::load::BackendLoad;
use fairway_proto::model::{EndpointAddr, RouteKey, Version};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Smallest request-duration bucket: a keep-alive hop on loopback is well under 1 ms.
const DURATION_BUCKET_START_SECONDS: f64 = 0.000_5;
/// Each bucket doubles the previous one.
const DURATION_BUCKET_FACTOR: f64 = 2.0;
/// 0.5 ms doubled 16 times reaches ~16 s, past the default 15 s request timeout.
const DURATION_BUCKET_COUNT: u16 = 16;

/// The `endpoint` label value when per-endpoint labels are switched off.
const FOLDED_ENDPOINT: &str = "";

/// `fairway_proxy_requests_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    endpoint: String,
    code: u16,
}

/// `fairway_proxy_request_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// `fairway_proxy_endpoint_in_flight` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InFlightLabels {
    route: String,
    endpoint: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
enum ConnectionState {
    idle,
    busy,
}

/// `fairway_proxy_pool_connections` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    endpoint: String,
    state: ConnectionState,
}

/// What happened to one discovery update (`fairway_proxy_discovery_updates_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum UpdateResult {
    /// Applied and acked.
    applied,
    /// Rejected and nacked; the previous table stays.
    nacked,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpdateLabels {
    result: UpdateResult,
}

/// Why a try was repeated (`fairway_proxy_retries_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
pub enum RetryReason {
    /// Nothing reached the pod: no connection, or the request came back unsent.
    not_sent,
    /// Sent, and the connection broke before response headers.
    reset,
    /// A 502, 503 or 504 from the pod.
    status,
    /// A gRPC call the pod ended at once with a status the route retries.
    grpc_status,
}

impl RetryReason {
    /// The label value, for traces.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::not_sent => "not_sent",
            RetryReason::reset => "reset",
            RetryReason::status => "status",
            RetryReason::grpc_status => "grpc_status",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    route: String,
    reason: RetryReason,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        DURATION_BUCKET_START_SECONDS,
        DURATION_BUCKET_FACTOR,
        DURATION_BUCKET_COUNT,
    ))
}

/// The last value reported for each gauge series, so that a folded series (endpoint
/// labels off) can be kept as a sum, and an endpoint's series can be removed.
#[derive(Debug, Default)]
struct Reported {
    /// route -> endpoint -> in-flight.
    in_flight: HashMap<String, HashMap<String, i64>>,
    /// endpoint -> (idle, busy).
    pool: HashMap<String, (i64, i64)>,
}

/// The proxy's metrics. Cheap to share (`Arc<Metrics>`); every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    endpoint_labels: bool,
    requests: Family<RequestLabels, Counter>,
    request_duration: DurationFamily,
    in_flight: Family<InFlightLabels, Gauge>,
    pool_connections: Family<PoolLabels, Gauge>,
    table_version: Gauge,
    discovery_updates: Family<UpdateLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    discovery_reconnects: Counter,
    discovery_connected: Gauge,
    reported: Mutex<Reported>,
    series: series::SeriesCache,
    /// Upgraded connections (WebSockets).
    pub upgrades: upgrades::UpgradeMetrics,
    /// The sidecar's captured connections.
    pub outbound: outbound::OutboundMetrics,
    /// gRPC calls by status, timed to their trailers.
    pub grpc: grpc::GrpcMetrics,
    /// Active health checks.
    pub health: health::HealthMetrics,
    /// Fairness: share of requests per pod against its expected share, and skew.
    shares: shares::ShareMetrics,
    /// Serializes a shares refresh with its encode: two scrapes must not interleave.
    scrape: Mutex<()>,
}

impl Metrics {
    /// A registry with every proxy metric registered. `endpoint_labels: false` folds
    /// all endpoints into one series per route (label value `""`).
    pub fn new(endpoint_labels: bool) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        let in_flight = Family::<InFlightLabels, Gauge>::default();
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        let table_version = Gauge::default();
        let discovery_updates = Family::<UpdateLabels, Counter>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let discovery_reconnects = Counter::default();
        let discovery_connected = Gauge::default();

        // prometheus-client appends `_total` to counters (design.md 5b).
        registry.register(
            "fairway_proxy_requests",
            "Requests answered, by route, endpoint and HTTP status",
            requests.clone(),
        );
        registry.register(
            "fairway_proxy_request_duration_seconds",
            "Time from request to response headers, by route",
            request_duration.clone(),
        );
        registry.register(
            "fairway_proxy_endpoint_in_flight",
            "Requests in flight to an endpoint, by route",
            in_flight.clone(),
        );
        registry.register(
            "fairway_proxy_pool_connections",
            "Upstream connections per endpoint, idle or busy",
            pool_connections.clone(),
        );
        registry.register(
            "fairway_proxy_table_version",
            "Sequence of the applied route table version (within its epoch)",
            table_version.clone(),
        );
        registry.register(
            "fairway_proxy_discovery_updates",
            "Discovery updates (snapshots and deltas), applied or nacked",
            discovery_updates.clone(),
        );
        registry.register(
            "fairway_proxy_retries",
            "Tries repeated after a failed one, by route and why",
            retries.clone(),
        );
        registry.register(
            "fairway_proxy_discovery_reconnects",
            "Discovery streams re-opened after the previous one ended or failed",
            discovery_reconnects.clone(),
        );
        registry.register(
            "fairway_proxy_discovery_connected",
            "1 while a discovery stream to the controller is open",
            discovery_connected.clone(),
        );

        let upgrades = upgrades::UpgradeMetrics::register(&mut registry);
        let outbound = outbound::OutboundMetrics::register(&mut registry);
        let grpc = grpc::GrpcMetrics::register(&mut registry);
        let health = health::HealthMetrics::register(&mut registry);
        let shares = shares::ShareMetrics::register(&mut registry, endpoint_labels);
        Metrics {
            shares,
            scrape: Mutex::new(()),
            upgrades,
            outbound,
            grpc,
            health,
            registry,
            endpoint_labels,
            requests,
            request_duration,
            in_flight,
            pool_connections,
            table_version,
            discovery_updates,
            retries,
            discovery_reconnects,
            discovery_connected,
            reported: Mutex::default(),
            series: series::SeriesCache::default(),
        }
    }

    /// `endpoint` as its label value: itself, or `""` when endpoint labels are off.
    pub fn endpoint_label(&self, endpoint: &str) -> String {
        if self.endpoint_labels {
            endpoint.to_owned()
        } else {
            FOLDED_ENDPOINT.to_owned()
        }
    }

    fn reported(&self) -> MutexGuard<'_, Reported> {
        // Only last-reported numbers live here; a panic elsewhere cannot corrupt them
        // beyond one stale gauge, so keep going.
        self.reported.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one answered request. `route` is the route key (`namespace/name`, or `""`
    /// when none matched); `endpoint` is the pod `ip:port` that answered, `None` when
    /// the proxy answered itself (404, 503...). `duration` runs until response headers.
    pub fn record_request(
        &self,
        route: &str,
        endpoint: Option<&str>,
        code: u16,
        duration: Duration,
    ) {
        self.series_for(route, endpoint, code).observe(duration);
    }

    /// [`Metrics::record_request`] for the request path: typed labels, formatted only
    /// the first time a series is seen.
    pub fn record(
        &self,
        route: Option<&RouteKey>,
        endpoint: Option<EndpointAddr>,
        code: u16,
        duration: Duration,
    ) {
        let series = self.series.get(route, endpoint, code, || {
            let route = route.map(ToString::to_string).unwrap_or_default();
            let endpoint = endpoint.map(|e| e.to_string());
            self.series_for(&route, endpoint.as_deref(), code)
        });
        series.observe(duration);
    }

    fn series_for(&self, route: &str, endpoint: Option<&str>, code: u16) -> series::RequestSeries {
        let labels = RequestLabels {
            route: route.to_owned(),
            endpoint: self.endpoint_label(endpoint.unwrap_or(FOLDED_ENDPOINT)),
            code,
        };
        let requests = self.requests.get_or_create(&labels).clone();
        let labels = RouteLabels {
            route: labels.route,
        };
        let duration = self.request_duration.get_or_create(&labels).clone();
        series::RequestSeries { requests, duration }
    }

    /// Counts one retry on `route` (`namespace/name`): a try that failed for `reason`
    /// is about to be repeated.
    pub fn record_retry(&self, route: &str, reason: RetryReason) {
        self.retries
            .get_or_create(&RetryLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
    }

    /// Sets the number of requests in flight from `route` to `endpoint` (`ip:port`).
    pub fn set_in_flight(&self, route: &str, endpoint: &str, n: u64) {
        let n = saturating_i64(n);
        let previous = {
            let mut reported = self.reported();
            let per_route = match reported.in_flight.get_mut(route) {
                Some(per_route) => per_route,
                None => reported.in_flight.entry(route.to_owned()).or_default(),
            };
            match per_route.get_mut(endpoint) {
                Some(value) => std::mem::replace(value, n),
                None => {
                    per_route.insert(endpoint.to_owned(), n);
                    0
                }
            }
        };
        let labels = InFlightLabels {
            route: route.to_owned(),
            endpoint: self.endpoint_label(endpoint),
        };
        let gauge = self.in_flight.get_or_create(&labels);
        if self.endpoint_labels {
            gauge.set(n);
        } else {
            gauge.inc_by(n - previous);
        }
    }

    /// Sets the pool's connection counts for `endpoint` (`ip:port`).
    pub fn set_pool_connections(&self, endpoint: &str, idle: u64, busy: u64) {
        let now = (saturating_i64(idle), saturating_i64(busy));
        let previous = {
            let mut reported = self.reported();
            match reported.pool.get_mut(endpoint) {
                Some(value) => std::mem::replace(value, now),
                None => {
                    reported.pool.insert(endpoint.to_owned(), now);
                    (0, 0)
                }
            }
        };
        let endpoint = self.endpoint_label(endpoint);
        for (state, value, before) in [
            (ConnectionState::idle, now.0, previous.0),
            (ConnectionState::busy, now.1, previous.1),
        ] {
            let labels = PoolLabels {
                endpoint: endpoint.clone(),
                state,
            };
            let gauge = self.pool_connections.get_or_create(&labels);
            if self.endpoint_labels {
                gauge.set(value);
            } else {
                gauge.inc_by(value - before);
            }
        }
    }

    /// Drops every gauge series of an endpoint that left the table and was drained,
    /// so `/metrics` does not list departed pods forever. Request counters stay: they
    /// are cumulative.
    pub fn remove_endpoint(&self, endpoint: &str) {
        let mut reported = self.reported();
        for (route, per_route) in reported.in_flight.iter_mut() {
            let Some(value) = per_route.remove(endpoint) else {
                continue;
            };
            if self.endpoint_labels {
                self.in_flight.remove(&InFlightLabels {
                    route: route.clone(),
                    endpoint: endpoint.to_owned(),
                });
            } else {
                self.in_flight
                    .get_or_create(&InFlightLabels {
                        route: route.clone(),
                        endpoint: FOLDED_ENDPOINT.to_owned(),
                    })
                    .dec_by(value);
            }
        }
        reported
            .in_flight
            .retain(|_, per_route| !per_route.is_empty());
        let Some((idle, busy)) = reported.pool.remove(endpoint) else {
            return;
        };
        for (state, value) in [(ConnectionState::idle, idle), (ConnectionState::busy, busy)] {
            if self.endpoint_labels {
                self.pool_connections.remove(&PoolLabels {
                    endpoint: endpoint.to_owned(),
                    state,
                });
            } else {
                self.pool_connections
                    .get_or_create(&PoolLabels {
                        endpoint: FOLDED_ENDPOINT.to_owned(),
                        state,
                    })
                    .dec_by(value);
            }
        }
    }

    /// Records the applied table version (its sequence; epochs are not comparable).
    pub fn set_table_version(&self, version: Version) {
        self.table_version.set(saturating_i64(version.sequence));
    }

    /// Counts one discovery update, applied or nacked.
    pub fn discovery_update(&self, result: UpdateResult) {
        self.discovery_updates
            .get_or_create(&UpdateLabels { result })
            .inc();
    }

    /// Counts one reconnect attempt of the discovery client.
    pub fn discovery_reconnect(&self) {
        self.discovery_reconnects.inc();
    }

    /// Whether a discovery stream is currently open.
    pub fn set_discovery_connected(&self, connected: bool) {
        self.discovery_connected.set(i64::from(connected));
    }

    /// [`Metrics::encode`] with the fairness gauges first refreshed from `loads`
    /// (`Table::load`), as `/metrics` serves it.
    pub fn encode_with_shares(&self, loads: &[BackendLoad]) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.shares.refresh(loads);
        self.encode()
    }

    /// The whole registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub mod grpc;
pub mod health;
pub mod outbound;
mod series;
mod shares;
#[cfg(test)]
mod tests;
pub mod upgrades;
