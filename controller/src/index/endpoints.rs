//! Services and EndpointSlices, and how they become one [`EndpointSet`] per Service port.
//!
//! Kubernetes semantics, as kube-proxy reads them:
//! - a Service's slices carry the label `kubernetes.io/service-name`; all of them merge;
//! - a Service port maps to the slice port with the same name (unnamed to unnamed), and
//!   its number is the pod's port; only TCP ports count, since Fairway speaks HTTP;
//! - `ready` unset means ready, `serving` unset means "as ready", `terminating` unset
//!   means not terminating; `serving && terminating` endpoints are kept, marked
//!   terminating, so proxies can fall back to them (KEP-1669);
//! - endpoints neither ready nor serving are *dropped* from the set (no proxy may send
//!   them anything, so shipping them is churn) but still counted in `total`;
//! - an address listed twice (one pod in two slices, e.g. mid-migration) appears once,
//!   with the most usable conditions of its listings;
//! - IPv4 and IPv6 slices both count (by `addressType`); FQDN slices are ignored; like
//!   kube-proxy, only an endpoint's first address is used.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU16;

use fairway_proto::model::{Endpoint, EndpointAddr, EndpointSet, EndpointSetKey};
use k8s_openapi::api::core::v1::{Service, ServicePort as K8sServicePort};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::base::DEFAULT_NAMESPACE;
use crate::crd::EndpointCounts;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced object name: a Service, or an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

/// A Service, as `namespace/name`.
pub(super) type ServiceRef = ObjectRef;

impl ObjectRef {
    pub fn new(namespace: &str, name: &str) -> Self {
        ObjectRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn of(meta: &ObjectMeta) -> Self {
        let namespace = meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        ObjectRef::new(namespace, meta.name.as_deref().unwrap_or_default())
    }

    /// The first and last possible keys of this Service's endpoint sets.
    pub fn set_range(&self) -> std::ops::RangeInclusive<EndpointSetKey> {
        let key = |port| EndpointSetKey {
            namespace: self.namespace.clone(),
            service: self.name.clone(),
            port,
        };
        key(NonZeroU16::MIN)..=key(NonZeroU16::MAX)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One TCP port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ServicePort {
    /// Empty for an unnamed port (allowed only when it is the Service's only port).
    pub name: String,
    pub port: NonZeroU16,
    pub app_protocol: Option<String>,
}

/// A Service's TCP ports and the ClusterIPs they are reached on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ServicePorts {
    ports: Vec<ServicePort>,
    /// `spec.clusterIPs` (else `spec.clusterIP`), parsed, sorted, no duplicates; empty
    /// for a headless Service (`None`) or one without an IP yet.
    pub cluster_ips: Vec<IpAddr>,
    /// Labelled `fairway.dev/implicit: enabled`: served without a Route (`implicit`).
    pub implicit: bool,
}

impl ServicePorts {
    fn of(service: &Service) -> Self {
        let ports = service.spec.iter().flat_map(|s| s.ports.iter().flatten());
        ServicePorts {
            ports: ports
                .filter(|p| is_tcp(&p.protocol))
                .filter_map(port)
                .collect(),
            cluster_ips: cluster_ips(service),
            implicit: service
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(super::implicit::IMPLICIT_LABEL))
                .is_some_and(|v| v == super::implicit::IMPLICIT_ENABLED),
        }
    }

    /// The TCP port numbers, in the Service's order.
    pub fn port_numbers(&self) -> impl Iterator<Item = NonZeroU16> + '_ {
        self.ports.iter().map(|p| p.port)
    }

    pub fn by_number(&self, number: NonZeroU16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }

    pub fn by_name(&self, name: &str) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.name == name)
    }
}

/// A Service's ClusterIPs: `spec.clusterIPs` (dual-stack), or the older single
/// `spec.clusterIP`; `None` (headless) and anything unparsable are left out.
fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let listed = spec.cluster_ips.iter().flatten();
    let mut ips: Vec<IpAddr> = listed
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

