//! gRPC calls' own metrics. `fairway_proxy_requests_total` counts a failed gRPC call as
//! HTTP 200 (its status travels in trailers), and its duration ends at response
//! headers, which a unary server sends with its reply but a streaming one at the
//! start. So gRPC calls also count by `grpc_status`, timed until their trailers.
//!
//! Per-endpoint labels follow the proxy's switch (`--endpoint-labels`); `grpc_status`
//! has 17 values at most (unknown numbers count as `UNKNOWN`).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fairway_proto::model::{EndpointAddr, RouteKey};
use http::HeaderMap;
use http::header::HeaderName;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Metrics, duration_histogram};

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The `grpc-status` in `headers` (trailers, or the headers of a trailers-only
/// response): the code a call is recorded with.
pub fn status(headers: &HeaderMap) -> Option<u32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

/// `grpc-status` when the pod ended the stream without trailers (as grpc-go reports
/// "server closed the stream without sending trailers").
pub const NO_TRAILERS: u32 = 13;
/// A call whose client went away before its end.
pub const CANCELLED: u32 = 1;
/// A call whose client went away at or after its deadline (the client's own timer).
pub const DEADLINE_EXCEEDED: u32 = 4;
/// The client's deadline timer starts before its request reaches the proxy, so its
/// reset may arrive a little before the proxy's copy of the deadline runs out: a call
/// dropped this close to its deadline counts as `DEADLINE_EXCEEDED`.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    route: String,
    endpoint: String,
    grpc_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Past this many cached series the cache starts over (the series stay registered):
/// bounds memory however many endpoints come and go.
const MAX_CACHED: usize = 50_000;

/// A call's series by typed key (endpoint already folded, status number), per route.
type PerRoute = foldhash::HashMap<(Option<EndpointAddr>, u32), (Counter, Histogram)>;

#[derive(Debug, Default)]
struct Cached {
    by_route: foldhash::HashMap<String, PerRoute>,
    len: usize,
}

/// The gRPC call metrics, registered in the proxy's registry.
#[derive(Debug)]
pub struct GrpcMetrics {
    calls: Family<CallLabels, Counter>,
    duration: DurationFamily,
    /// Once a series exists, counting a call formats and hashes no label string (a
    /// tenth of the proxy's own instructions per gRPC call before).
    cached: RwLock<Cached>,
}

impl GrpcMetrics {
    pub fn register(registry: &mut Registry) -> GrpcMetrics {
        let metrics = GrpcMetrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            cached: RwLock::default(),
        };
        registry.register(
            "fairway_proxy_grpc_calls",
            "gRPC calls answered, by route, endpoint and grpc-status (code name)",
            metrics.calls.clone(),
        );
        registry.register(
            "fairway_proxy_grpc_call_duration_seconds",
            "Time from a gRPC call's request to its trailers, by route",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts one call on `route` (`""`: none matched) answered by `endpoint` (`None`
    /// when unknown or folded, i.e. per-endpoint labels off: labelled `""`) with
    /// `code`, after `duration`.
    fn record_cached(
        &self,
        route: &str,
        endpoint: Option<EndpointAddr>,
        code: u32,
        duration: Duration,
    ) {
        let key = (endpoint, code);
        {
            let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((calls, histogram)) = cached.by_route.get(route).and_then(|r| r.get(&key)) {
                calls.inc();
                histogram.observe(duration.as_secs_f64());
                return;
            }
        }
        let labels = CallLabels {
            route: route.to_owned(),
            endpoint: endpoint.map(|e| e.to_string()).unwrap_or_default(),
            grpc_status: status_name(code),
        };
        let calls = self.calls.get_or_create(&labels).clone();
        let histogram = self
            .duration
            .get_or_create(&RouteLabels {
                route: labels.route,
            })
            .clone();
        calls.inc();
        histogram.observe(duration.as_secs_f64());
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if cached.len >= MAX_CACHED {
            *cached = Cached::default();
        }
        let per_route = cached.by_route.entry(route.to_owned()).or_default();
        if per_route.insert(key, (calls, histogram)).is_none() {
            cached.len += 1;
        }
    }
}

/// A gRPC status code's canonical name; numbers gRPC does not define are `UNKNOWN`.
pub fn status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// One gRPC call on its way to the client, recorded exactly once: with its trailers'
/// status ([`GrpcCall::finish`]), or, if dropped first (the client went away), as
/// `DEADLINE_EXCEEDED` when its `grpc-timeout` had run out, else `CANCELLED`.
#[derive(Debug)]
pub struct GrpcCall {
    metrics: Arc<Metrics>,
    route: String,
    endpoint: Option<EndpointAddr>,
    start: Instant,
    /// The client's `grpc-timeout`, if it sent one.
    asked: Option<Duration>,
    /// The client's deadline (`grpc-timeout`), if it sent one.
    deadline: Option<Instant>,
    done: bool,
}

impl GrpcCall {
    /// A call that arrived at `start` with `timeout` (its `grpc-timeout`), not routed
    /// yet.
    pub fn new(metrics: Arc<Metrics>, start: Instant, timeout: Option<Duration>) -> Self {
        GrpcCall {
            metrics,
            route: String::new(),
            endpoint: None,
            start,
            asked: timeout,
            deadline: timeout.and_then(|t| start.checked_add(t)),
            done: false,
        }
    }

    /// The `grpc-timeout` the call arrived with (read once, here).
    pub fn asked(&self) -> Option<Duration> {
        self.asked
    }

    /// The call goes to `route` (`namespace/name`), at `endpoint` when picked.
    pub fn aim(&mut self, route: &RouteKey, endpoint: Option<EndpointAddr>) {
        if self.route.is_empty() {
            self.route = route.to_string();
        }
        self.endpoint = endpoint.or(self.endpoint);
    }

    /// Records the call as ended with `code` now.
    pub fn finish(mut self, code: u32) {
        self.end(code);
    }

    fn end(&mut self, code: u32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let endpoint = self.endpoint.filter(|_| self.metrics.endpoint_labels);
        self.metrics
            .grpc
            .record_cached(&self.route, endpoint, code, self.start.elapsed());
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        let late = self
            .deadline
            .is_some_and(|d| Instant::now() + DEADLINE_SLACK >= d);
        self.end(if late { DEADLINE_EXCEEDED } else { CANCELLED });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names() {
        assert_eq!(status_name(0), "OK");
        assert_eq!(status_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(status_name(14), "UNAVAILABLE");
        assert_eq!(status_name(16), "UNAUTHENTICATED");
        assert_eq!(status_name(17), "UNKNOWN", "undefined numbers");
        assert_eq!(status_name(u32::MAX), "UNKNOWN");
    }

    #[test]
    fn a_call_counts_once_with_its_status_and_folds_endpoints_when_asked() {
        let metrics = Arc::new(Metrics::new(false));
        let endpoint = Some(EndpointAddr("10.0.0.1:8080".parse().expect("addr")));
        let route = RouteKey {
            namespace: "shop".into(),
            name: "orders".into(),
        };
        let call = |timeout| {
            let mut call = GrpcCall::new(Arc::clone(&metrics), Instant::now(), timeout);
            call.aim(&route, endpoint);
            call
        };
        call(None).finish(14);
        // The second goes through the cached series.
        call(None).finish(14);
        drop(call(Some(Duration::from_secs(60))));
        drop(call(Some(Duration::ZERO)));
        let text = metrics.encode();
        assert!(
            text.contains(
                "fairway_proxy_grpc_calls_total{route=\"shop/orders\",endpoint=\"\",grpc_status=\"UNAVAILABLE\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("grpc_status=\"CANCELLED\"} 1"),
            "a call dropped unfinished before its deadline is CANCELLED: {text}"
        );
        assert!(
            text.contains("grpc_status=\"DEADLINE_EXCEEDED\"} 1"),
            "a call dropped at its deadline is DEADLINE_EXCEEDED: {text}"
        );
        assert!(
            text.contains(
                "fairway_proxy_grpc_call_duration_seconds_count{route=\"shop/orders\"} 4"
            ),
            "{text}"
        );
    }
}
