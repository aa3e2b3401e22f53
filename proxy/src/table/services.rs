//! Where a sidecar's captured connection was going, in table terms: a Service's
//! ClusterIP and port name one endpoint set ([`Table::service_at`]), and a request on
//! that connection is balanced only when the Route it matches sends it to that set
//! ([`Table::routes_to`]); anything else is passed through, as it would go without
//! Fairway.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use fairway_proto::model::{EndpointSetKey, RouteTable};

use super::Table;
use crate::route::RequestView;

/// ClusterIP:port to the endpoint set of that Service port.
pub(super) type ServiceIndex = HashMap<SocketAddr, EndpointSetKey>;

impl Table {
    /// The endpoint set (Service port) whose Service has ClusterIP `dest.ip()` and port
    /// `dest.port()`. Built on a version's first call and kept with it: a DaemonSet
    /// proxy, which never asks, never pays for it.
    pub fn service_at(&self, dest: SocketAddr) -> Option<&EndpointSetKey> {
        self.services
            .get_or_init(|| index(&self.source))
            .get(&canonical(dest))
    }

    /// Whether a request for `authority` and `path` matches a Route whose matched rule
    /// sends to `set` (with any weight).
    pub fn routes_to(&self, authority: &str, path: &str, set: &EndpointSetKey) -> bool {
        // The first request's head only: its method and fields stay with the connection.
        let request = RequestView {
            method: None,
            path_and_query: path,
            headers: &(),
        };
        self.shape
            .router
            .route_request(authority, &request, self.namespace.as_deref())
            .is_ok_and(|selected| {
                selected
                    .rule
                    .backends
                    .iter()
                    .any(|b| &b.endpoint_set == set)
            })
    }
}

fn index(source: &RouteTable) -> ServiceIndex {
    let mut index = ServiceIndex::new();
    for (key, set) in &source.endpoint_sets {
        for &ip in &set.cluster_ips {
            index.insert(SocketAddr::new(ip, key.port.get()), key.clone());
        }
    }
    index
}

/// An IPv4 destination seen through an IPv6 socket (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(dest: SocketAddr) -> SocketAddr {
    match dest.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), dest.port()),
            None => dest,
        },
        IpAddr::V4(_) => dest,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use fairway_proto::model::Version;

    use super::*;
    use crate::discovery::testing;

    fn table_with_ips(ips: &[&str]) -> Table {
        let mut source = testing::table(&["127.0.0.11:8080"]);
        for set in source.endpoint_sets.values_mut() {
            Arc::make_mut(set).cluster_ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        }
        let version = Version {
            epoch: 1,
            sequence: 1,
        };
        let now = Instant::now();
        Table::build(
            Arc::new(source),
            version,
            &Table::default(),
            (None, None),
            now,
        )
    }

    #[test]
    fn a_cluster_ip_and_the_sets_port_name_the_set() {
        let t = table_with_ips(&["10.96.0.10", "fd00::10"]);
        let key = t.source.endpoint_sets.keys().next().unwrap().clone();
        let port = key.port.get();
        let at = |s: String| t.service_at(s.parse().unwrap()).cloned();
        assert_eq!(at(format!("10.96.0.10:{port}")), Some(key.clone()));
        assert_eq!(at(format!("[fd00::10]:{port}")), Some(key.clone()));
        assert_eq!(
            at(format!("[::ffff:10.96.0.10]:{port}")),
            Some(key.clone()),
            "v4-mapped"
        );
        assert_eq!(at(format!("10.96.0.10:{}", port + 1)), None, "another port");
        assert_eq!(at(format!("10.96.0.11:{port}")), None, "another IP");
        assert_eq!(
            table_with_ips(&[]).service_at(format!("10.96.0.10:{port}").parse().unwrap()),
            None
        );
    }

    #[test]
    fn a_request_is_balanced_only_when_its_route_sends_to_the_destinations_set() {
        let t = table_with_ips(&["10.96.0.10"]);
        let key = t.source.endpoint_sets.keys().next().unwrap().clone();
        assert!(t.routes_to("orders.shop:8080", "/x", &key));
        assert!(
            !t.routes_to("billing.shop", "/x", &key),
            "no Route for the host"
        );
        let other = EndpointSetKey {
            service: "billing".into(),
            ..key
        };
        assert!(
            !t.routes_to("orders.shop", "/x", &other),
            "the Route sends elsewhere"
        );
    }
}
