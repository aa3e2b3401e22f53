//! Implicit Routes (issue 17, design.md 9 "Implicit claims last"): with zero-config on,
//! every Service port answers for its own names with default settings, so a sidecar
//! balances a Service nobody wrote a Route for.
//!
//! A Service is implicit when the controller runs with `--implicit-services` or the
//! Service carries the label `fairway.dev/implicit: enabled`. Each of its TCP ports gets
//! one Route, keyed `NAMESPACE/NAME:PORT` (a `:` no Route's name can hold, so the keys
//! never meet a real Route's), whose hosts are the Service's names and ClusterIPs *with
//! the port*: `orders.shop:8080`, `orders.shop.svc:8080`,
//! `orders.shop.svc.cluster.local:8080`, `10.96.0.10:8080`, `[fd00::10]:8080`. Proxies
//! look a request's host up without its port first (explicit Routes claim port-less
//! names), then with it, so any explicit claim of a name overrides the implicit one
//! whatever their ages. A proxy older than this reads the ported hosts as names no
//! request matches. Bare `NAME:PORT` waits for the sidecar's namespace in its Hello.
//!
//! Pure: a Service's facts in, Routes out.

use std::net::IpAddr;
use std::num::NonZeroU16;

use fairway_proto::model::{self, EndpointSetKey, RouteKey};

use super::endpoints::{ServicePorts, ServiceRef};

/// The Service label that opts one Service in, and its value.
pub const IMPLICIT_LABEL: &str = "fairway.dev/implicit";
pub const IMPLICIT_ENABLED: &str = "enabled";

/// The implicit Route key of one Service port.
pub fn route_key(service: &ServiceRef, port: NonZeroU16) -> RouteKey {
    RouteKey {
        namespace: service.namespace.clone(),
        name: format!("{}:{port}", service.name),
    }
}

/// The implicit Routes of `service`: one per TCP port, default settings.
pub fn routes(
    service: &ServiceRef,
    facts: &ServicePorts,
    cluster_domain: &str,
) -> Vec<model::Route> {
    let (name, namespace) = (&service.name, &service.namespace);
    facts
        .port_numbers()
        .map(|port| {
            let mut hosts: Vec<String> = [
                format!("{name}.{namespace}"),
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.{cluster_domain}"),
            ]
            .into_iter()
            .map(|host| format!("{}:{port}", host.to_ascii_lowercase()))
            .collect();
            hosts.extend(facts.cluster_ips.iter().map(|ip| match ip {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            }));
            let set = EndpointSetKey {
                namespace: namespace.clone(),
                service: name.clone(),
                port,
            };
            model::Route {
                key: route_key(service, port),
                hosts,
                rules: vec![model::Rule {
                    path_prefix: "/".to_owned(),
                    matching: model::Matching::default(),
                    timeouts: None,
                    retries: None,
                    filters: Default::default(),
                    backends: vec![model::Backend {
                        endpoint_set: set,
                        weight: 1,
                    }],
                    unresolved: Vec::new(),
                }],
                load_balancer: model::LoadBalancer::default(),
                upstream: model::Upstream::default(),
                timeouts: model::Timeouts::default(),
                retries: model::Retries::default(),
                health_check: None,
            }
        })
        .collect()
}
