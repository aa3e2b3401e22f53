use std::collections::BTreeMap;
use std::num::NonZeroU16;

use fairway_proto::model::{
    Backend, EndpointSetKey, LoadBalancer, Retries, Route, RouteKey, RouteTable, Rule, Timeouts,
    Upstream,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{RouteError, Router};

fn key(service: &str) -> EndpointSetKey {
    EndpointSetKey {
        namespace: "shop".into(),
        service: service.into(),
        port: NonZeroU16::new(8080).expect("non-zero"),
    }
}

fn rule(prefix: &str, backends: &[(&str, u32)]) -> Rule {
    Rule {
        path_prefix: prefix.into(),
        matching: Default::default(),
        timeouts: None,
        request_headers: None,
        backends: backends
            .iter()
            .map(|&(service, weight)| Backend {
                endpoint_set: key(service),
                weight,
            })
            .collect(),
        unresolved: Vec::new(),
    }
}

fn route(name: &str, hosts: &[&str], rules: Vec<Rule>) -> Route {
    Route {
        key: RouteKey {
            namespace: "shop".into(),
            name: name.into(),
        },
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        rules,
        load_balancer: LoadBalancer::default(),
        upstream: Upstream::default(),
        timeouts: Timeouts::default(),
        retries: Retries::default(),
        health_check: None,
    }
}

fn table(routes: Vec<Route>) -> RouteTable {
    RouteTable {
        routes: routes
            .into_iter()
            .map(|r| (r.key.clone(), r.into()))
            .collect(),
        endpoint_sets: BTreeMap::new(),
    }
}

fn shop() -> RouteTable {
    table(vec![
        route(
            "orders",
            &["orders.shop.svc.cluster.local", "orders.shop", "orders"],
            vec![
                rule("/", &[("orders", 1)]),
                rule("/api", &[("orders-api", 1)]),
                rule("/api/v2/", &[("orders-v2", 1)]),
            ],
        ),
        route("v6", &["[fd00::1]"], vec![rule("/", &[("v6", 1)])]),
        route("narrow", &["narrow"], vec![rule("/only", &[("narrow", 1)])]),
    ])
}

fn service_for(router: &Router, host: &str, path: &str) -> String {
    let selected = router.route(host, path).expect("routes");
    selected.rule.backends[0].endpoint_set.service.clone()
}

#[test]
fn host_port_is_stripped_and_case_ignored() {
    let table = shop();
    let router = Router::new(&table);
    for host in [
        "orders",
        "orders:8080",
        "ORDERS.Shop",
        "Orders.Shop.Svc.Cluster.Local:80",
        "orders.shop.",
    ] {
        let selected = router.route(host, "/").expect("host is known");
        assert_eq!(selected.route.key.name, "orders", "host {host:?}");
    }
    assert_eq!(router.host_count(), 5);
}

#[test]
fn ipv6_authority() {
    let table = shop();
    let router = Router::new(&table);
    assert_eq!(service_for(&router, "[fd00::1]:8080", "/"), "v6");
    assert_eq!(service_for(&router, "[FD00::1]", "/"), "v6");
}

#[test]
fn longest_prefix_wins_on_segments() {
    let table = shop();
    let router = Router::new(&table);
    assert_eq!(service_for(&router, "orders", "/"), "orders");
    assert_eq!(service_for(&router, "orders", "/api"), "orders-api");
    assert_eq!(service_for(&router, "orders", "/api/v1/x"), "orders-api");
    assert_eq!(
        service_for(&router, "orders", "/apix"),
        "orders",
        "/api matches whole segments"
    );
    assert_eq!(
        service_for(&router, "orders", "/api/v2/items?x=1"),
        "orders-v2"
    );
    assert_eq!(
        service_for(&router, "orders", "/api/v2"),
        "orders-api",
        "/api/v2/ is a plain prefix"
    );
    let selected = router.route("orders", "/api/v2/").expect("routes");
    assert_eq!(selected.rule_index, 2, "rule_index points into route.rules");
}

#[test]
fn unknown_host_and_no_rule() {
    let table = shop();
    let router = Router::new(&table);
    assert_eq!(
        router.route("Payments:80", "/"),
        Err(RouteError::UnknownHost("payments".into()))
    );
    let err = router
        .route("narrow", "/other?q")
        .expect_err("no rule matches");
    assert_eq!(
        err,
        RouteError::NoRule {
            route: RouteKey {
                namespace: "shop".into(),
                name: "narrow".into()
            },
            path: "/other".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "route shop/narrow has no rule matching path \"/other\""
    );
}

#[test]
fn first_route_in_table_order_keeps_a_contested_host() {
    let table = table(vec![
        route("b", &["dup"], vec![rule("/", &[("b", 1)])]),
        route("a", &["DUP"], vec![rule("/", &[("a", 1)])]),
    ]);
    let router = Router::new(&table);
    assert_eq!(service_for(&router, "dup", "/"), "a");
}

#[test]
fn weighted_split_is_about_90_10() {
    let table = table(vec![route(
        "canary",
        &["canary"],
        vec![rule("/", &[("stable", 9), ("drained", 0), ("canary", 1)])],
    )]);
    let router = Router::new(&table);
    let selected = router.route("canary", "/").expect("routes");
    let mut rng = SmallRng::seed_from_u64(7);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..10_000 {
        let Some(crate::router::Landed::Backend(i)) = selected.pick_backend(&mut rng) else {
            panic!("non-zero weights, every backend resolved");
        };
        let backend = &selected.rule.backends[i];
        *counts
            .entry(backend.endpoint_set.service.clone())
            .or_default() += 1;
    }
    let stable = counts.get("stable").copied().unwrap_or(0);
    let canary = counts.get("canary").copied().unwrap_or(0);
    assert!(
        !counts.contains_key("drained"),
        "weight 0 is never picked: {counts:?}"
    );
    assert!((8_850..=9_150).contains(&stable), "stable ~90%: {counts:?}");
    assert!((850..=1_150).contains(&canary), "canary ~10%: {counts:?}");
}

#[test]
fn all_zero_weights_pick_nothing() {
    let table = table(vec![route(
        "drained",
        &["d"],
        vec![rule("/", &[("a", 0), ("b", 0)])],
    )]);
    let router = Router::new(&table);
    let selected = router.route("d", "/").expect("routes");
    assert_eq!(selected.pick_backend(&mut SmallRng::seed_from_u64(1)), None);
}
