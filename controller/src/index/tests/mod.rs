//! Index tests: small builders for Kubernetes objects, then one test per semantic rule,
//! split like the index itself.

mod endpoints;
mod filters;
mod gamma;
mod gamma_rules;
mod hosts;
mod implicit;
mod incremental;
mod invalid;
mod matching;
mod routes;
mod status;
mod tls;
mod tls_policies;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;

use fairway_proto::model::{EndpointAddr, EndpointSet, EndpointSetKey, RouteKey};
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::Index;
use crate::crd::{self, RouteBackend, RouteRule, RouteSpec};

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

pub(super) fn num(port: i32) -> IntOrString {
    IntOrString::Int(port)
}

pub(super) fn named(port: &str) -> IntOrString {
    IntOrString::String(port.to_owned())
}

pub(super) fn backend(service: &str, port: IntOrString, weight: u32) -> RouteBackend {
    RouteBackend {
        service: service.to_owned(),
        port,
        weight,
    }
}

/// A Route with one rule, `/`, to `service:port`, created `created` seconds after the epoch.
pub(super) fn route(
    name: &str,
    hosts: &[&str],
    service: &str,
    port: IntOrString,
    created: i64,
) -> crd::Route {
    let spec = RouteSpec {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        rules: vec![RouteRule {
            path_prefix: "/".to_owned(),
            matches: None,
            filters: Vec::new(),
            backends: vec![backend(service, port, 1)],
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    let mut route = crd::Route::new(name, spec);
    route.metadata = ObjectMeta {
        creation_timestamp: Some(Time(Timestamp::from_second(created).expect("valid"))),
        generation: Some(1),
        ..meta("shop", name)
    };
    route
}

/// A Service in `shop` with TCP ports `(name, port)`; an empty name means unnamed.
pub(super) fn service(name: &str, ports: &[(&str, i32)]) -> Service {
    let ports = ports.iter().map(|(port_name, port)| ServicePort {
        name: (!port_name.is_empty()).then(|| (*port_name).to_owned()),
        port: *port,
        ..ServicePort::default()
    });
    Service {
        metadata: meta("shop", name),
        spec: Some(ServiceSpec {
            ports: Some(ports.collect()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// An IPv4 EndpointSlice in `shop` for `service`, with TCP ports `(name, port)`.
pub(super) fn slice(
    name: &str,
    service: &str,
    ports: &[(&str, i32)],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let ports = ports.iter().map(|(port_name, port)| EndpointPort {
        name: (!port_name.is_empty()).then(|| (*port_name).to_owned()),
        port: Some(*port),
        protocol: Some("TCP".to_owned()),
        ..EndpointPort::default()
    });
    let mut metadata = meta("shop", name);
    metadata.labels = Some(BTreeMap::from([(
        super::SERVICE_NAME_LABEL.to_owned(),
        service.to_owned(),
    )]));
    EndpointSlice {
        address_type: "IPv4".to_owned(),
        endpoints: Some(endpoints),
        metadata,
        ports: Some(ports.collect()),
    }
}

/// An endpoint with no conditions set: ready and serving by the API's defaults.
pub(super) fn ep(ip: &str) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_owned()],
        ..Endpoint::default()
    }
}

pub(super) fn ep_with(
    ip: &str,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> Endpoint {
    Endpoint {
        conditions: Some(EndpointConditions {
            ready,
            serving,
            terminating,
        }),
        ..ep(ip)
    }
}

/// An endpoint with topology: zone, node, a Pod target and zone hints.
pub(super) fn ep_placed(ip: &str, zone: &str, node: &str, pod: &str, hints: &[&str]) -> Endpoint {
    Endpoint {
        zone: Some(zone.to_owned()),
        node_name: Some(node.to_owned()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some(pod.to_owned()),
            namespace: Some("shop".to_owned()),
            ..ObjectReference::default()
        }),
        hints: Some(EndpointHints {
            for_zones: Some(
                (hints.iter())
                    .map(|z| ForZone {
                        name: (*z).to_owned(),
                    })
                    .collect(),
            ),
            // As the EndpointSlice controller writes them for PreferSameNode.
            for_nodes: Some(vec![ForNode {
                name: node.to_owned(),
            }]),
        }),
        ..ep(ip)
    }
}

pub(super) fn route_key(name: &str) -> RouteKey {
    RouteKey {
        namespace: "shop".to_owned(),
        name: name.to_owned(),
    }
}

pub(super) fn set_key(service: &str, port: u16) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".to_owned(),
        service: service.to_owned(),
        port: NonZeroU16::new(port).expect("nonzero port"),
    }
}

pub(super) fn addr(socket: &str) -> EndpointAddr {
    EndpointAddr(socket.parse::<SocketAddr>().expect("socket address"))
}

/// The set's endpoint addresses, in order.
pub(super) fn addrs(set: &EndpointSet) -> Vec<String> {
    set.endpoints.keys().map(|a| a.to_string()).collect()
}

/// An index holding Route `orders` (host `orders.shop`) -> Service `orders` port 8080
/// (named `http`, pods on 9090) with two ready pods.
pub(super) fn orders_index() -> Index {
    let mut index = Index::new();
    index.apply_route(&route("orders", &["orders.shop"], "orders", num(8080), 1));
    index.apply_service(&service("orders", &[("http", 8080)]));
    let pods = vec![ep("10.0.0.1"), ep("10.0.0.2")];
    index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    index
}

/// The endpoint set of `orders:8080`, which must be in the table.
pub(super) fn orders_set(index: &Index) -> &EndpointSet {
    index
        .table()
        .endpoint_sets
        .get(&set_key("orders", 8080))
        .expect("orders:8080 is in the table")
}