fn port(p: &K8sServicePort) -> Option<ServicePort> {
    Some(ServicePort {
        name: p.name.clone().unwrap_or_default(),
        port: u16::try_from(p.port).ok().and_then(NonZeroU16::new)?,
        app_protocol: p.app_protocol.clone(),
    })
}

fn is_tcp(protocol: &Option<String>) -> bool {
    matches!(protocol.as_deref(), None | Some("TCP"))
}

/// One EndpointSlice, reduced to what endpoint sets are built from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slice {
    service: ServiceRef,
    /// Name (empty when unnamed) to port number, TCP ports only.
    ports: Vec<(String, Option<NonZeroU16>)>,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SliceEndpoint {
    ip: IpAddr,
    ready: bool,
    serving: bool,
    terminating: bool,
    zone: Option<String>,
    node: Option<String>,
    pod: Option<String>,
    hints_for_zones: Vec<String>,
    hints_for_nodes: Vec<String>,
}

impl Slice {
    /// `None` for a slice that belongs to no Service (no service-name label).
    fn of(slice: &EndpointSlice) -> Option<Self> {
        let labels = slice.metadata.labels.as_ref();
        let service_name = labels?.get(SERVICE_NAME_LABEL)?;
        let namespace = ObjectRef::of(&slice.metadata).namespace;
        let ports = slice.ports.iter().flatten().filter(|p| is_tcp(&p.protocol));
        let ports = ports.map(|p| {
            let number = p.port.and_then(|n| u16::try_from(n).ok());
            (
                p.name.clone().unwrap_or_default(),
                number.and_then(NonZeroU16::new),
            )
        });
        let parse: fn(&str) -> Option<IpAddr> = match slice.address_type.as_str() {
            "IPv4" => |a| a.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            "IPv6" => |a| a.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            // FQDN slices name hosts, not pods: nothing to pool per ip:port.
            _ => |_| None,
        };
        let endpoints = slice.endpoints.iter().flatten().filter_map(|e| {
            let ip = parse(e.addresses.first()?)?;
            Some(SliceEndpoint::new(ip, e))
        });
        Some(Slice {
            service: ServiceRef::new(&namespace, service_name),
            ports: ports.collect(),
            endpoints: endpoints.collect(),
        })
    }

    fn port(&self, name: &str) -> Option<NonZeroU16> {
        self.ports.iter().find(|(n, _)| n == name)?.1
    }
}

impl SliceEndpoint {
    fn new(ip: IpAddr, e: &discovery::Endpoint) -> Self {
        let conditions = e.conditions.clone().unwrap_or_default();
        let ready = conditions.ready.unwrap_or(true);
        let target = e.target_ref.as_ref();
        let hints = e.hints.iter().flat_map(|h| h.for_zones.iter().flatten());
        let node_hints = e.hints.iter().flat_map(|h| h.for_nodes.iter().flatten());
        SliceEndpoint {
            ip,
            ready,
            serving: conditions.serving.unwrap_or(ready),
            terminating: conditions.terminating.unwrap_or(false),
            zone: e.zone.clone(),
            node: e.node_name.clone(),
            pod: target
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.name.clone()),
            hints_for_zones: hints.map(|z| z.name.clone()).collect(),
            hints_for_nodes: node_hints.map(|n| n.name.clone()).collect(),
        }
    }

    fn to_endpoint(&self, port: NonZeroU16) -> Endpoint {
        Endpoint {
            addr: EndpointAddr(SocketAddr::new(self.ip, port.get())),
            ready: self.ready,
            serving: self.serving,
            terminating: self.terminating,
            zone: self.zone.clone(),
            node: self.node.clone(),
            pod: self.pod.clone(),
            hints_for_zones: self.hints_for_zones.clone(),
            hints_for_nodes: self.hints_for_nodes.clone(),
        }
    }
}

/// How usable an endpoint is; the higher listing of a duplicated address wins.
fn usability(e: &Endpoint) -> (bool, bool, bool) {
    (e.ready, e.serving, !e.terminating)
}

/// Services and EndpointSlices by name, plus each Service's slices.
#[derive(Debug, Default)]
pub(super) struct EndpointStore {
    services: BTreeMap<ServiceRef, ServicePorts>,
    slices: BTreeMap<ObjectRef, Slice>,
    slices_by_service: BTreeMap<ServiceRef, BTreeSet<ObjectRef>>,
}

