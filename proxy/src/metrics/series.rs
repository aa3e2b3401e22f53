//! The request path's series, cached by typed key: once a (route, endpoint, status)
//! series exists, counting a request formats no label and hashes no label string; it
//! takes a read lock, two small-map lookups and two atomic updates.

use foldhash::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use fairway_proto::model::{EndpointAddr, RouteKey};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Past this many cached series the cache starts over (the series themselves stay in
/// the registry): bounds memory however many endpoints come and go.
const MAX_CACHED: usize = 50_000;

/// The two series one answered request updates.
#[derive(Clone, Debug)]
pub struct RequestSeries {
    pub requests: Counter,
    pub duration: Histogram,
}

impl RequestSeries {
    pub fn observe(&self, duration: Duration) {
        self.requests.inc();
        self.duration.observe(duration.as_secs_f64());
    }
}

type PerRoute = HashMap<(Option<EndpointAddr>, u16), RequestSeries>;

#[derive(Debug, Default)]
struct Cached {
    routed: HashMap<RouteKey, PerRoute>,
    /// Requests no route matched (404s and the like).
    unrouted: PerRoute,
    len: usize,
}

/// Series by typed key.
#[derive(Debug, Default)]
pub struct SeriesCache {
    cached: RwLock<Cached>,
}

impl SeriesCache {
    /// The series for the key, created with `create` (which formats the labels) the
    /// first time.
    pub fn get(
        &self,
        route: Option<&RouteKey>,
        endpoint: Option<EndpointAddr>,
        code: u16,
        create: impl FnOnce() -> RequestSeries,
    ) -> RequestSeries {
        let key = (endpoint, code);
        {
            let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
            let per_route = match route {
                Some(route) => cached.routed.get(route),
                None => Some(&cached.unrouted),
            };
            if let Some(series) = per_route.and_then(|p| p.get(&key)) {
                return series.clone();
            }
        }
        let series = create();
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        if cached.len >= MAX_CACHED {
            *cached = Cached::default();
        }
        let per_route = match route {
            Some(route) => cached.routed.entry(route.clone()).or_default(),
            None => &mut cached.unrouted,
        };
        if per_route.insert(key, series.clone()).is_none() {
            cached.len += 1;
        }
        series
    }
}
