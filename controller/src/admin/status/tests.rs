use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::{Duration, SystemTime};

use fairway_proto::load::EndpointLoad;
use fairway_proto::{
    Backend, EndpointAddr, EndpointSet, Route, RouteTable, Rule, Version, diff::TableDiff,
};

use super::*;
use crate::crd::EndpointCounts;
use crate::index::{ConditionStatus, Reason};

fn key(name: &str) -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn set_key() -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: "orders".into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    }
}

fn addr(i: u8) -> EndpointAddr {
    EndpointAddr(SocketAddr::from(([10, 0, 0, i], 9000)))
}

/// Route `shop/orders` over pods 1..=n (pod names `orders-<i>`), at version 1.7.
fn published(n: u8) -> Published {
    let route = Route {
        key: key("orders"),
        hosts: vec!["orders.shop".into()],
        rules: vec![Rule {
            path_prefix: "/".into(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![Backend {
                endpoint_set: set_key(),
                weight: 1,
            }],
            unresolved: Vec::new(),
        }],
        load_balancer: Default::default(),
        upstream: Default::default(),
        timeouts: Default::default(),
        retries: Default::default(),
        health_check: None,
    };
    let mut set = EndpointSet::new(set_key());
    for i in 1..=n {
        let mut e = Endpoint::ready(addr(i).0);
        e.pod = Some(format!("orders-{i}"));
        set.endpoints.insert(e.addr, e);
    }
    let mut table = RouteTable::default();
    table.routes.insert(route.key.clone(), route.into());
    table.endpoint_sets.insert(set.key.clone(), set.into());
    Published {
        version: Version {
            epoch: 1,
            sequence: 7,
        },
        table: Arc::new(table),
        diff: Arc::new(TableDiff::default()),
    }
}

fn accepted(n: u32) -> ComputedStatus {
    let ok = |reason| ConditionState {
        status: ConditionStatus::True,
        reason,
        message: String::new(),
    };
    ComputedStatus {
        observed_generation: Some(1),
        accepted: ok(Reason::Accepted),
        resolved_refs: ok(Reason::ResolvedRefs),
        endpoints: EndpointCounts {
            ready: n,
            serving: n,
            total: n,
        },
    }
}

fn report(requests: &[u64]) -> Arc<LoadReport> {
    let total: u64 = requests.iter().sum();
    Arc::new(LoadReport {
        window: Duration::from_secs(5),
        backends: vec![BackendLoad {
            route: key("orders"),
            set: set_key(),
            endpoints: (1..)
                .zip(requests)
                .map(|(i, &n)| EndpointLoad {
                    addr: addr(i),
                    requests: n,
                    in_flight: 0,
                    expected: total as f64 / requests.len() as f64,
                })
                .collect(),
        }],
        truncated: false,
        accepts_figures: false,
    })
}

#[test]
fn a_route_shows_its_pods_shares_skew_rate_and_conditions() {
    let statuses = BTreeMap::from([(key("orders"), accepted(4))]);
    let proxy = ProxyInfo {
        id: "proxy-a".into(),
        node: "node-1".into(),
        zone: None,
        connected_at: SystemTime::UNIX_EPOCH + Duration::from_secs(10),
        last_sent: None,
        last_acked: Some(Version {
            epoch: 1,
            sequence: 5,
        }),
        last_nack: None,
        subscriptions: None,
    };
    let view = status(
        &published(4),
        &statuses,
        &[proxy],
        &[report(&[100, 0, 0, 0]), report(&[100, 0, 0, 0])],
    );
    assert_eq!(view.version, "1.7");
    assert!(view.ready);
    let route = &view.routes[0];
    assert_eq!(route.route, "shop/orders");
    assert_eq!(route.policy.as_deref(), Some("RoundRobin"));
    assert_eq!(route.proxies_reporting, 2);
    assert_eq!(route.requests_per_second, 40.0, "200 requests over 5 s");
    assert_eq!(route.skew, Some(3.0), "one pod of four took everything");
    assert_eq!(
        (route.conditions[0].kind, route.conditions[0].status),
        ("Accepted", "True")
    );
    let pods = &route.backends[0].pods;
    assert_eq!(pods.len(), 4, "every pod listed, with or without requests");
    assert_eq!(pods[0].pod.as_deref(), Some("orders-1"));
    assert_eq!(
        (pods[0].share, pods[0].expected_share),
        (Some(1.0), Some(0.25))
    );
    assert_eq!(
        (pods[3].share, pods[3].expected_share),
        (Some(0.0), Some(0.25))
    );
    assert_eq!(view.proxies[0].applied.as_deref(), Some("1.5"));
    assert_eq!(view.proxies[0].lag_versions, 2);
    assert_eq!(view.proxies[0].connected_at_unix_ms, 10_000);
}

#[test]
fn without_reports_pods_are_listed_without_figures() {
    let statuses = BTreeMap::from([(key("orders"), accepted(1)), (key("gone"), accepted(0))]);
    let view = status(&published(1), &statuses, &[], &[]);
    let orders = view
        .routes
        .iter()
        .find(|r| r.route == "shop/orders")
        .expect("listed");
    assert_eq!(orders.skew, None);
    assert_eq!(orders.requests_per_second, 0.0);
    assert_eq!(
        orders.backends[0].pods[0].share, None,
        "no requests: no share"
    );
    let gone = view
        .routes
        .iter()
        .find(|r| r.route == "shop/gone")
        .expect("listed");
    assert!(
        gone.hosts.is_empty() && gone.backends.is_empty(),
        "not in the table"
    );
    let json = serde_json::to_value(&view).expect("serialises");
    assert!(
        json["routes"][0]["conditions"][0]["type"].is_string(),
        "{json}"
    );
    assert!(
        json["routes"][0].get("requestsPerSecond").is_some(),
        "camelCase: {json}"
    );
}
