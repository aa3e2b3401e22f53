//! The controller's Prometheus metrics (design.md section 5b), served by `admin` on
//! `/metrics`.
//!
//! Event metrics (pushes, acks, nacks) are recorded where they happen; state metrics
//! (proxies connected, per-proxy lag, table sizes) are refreshed from the proxy registry
//! and the latest published table at scrape time, so they can never drift.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::Outcome as AuthOutcome;
use crate::grpc::Proxies;
use crate::grpc::server::REPORT_MAX_AGE;
use crate::store::Published;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Push-duration buckets: 1 ms doubling to ~16 s, covering the 100 ms and 1 s targets
/// of design.md section 7 with resolution on both sides.
const PUSH_BUCKET_START: f64 = 0.001;
const PUSH_BUCKET_COUNT: u16 = 15;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy: String,
}

/// What kind of table message went out.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum MessageKind {
    Snapshot,
    Delta,
    /// A restarted controller's answer to a proxy's table digest (discovery.proto).
    Rebase,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: MessageKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// What became of a proxy's load report.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
enum ReportResult {
    accepted,
    /// Invalid, or sooner after the previous one than asked.
    dropped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    result: ReportResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    result: AuthOutcome,
}

/// Every controller metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Serializes refresh + encode: two scrapes at once must not interleave `clear()`s.
    scrape: Mutex<()>,
    proxies_connected: Gauge,
    proxy_lag: Family<ProxyLabels, Gauge>,
    push_duration: Histogram,
    table_version: Gauge,
    routes: Gauge,
    endpoint_sets: Gauge,
    endpoints: Gauge,
    versions_sent: Family<KindLabels, Counter>,
    nacks: Counter,
    discovery_auth: Family<AuthLabels, Counter>,
    route_skew: Family<RouteLabels, Gauge<f64, AtomicU64>>,
    load_reports: Family<ReportLabels, Counter>,
    proxy_subscriptions: Family<ProxyLabels, Gauge>,
    subscriptions_ignored: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fairway_controller");
        let proxies_connected = Gauge::default();
        let proxy_lag = Family::<ProxyLabels, Gauge>::default();
        let push_duration = Histogram::new(exponential_buckets(
            PUSH_BUCKET_START,
            2.0,
            PUSH_BUCKET_COUNT,
        ));
        let table_version = Gauge::default();
        let routes = Gauge::default();
        let endpoint_sets = Gauge::default();
        let endpoints = Gauge::default();
        let versions_sent = Family::<KindLabels, Counter>::default();
        let nacks = Counter::default();
        registry.register(
            "proxies_connected",
            "Proxies with an open discovery stream",
            proxies_connected.clone(),
        );
        let proxy_subscriptions = Family::<ProxyLabels, Gauge>::default();
        registry.register(
            "proxy_subscriptions",
            "Per sidecar: destinations it subscribed to (implicit Services in its scoped table, or remembered until one appears)",
            proxy_subscriptions.clone(),
        );
        let subscriptions_ignored = Counter::default();
        registry.register(
            "subscriptions_ignored",
            "Sidecar subscriptions ignored past the per-stream limit (those Services stay passed through)",
            subscriptions_ignored.clone(),
        );
        registry.register(
            "proxy_lag_versions",
            "Per proxy: latest table sequence minus the sequence the proxy acked",
            proxy_lag.clone(),
        );
        registry.register(
            "push_duration_seconds",
            "From a table version's publication to a proxy's ack of it",
            push_duration.clone(),
        );
        registry.register(
            "table_version",
            "Sequence of the latest published table version (0: not synced yet)",
            table_version.clone(),
        );
        registry.register(
            "index_routes",
            "Routes in the latest published table",
            routes.clone(),
        );
        registry.register(
            "index_endpoint_sets",
            "Endpoint sets (Service ports) in the latest published table",
            endpoint_sets.clone(),
        );
        registry.register(
            "index_endpoints",
            "Endpoints over all sets in the latest published table",
            endpoints.clone(),
        );
        registry.register(
            "versions_sent",
            "Table versions sent to proxies, by kind",
            versions_sent.clone(),
        );
        registry.register("nacks", "Nacks received from proxies", nacks.clone());
        let discovery_auth = Family::<AuthLabels, Counter>::default();
        registry.register(
            "discovery_auth",
            "Discovery streams by authentication result (admitted, or why refused)",
            discovery_auth.clone(),
        );
        let route_skew = Family::<RouteLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "route_share_skew",
            "Per Route: the worst relative deviation of a pod's share of requests from its \
             expected share, summed over every reporting proxy's last 5 s (0 = fair)",
            route_skew.clone(),
        );
        let load_reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "load_reports",
            "Load reports received from proxies, accepted or dropped",
            load_reports.clone(),
        );
        Metrics {
            proxy_subscriptions,
            subscriptions_ignored,
            route_skew,
            load_reports,
            registry,
            scrape: Mutex::new(()),
            proxies_connected,
            proxy_lag,
            push_duration,
            table_version,
            routes,
            endpoint_sets,
            endpoints,
            versions_sent,
            nacks,
            discovery_auth,
        }
    }

    /// One Discovery stream was admitted or refused.
    pub fn discovery_auth(&self, result: AuthOutcome) {
        self.discovery_auth
            .get_or_create(&AuthLabels { result })
            .inc();
    }

    /// A proxy acked a version `elapsed` after it was published.
    pub fn observe_push(&self, elapsed: Duration) {
        self.push_duration.observe(elapsed.as_secs_f64());
    }

    /// One version (a whole snapshot, or one delta) handed to a stream.
    pub fn version_sent(&self, kind: MessageKind) {
        self.versions_sent.get_or_create(&KindLabels { kind }).inc();
    }

    /// A sidecar's subscription past the per-stream limit was ignored.
    pub fn subscription_ignored(&self) {
        self.subscriptions_ignored.inc();
    }

    pub fn nack(&self) {
        self.nacks.inc();
    }

    /// One load report arrived: kept, or dropped (invalid or too soon).
    pub fn load_report(&self, accepted: bool) {
        let result = if accepted {
            ReportResult::accepted
        } else {
            ReportResult::dropped
        };
        self.load_reports
            .get_or_create(&ReportLabels { result })
            .inc();
    }

    /// Refreshes the state metrics from `proxies` and `latest`, then renders every metric
    /// as Prometheus text.
    pub fn encode(&self, proxies: &Proxies, latest: &Published) -> Result<String, std::fmt::Error> {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let sequence = latest.version.sequence;
        let table = &latest.table;
        self.table_version.set(saturating_i64(sequence));
        self.routes.set(saturating_i64(table.routes.len() as u64));
        self.endpoint_sets
            .set(saturating_i64(table.endpoint_sets.len() as u64));
        self.endpoints
            .set(saturating_i64(table.endpoint_count() as u64));

        let connected = proxies.list();
        self.proxies_connected
            .set(saturating_i64(connected.len() as u64));
        self.proxy_lag.clear();
        for proxy in &connected {
            let lag = proxy.lag(latest.version);
            self.proxy_lag
                .get_or_create(&ProxyLabels {
                    proxy: proxy.id.clone(),
                })
                .set(saturating_i64(lag));
        }

        self.proxy_subscriptions.clear();
        for proxy in &connected {
            if let Some(count) = proxy.subscriptions {
                self.proxy_subscriptions
                    .get_or_create(&ProxyLabels {
                        proxy: proxy.id.clone(),
                    })
                    .set(saturating_i64(count as u64));
            }
        }

        self.route_skew.clear();
        let reports = proxies.loads(Instant::now(), REPORT_MAX_AGE);
        for (route, load) in crate::load::aggregate(reports.iter().map(|r| r.as_ref())) {
            // Reported but no request in any window: as fair as it gets, and listed.
            self.route_skew
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                })
                .set(load.skew.unwrap_or(0.0));
        }

        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
