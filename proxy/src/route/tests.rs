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
        retries: None,
        filters: Default::default(),
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
        let Some(crate::route::Landed::Backend(i)) = selected.pick_backend(&mut rng) else {
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

#[test]
fn hosts_with_a_port_match_only_that_port_and_lose_to_a_portless_claim() {
    // A Service's implicit Routes (one per port) beside an explicit Route for one name.
    let router = Router::new(&table(vec![
        route(
            "billing:8080",
            &["billing.shop:8080", "10.96.0.20:8080", "[fd00::20]:8080"],
            vec![rule("/", &[("billing", 1)])],
        ),
        route(
            "billing:9000",
            &["billing.shop:9000"],
            vec![rule("/", &[("admin", 1)])],
        ),
        route(
            "orders:8080",
            &["orders.shop:8080"],
            vec![rule("/", &[("orders", 1)])],
        ),
        route(
            "orders",
            &["orders.shop"],
            vec![rule("/", &[("canary", 1)])],
        ),
    ]));
    let to = |authority: &str| {
        router
            .route(authority, "/")
            .map(|s| s.route.key.name.clone())
            .map_err(|e| e.to_string())
    };
    assert_eq!(to("billing.shop:8080").as_deref(), Ok("billing:8080"));
    assert_eq!(
        to("Billing.Shop:8080").as_deref(),
        Ok("billing:8080"),
        "case ignored"
    );
    assert_eq!(
        to("10.96.0.20:8080").as_deref(),
        Ok("billing:8080"),
        "by ClusterIP"
    );
    assert_eq!(
        to("[fd00::20]:8080").as_deref(),
        Ok("billing:8080"),
        "IPv6 too"
    );
    assert_eq!(
        to("billing.shop:9000").as_deref(),
        Ok("billing:9000"),
        "each port its own"
    );
    assert!(to("billing.shop").is_err(), "no port: no implicit match");
    assert!(to("billing.shop:8081").is_err());
    assert_eq!(
        to("orders.shop:8080").as_deref(),
        Ok("orders"),
        "an explicit Route's claim of the name wins over the implicit one"
    );
}

#[test]
fn a_sidecar_resolves_a_bare_host_in_its_own_namespace_first() {
    let router = Router::new(&table(vec![
        // Explicit Routes: one claims the bare name, one the namespaced name.
        route("bare", &["orders"], vec![rule("/", &[("elsewhere", 1)])]),
        route(
            "shop-orders",
            &["orders.shop"],
            vec![rule("/", &[("orders", 1)])],
        ),
        // An implicit Route, with the port.
        route(
            "billing:8080",
            &["billing.shop:8080"],
            vec![rule("/", &[("billing", 1)])],
        ),
    ]));
    let to = |authority: &str, namespace: Option<&str>| {
        let request = super::RequestView {
            method: None,
            path_and_query: "/",
            headers: &(),
        };
        router
            .route_request(authority, &request, namespace)
            .map(|s| s.route.key.name.clone())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        to("orders:8080", Some("shop")).as_deref(),
        Ok("shop-orders"),
        "NAME.NS first"
    );
    assert_eq!(
        to("orders", Some("billing")).as_deref(),
        Ok("bare"),
        "then the bare claim"
    );
    assert_eq!(
        to("orders", None).as_deref(),
        Ok("bare"),
        "a DaemonSet: as Routes list it"
    );
    assert_eq!(
        to("billing:8080", Some("shop")).as_deref(),
        Ok("billing:8080"),
        "implicit, bare"
    );
    assert!(
        to("billing:8080", None).is_err(),
        "without a namespace a bare name is not a Service's"
    );
    assert!(
        to("billing", Some("shop")).is_err(),
        "an implicit Route needs the port"
    );
    assert_eq!(
        to("orders.shop:8080", Some("billing")).as_deref(),
        Ok("shop-orders"),
        "a dotted name is never qualified"
    );
}