impl EndpointStore {
    pub fn service(&self, service: &ServiceRef) -> Option<&ServicePorts> {
        self.services.get(service)
    }

    /// Every stored Service.
    pub fn service_refs(&self) -> impl Iterator<Item = &ServiceRef> {
        self.services.keys()
    }

    /// Stores a Service; returns it.
    pub fn apply_service(&mut self, service: &Service) -> ServiceRef {
        let name = ObjectRef::of(&service.metadata);
        self.services
            .insert(name.clone(), ServicePorts::of(service));
        name
    }

    pub fn delete_service(&mut self, service: &Service) -> ServiceRef {
        let name = ObjectRef::of(&service.metadata);
        self.services.remove(&name);
        name
    }

    pub fn replace_services<'a>(&mut self, services: impl IntoIterator<Item = &'a Service>) {
        self.services.clear();
        for service in services {
            self.apply_service(service);
        }
    }

    /// Stores a slice; returns the Services whose endpoints it may change (its Service
    /// before and after, which differ if its label was edited).
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> BTreeSet<ServiceRef> {
        let name = ObjectRef::of(&slice.metadata);
        let mut touched = self.remove_slice(&name);
        if let Some(parsed) = Slice::of(slice) {
            let service = parsed.service.clone();
            let siblings = self.slices_by_service.entry(service.clone()).or_default();
            siblings.insert(name.clone());
            self.slices.insert(name, parsed);
            touched.insert(service);
        }
        touched
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) -> BTreeSet<ServiceRef> {
        self.remove_slice(&ObjectRef::of(&slice.metadata))
    }

    pub fn replace_slices<'a>(&mut self, slices: impl IntoIterator<Item = &'a EndpointSlice>) {
        self.slices.clear();
        self.slices_by_service.clear();
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    fn remove_slice(&mut self, name: &ObjectRef) -> BTreeSet<ServiceRef> {
        let Some(old) = self.slices.remove(name) else {
            return BTreeSet::new();
        };
        if let Entry::Occupied(mut siblings) = self.slices_by_service.entry(old.service.clone()) {
            siblings.get_mut().remove(name);
            if siblings.get().is_empty() {
                siblings.remove();
            }
        }
        BTreeSet::from([old.service])
    }

    /// The endpoint set for one Service port and its counts, or `None` when the Service
    /// or its port is missing. A Service with no slices yet gives an empty set.
    pub fn build(&self, key: &EndpointSetKey) -> Option<(EndpointSet, EndpointCounts)> {
        let service = ServiceRef::new(&key.namespace, &key.service);
        let facts = self.services.get(&service)?;
        let port = facts.by_number(key.port)?;
        let mut merged: BTreeMap<EndpointAddr, Endpoint> = BTreeMap::new();
        let slices = self.slices_by_service.get(&service).into_iter().flatten();
        for slice in slices.filter_map(|name| self.slices.get(name)) {
            let Some(target) = slice.port(&port.name) else {
                continue;
            };
            for listed in &slice.endpoints {
                let endpoint = listed.to_endpoint(target);
                match merged.entry(endpoint.addr) {
                    Entry::Vacant(slot) => {
                        slot.insert(endpoint);
                    }
                    Entry::Occupied(mut slot) => {
                        if usability(&endpoint) > usability(slot.get()) {
                            slot.insert(endpoint);
                        }
                    }
                }
            }
        }
        let count = |f: fn(&Endpoint) -> bool| {
            u32::try_from(merged.values().filter(|e| f(e)).count()).unwrap_or(u32::MAX)
        };
        let counts = EndpointCounts {
            ready: count(|e| e.ready),
            serving: count(|e| e.serving),
            total: count(|_| true),
        };
        merged.retain(|_, e| e.ready || e.serving);
        let set = EndpointSet {
            key: key.clone(),
            app_protocol: port.app_protocol.clone(),
            cluster_ips: facts.cluster_ips.clone(),
            endpoints: merged,
        };
        Some((set, counts))
    }
}
