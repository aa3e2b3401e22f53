//! The cluster-wide view of the proxies' load reports: per Route and endpoint set, each
//! endpoint's requests, in-flight and expected requests summed over every proxy, and the
//! skew of those sums (`fairway_proto::load` defines skew).
//!
//! Summing is what makes the figure cluster-wide: eight proxies each sending 30% to one
//! of four pods is fair per proxy only if the other proxies make up for it. Pure: the
//! reports come in, the view goes out; `grpc::proxies` keeps the latest report per
//! proxy and `metrics` publishes the result.

use std::collections::BTreeMap;

use fairway_proto::load::{BackendLoad, EndpointLoad, LoadReport};
use fairway_proto::model::{EndpointAddr, EndpointSetKey, RouteKey};

/// One Route's merged figures.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteLoad {
    /// Per endpoint set of the Route, the summed endpoints in address order.
    pub backends: Vec<BackendLoad>,
    /// The worst skew over its backends; `None` without requests in any window.
    pub skew: Option<f64>,
    /// How many proxies' reports went in.
    pub proxies: usize,
}

/// Merges `reports` (one per proxy) into one [`RouteLoad`] per Route.
pub fn aggregate<'a>(
    reports: impl IntoIterator<Item = &'a LoadReport>,
) -> BTreeMap<RouteKey, RouteLoad> {
    type Sums = BTreeMap<EndpointAddr, EndpointLoad>;
    let mut merged: BTreeMap<(RouteKey, EndpointSetKey), Sums> = BTreeMap::new();
    let mut proxies: BTreeMap<RouteKey, usize> = BTreeMap::new();
    for report in reports {
        let mut counted: Vec<&RouteKey> = Vec::new();
        for backend in &report.backends {
            let sums = merged
                .entry((backend.route.clone(), backend.set.clone()))
                .or_default();
            for e in &backend.endpoints {
                let sum = sums.entry(e.addr).or_insert(EndpointLoad {
                    addr: e.addr,
                    requests: 0,
                    in_flight: 0,
                    expected: 0.0,
                });
                sum.requests = sum.requests.saturating_add(e.requests);
                sum.in_flight = sum.in_flight.saturating_add(e.in_flight);
                sum.expected += e.expected;
            }
            if !counted.contains(&&backend.route) {
                counted.push(&backend.route);
                *proxies.entry(backend.route.clone()).or_default() += 1;
            }
        }
    }
    let mut routes: BTreeMap<RouteKey, RouteLoad> = BTreeMap::new();
    for ((route, set), sums) in merged {
        let backend = BackendLoad {
            route: route.clone(),
            set,
            endpoints: sums.into_values().collect(),
        };
        let skew = backend.skew();
        let entry = routes.entry(route.clone()).or_insert_with(|| RouteLoad {
            backends: Vec::new(),
            skew: None,
            proxies: proxies.get(&route).copied().unwrap_or(0),
        });
        entry.skew = match (entry.skew, skew) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        entry.backends.push(backend);
    }
    routes
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    fn key(name: &str) -> RouteKey {
        RouteKey {
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn set() -> EndpointSetKey {
        EndpointSetKey {
            namespace: "shop".into(),
            service: "orders".into(),
            port: std::num::NonZeroU16::new(8080).expect("non-zero"),
        }
    }

    fn addr(i: u8) -> EndpointAddr {
        EndpointAddr(SocketAddr::from(([127, 0, 0, 10 + i], 8080)))
    }

    /// One proxy's report for route `name`: `requests[i]` to pod `i`, each expected to
    /// take an equal part.
    fn report(name: &str, requests: &[u64]) -> LoadReport {
        let total: u64 = requests.iter().sum();
        let endpoints = requests
            .iter()
            .zip(1..)
            .map(|(&n, i)| EndpointLoad {
                addr: addr(i),
                requests: n,
                in_flight: 1,
                expected: total as f64 / requests.len() as f64,
            })
            .collect();
        LoadReport {
            window: Duration::from_secs(5),
            backends: vec![BackendLoad {
                route: key(name),
                set: set(),
                endpoints,
            }],
            truncated: false,
            accepts_figures: false,
        }
    }

    #[test]
    fn proxies_that_make_up_for_each_other_are_fair_together() {
        let a = report("orders", &[30, 10]);
        let b = report("orders", &[10, 30]);
        let view = aggregate([&a, &b]);
        let orders = &view[&key("orders")];
        assert_eq!(orders.skew, Some(0.0), "40/40 over the cluster");
        assert_eq!(orders.proxies, 2);
        let e = &orders.backends[0].endpoints;
        assert_eq!(
            (e[0].requests, e[0].in_flight, e[0].expected),
            (40, 2, 40.0)
        );
    }

    #[test]
    fn proxies_herding_onto_one_pod_show_the_cluster_skew() {
        let a = report("orders", &[30, 10]);
        let b = report("orders", &[30, 10]);
        let view = aggregate([&a, &b]);
        let skew = view[&key("orders")].skew.expect("requests");
        assert!(
            (skew - 0.5).abs() < 1e-9,
            "60 of 80 where 40 was fair: {skew}"
        );
    }

    #[test]
    fn routes_stay_apart_and_idle_ones_have_no_figure() {
        let a = report("orders", &[5, 5]);
        let b = report("cart", &[0, 0]);
        let view = aggregate([&a, &b]);
        assert_eq!(view.len(), 2);
        assert_eq!(view[&key("orders")].skew, Some(0.0));
        assert_eq!(view[&key("cart")].skew, None, "no request in any window");
        assert!(aggregate(std::iter::empty()).is_empty());
    }
}
