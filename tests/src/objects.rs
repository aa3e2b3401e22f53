//! Small builders for the Kubernetes objects the controller reads: a Service, its
//! EndpointSlices, a Route. Slice addresses are what the apiserver accepts (not in
//! 127.0.0.0/8, which it rejects as loopback); tests that only read them never dial.

use std::collections::BTreeMap;

use fairway_controller::crd::{Route, RouteBackend, RouteRule, RouteSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// A headless Service (no cluster IP to allocate) with one TCP port `port_name: port`.
pub fn service(namespace: &str, name: &str, port_name: &str, port: i32) -> Service {
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            ports: Some(vec![ServicePort {
                name: Some(port_name.to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Endpoint conditions as a kubelet would set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    /// Neither ready nor serving (failing its readiness probe).
    NotReady,
    /// Shutting down but still serving (KEP-1669).
    Terminating,
}

/// One endpoint: `ip` on `node`, for pod `pod`.
pub fn endpoint(ip: &str, state: State) -> Endpoint {
    let (ready, serving, terminating) = match state {
        State::Ready => (true, true, false),
        State::NotReady => (false, false, false),
        State::Terminating => (false, true, true),
    };
    Endpoint {
        addresses: vec![ip.to_owned()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        ..Endpoint::default()
    }
}

/// An IPv4 EndpointSlice of Service `service`, port `port_name: port`.
pub fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    port_name: &str,
    port: i32,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_owned(),
        service.to_owned(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".to_owned(),
        endpoints: Some(endpoints),
        ports: Some(vec![EndpointPort {
            name: Some(port_name.to_owned()),
            port: Some(port),
            protocol: Some("TCP".to_owned()),
            ..EndpointPort::default()
        }]),
    }
}

/// A Route for `hosts`, everything (`/`) to `service:port`.
pub fn route(namespace: &str, name: &str, hosts: &[&str], service: &str, port: i32) -> Route {
    let spec = RouteSpec {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        rules: vec![RouteRule {
            path_prefix: "/".to_owned(),
            matches: None,
            filters: Vec::new(),
            backends: vec![RouteBackend {
                service: service.to_owned(),
                port: IntOrString::Int(port),
                weight: 1,
            }],
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    let mut route = Route::new(name, spec);
    route.metadata.namespace = Some(namespace.to_owned());
    route
}
