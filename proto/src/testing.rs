//! Small builders for tests: realistic values with one line each. Other crates enable
//! them with the `testing` feature in their dev-dependencies.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;

use crate::model::{
    Backend, Endpoint, EndpointSet, EndpointSetKey, Route, RouteKey, RouteTable, Rule,
};

/// `10.(i / 65536).(i / 256).(i % 256):8080`: distinct for every `i` below 2^24.
pub fn addr(i: u32) -> SocketAddr {
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), 8080))
}

/// An endpoint shaped like a real EndpointSlice entry: pod, node, zone and hints, so
/// size tests measure realistic bytes.
pub fn endpoint(i: u32) -> Endpoint {
    Endpoint {
        zone: Some(format!("us-east-1{}", ["a", "b", "c"][i as usize % 3])),
        node: Some(format!(
            "ip-10-0-{}-{}.ec2.internal",
            i / 256 % 256,
            i % 256
        )),
        pod: Some(format!("orders-7d9f8c6b5-{i:05}")),
        hints_for_zones: vec![format!("us-east-1{}", ["a", "b", "c"][i as usize % 3])],
        ..Endpoint::ready(addr(i))
    }
}

pub fn set_key(service: &str, port: u16) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(port).expect("test ports are non-zero"),
    }
}

/// A set with endpoints `0..n` (see [`endpoint`]).
pub fn set(service: &str, n: u32) -> EndpointSet {
    let mut set = EndpointSet::new(set_key(service, 8080));
    set.endpoints = (0..n).map(|i| (endpoint(i).addr, endpoint(i))).collect();
    set
}

/// A route `shop/<name>` for host `<name>.shop`, `/` to the set `<name>:8080`.
pub fn route(name: &str) -> Route {
    Route {
        key: RouteKey {
            namespace: "shop".into(),
            name: name.into(),
        },
        hosts: vec![format!("{name}.shop")],
        rules: vec![Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![Backend {
                endpoint_set: set_key(name, 8080),
                weight: 1,
            }],
            unresolved: Vec::new(),
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    }
}

/// A table with the given sets and a route for each.
pub fn table(sets: impl IntoIterator<Item = EndpointSet>) -> RouteTable {
    let mut table = RouteTable::default();
    for set in sets {
        let r = route(&set.key.service);
        table.routes.insert(r.key.clone(), r.into());
        table.endpoint_sets.insert(set.key.clone(), set.into());
    }
    table
}
