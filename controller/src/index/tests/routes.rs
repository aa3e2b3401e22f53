//! Routes: validation, host claims, backend resolution, relists.

use std::time::Duration;

use fairway_proto::model::{self, Backend};

use super::*;
use crate::index::{ConditionStatus, Reason};

pub(super) fn reasons(index: &Index, name: &str) -> (Reason, Reason) {
    let status = index
        .status(&route_key(name))
        .expect("the index knows the route");
    (status.accepted.reason, status.resolved_refs.reason)
}

#[test]
fn a_valid_route_becomes_a_table_route_with_defaults() {
    let index = orders_index();
    let table_route = &*index.table().routes[&route_key("orders")];
    assert_eq!(
        table_route,
        &model::Route {
            key: route_key("orders"),
            hosts: vec!["orders.shop".to_owned()],
            rules: vec![model::Rule {
                path_prefix: "/".to_owned(),
                matching: Default::default(),
                timeouts: None,
                retries: None,
                filters: Default::default(),
                backends: vec![Backend {
                    endpoint_set: set_key("orders", 8080),
                    weight: 1
                }],
                unresolved: Vec::new(),
            }],
            load_balancer: model::LoadBalancer::default(),
            upstream: model::Upstream::default(),
            timeouts: model::Timeouts::default(),
            retries: model::Retries::default(),
            health_check: None,
        }
    );
    assert_eq!(
        reasons(&index, "orders"),
        (Reason::Accepted, Reason::ResolvedRefs)
    );
}

#[test]
fn prequal_converts_to_the_model() {
    let mut index = orders_index();
    let mut probing = route("probing", &["probing.shop"], "orders", num(8080), 2);
    probing.spec.load_balancer.policy = crd::Policy::Prequal;
    index.apply_route(&probing);
    let got = &index.table().routes[&route_key("probing")];
    assert_eq!(got.load_balancer.policy, model::Policy::Prequal);
}

#[test]
fn durations_and_policies_convert_to_the_model() {
    let mut index = orders_index();
    let mut tuned = route("tuned", &["tuned.shop"], "orders", num(8080), 2);
    tuned.spec.load_balancer.policy = crd::Policy::PeakEwma;
    tuned.spec.load_balancer.slow_start = Some("30s".to_owned());
    tuned.spec.upstream.protocol = crd::UpstreamProtocol::Http2;
    tuned.spec.upstream.max_connection_age = "5m".to_owned();
    tuned.spec.timeouts.request = "1.5s".to_owned();
    tuned.spec.timeouts.grpc_maximum = Some("1m".to_owned());
    tuned.spec.retries.grpc_statuses = vec![
        crd::GrpcStatus::Unavailable,
        crd::GrpcStatus::ResourceExhausted,
        crd::GrpcStatus::Unavailable,
    ];
    let grpc = crd::GrpcHealthCheckSpec {
        service: "orders.v1".to_owned(),
        ..Default::default()
    };
    tuned.spec.health_check = Some(crd::HealthCheckSpec { grpc: Some(grpc) });
    index.apply_route(&tuned);
    let got = &index.table().routes[&route_key("tuned")];
    assert_eq!(got.load_balancer.policy, model::Policy::PeakEwma);
    assert_eq!(got.load_balancer.slow_start, Some(Duration::from_secs(30)));
    assert_eq!(got.upstream.protocol, model::UpstreamProtocol::Http2);
    assert_eq!(
        got.upstream.max_connection_age,
        Some(Duration::from_secs(300))
    );
    assert_eq!(got.timeouts.request, Duration::from_millis(1500));
    assert_eq!(got.timeouts.grpc_maximum, Some(Duration::from_secs(60)));
    assert_eq!(
        got.retries.grpc_statuses,
        [8, 14],
        "codes by number, ascending, once each"
    );
    let health = got
        .health_check
        .as_ref()
        .expect("the health check reaches the table");
    assert_eq!(health.service, "orders.v1");
    assert_eq!(health.interval, Duration::from_secs(5));

    tuned.spec.load_balancer.slow_start = Some("0s".to_owned());
    tuned.spec.timeouts.grpc_maximum = Some("0s".to_owned());
    index.apply_route(&tuned);
    let got = &index.table().routes[&route_key("tuned")];
    assert_eq!(got.load_balancer.slow_start, None, "0s slow start is off");
    assert_eq!(got.timeouts.grpc_maximum, None, "0s grpcMaximum is unset");
}

#[test]
fn upgrade_settings_convert_and_h2c_is_refused() {
    let mut index = orders_index();
    let mut chat = route("chat", &["chat.shop"], "orders", num(8080), 2);
    chat.spec.upstream.upgrades = vec!["WebSocket".to_owned(), "websocket".to_owned()];
    chat.spec.upstream.upgrade_idle_timeout = "10m".to_owned();
    chat.spec.upstream.max_upgrade_lifetime = "2h".to_owned();
    chat.spec.upstream.drain_timeout = "5s".to_owned();
    index.apply_route(&chat);
    let up = &index.table().routes[&route_key("chat")].upstream;
    assert_eq!(
        up.upgrades,
        model::Upgrades {
            protocols: vec!["websocket".to_owned()],
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Some(Duration::from_secs(7200)),
        },
        "lowercased, de-duplicated"
    );
    assert_eq!(up.drain_timeout, Duration::from_secs(5));

    chat.spec.upstream.upgrades = vec!["h2c".to_owned()];
    index.apply_route(&chat);
    let status = index.status(&route_key("chat")).expect("known");
    assert_eq!(status.accepted.status, ConditionStatus::False);
    assert!(
        status.accepted.message.contains("h2c"),
        "{}",
        status.accepted.message
    );
}

#[test]
fn weight_zero_backends_are_kept() {
    let mut index = orders_index();
    let mut canary = route("canary", &["canary.shop"], "orders", num(8080), 2);
    canary.spec.rules[0]
        .backends
        .push(backend("orders-v2", num(8080), 0));
    index.apply_service(&service("orders-v2", &[("http", 8080)]));
    index.apply_route(&canary);
    let backends = &index.table().routes[&route_key("canary")].rules[0].backends;
    assert_eq!(
        backends[1],
        Backend {
            endpoint_set: set_key("orders-v2", 8080),
            weight: 0
        },
        "a drained backend stays, so its weight can come back without a re-resolve"
    );
}

#[test]
fn hosts_are_lowercased_and_deduplicated() {
    let mut index = orders_index();
    let shouting = &["Shout.Shop", "shout.shop", "SHOUT"];
    index.apply_route(&route("shout", shouting, "orders", num(8080), 2));
    let got = &index.table().routes[&route_key("shout")];
    assert_eq!(got.hosts, ["shout.shop", "shout"]);
}

#[test]
fn missing_service_keeps_the_route_with_an_absent_set() {
    let mut index = Index::new();
    index.apply_route(&route("orders", &["orders.shop"], "orders", num(8080), 1));
    assert!(index.table().routes.contains_key(&route_key("orders")));
    assert!(index.table().endpoint_sets.is_empty());
    let status = index.status(&route_key("orders")).expect("status");
    assert_eq!(status.accepted.status, ConditionStatus::True);
    assert_eq!(status.resolved_refs.status, ConditionStatus::False);
    assert_eq!(status.resolved_refs.reason, Reason::ServiceNotFound);
    assert_eq!(
        status.resolved_refs.message,
        "service shop/orders not found"
    );

    let changes = index.apply_service(&service("orders", &[("http", 8080)]));
    assert!(changes.routes.contains(&route_key("orders")));
    assert!(changes.endpoint_sets.contains(&set_key("orders", 8080)));
    assert_eq!(reasons(&index, "orders").1, Reason::ResolvedRefs);
    assert!(orders_set(&index).endpoints.is_empty());

    index.delete_service(&service("orders", &[]));
    assert!(index.table().endpoint_sets.is_empty());
    assert_eq!(reasons(&index, "orders").1, Reason::ServiceNotFound);
}

#[test]
fn missing_port_reports_port_not_found() {
    let mut index = orders_index();
    index.apply_route(&route("wrong", &["wrong.shop"], "orders", num(9999), 2));
    index.apply_route(&route(
        "wrong-name",
        &["wn.shop"],
        "orders",
        named("grpc"),
        3,
    ));
    let status = index.status(&route_key("wrong")).expect("status");
    assert_eq!(status.resolved_refs.reason, Reason::PortNotFound);
    assert_eq!(
        status.resolved_refs.message,
        "service shop/orders has no TCP port 9999"
    );
    assert!(index.table().routes.contains_key(&route_key("wrong")));
    assert!(
        !index
            .table()
            .endpoint_sets
            .contains_key(&set_key("orders", 9999))
    );
    let named_status = index.status(&route_key("wrong-name")).expect("status");
    assert_eq!(
        named_status.resolved_refs.message,
        "service shop/orders has no TCP port named grpc"
    );
    let rule = &index.table().routes[&route_key("wrong-name")].rules[0];
    assert!(
        rule.backends.is_empty(),
        "an unresolved name has no key to refer to"
    );

    // Renaming the Service port fixes the named reference and moves nothing else.
    index.apply_service(&service("orders", &[("grpc", 8080)]));
    assert_eq!(reasons(&index, "wrong-name").1, Reason::ResolvedRefs);
    let rule = &index.table().routes[&route_key("wrong-name")].rules[0];
    assert_eq!(rule.backends[0].endpoint_set, set_key("orders", 8080));
    assert!(
        orders_set(&index).endpoints.is_empty(),
        "slice port is still named http"
    );
}

#[test]
fn the_older_route_keeps_a_contested_host() {
    let mut index = orders_index(); // orders: orders.shop, created at 1
    let newer = route(
        "newer",
        &["orders.shop", "newer.shop"],
        "orders",
        num(8080),
        5,
    );
    index.apply_route(&newer);
    let table = index.table();
    assert_eq!(table.routes[&route_key("orders")].hosts, ["orders.shop"]);
    assert_eq!(
        table.routes[&route_key("newer")].hosts,
        ["newer.shop"],
        "keeps its other hosts"
    );
    let status = index.status(&route_key("newer")).expect("status");
    assert_eq!(status.accepted.status, ConditionStatus::False);
    assert_eq!(status.accepted.reason, Reason::HostConflict);
    assert_eq!(
        status.accepted.message,
        "host orders.shop is served by older route shop/orders"
    );
    assert_eq!(reasons(&index, "orders").0, Reason::Accepted);

    // The older one leaves: the host passes on, and the newer Route is accepted.
    let changes = index.delete_route(&route("orders", &[], "orders", num(8080), 1));
    assert!(changes.routes.contains(&route_key("newer")));
    assert_eq!(
        index.table().routes[&route_key("newer")].hosts,
        ["orders.shop", "newer.shop"]
    );
    assert_eq!(reasons(&index, "newer").0, Reason::Accepted);
}

#[test]
fn a_contest_between_equally_old_routes_goes_by_namespace_and_name() {
    let mut index = Index::new();
    index.apply_route(&route("b", &["same.shop"], "orders", num(8080), 7));
    index.apply_route(&route("a", &["same.shop"], "orders", num(8080), 7));
    assert_eq!(index.table().routes[&route_key("a")].hosts, ["same.shop"]);
    assert!(
        !index.table().routes.contains_key(&route_key("b")),
        "a route left with no host serves nothing"
    );
    assert_eq!(reasons(&index, "b").0, Reason::HostConflict);
}

#[test]
fn an_invalid_route_claims_no_host() {
    let mut index = Index::new();
    let mut old_broken = route("old", &["x.shop"], "orders", num(8080), 1);
    old_broken.spec.timeouts.connect = "soon".to_owned();
    index.apply_route(&old_broken);
    index.apply_route(&route("young", &["x.shop"], "orders", num(8080), 9));
    assert_eq!(index.table().routes[&route_key("young")].hosts, ["x.shop"]);
    assert_eq!(reasons(&index, "young").0, Reason::Accepted);
}

#[test]
fn changing_hosts_releases_the_old_ones() {
    let mut index = orders_index();
    index.apply_route(&route("newer", &["orders.shop"], "orders", num(8080), 5));
    assert_eq!(reasons(&index, "newer").0, Reason::HostConflict);
    index.apply_route(&route(
        "orders",
        &["elsewhere.shop"],
        "orders",
        num(8080),
        1,
    ));
    assert_eq!(reasons(&index, "newer").0, Reason::Accepted);
    assert_eq!(
        index.table().routes[&route_key("newer")].hosts,
        ["orders.shop"]
    );
}

#[test]
fn replacing_routes_swaps_the_whole_kind() {
    let mut index = orders_index();
    index.apply_route(&route("gone", &["gone.shop"], "gone", num(80), 2));
    let relisted = vec![
        route("orders", &["orders.shop"], "orders", num(8080), 1),
        route("fresh", &["fresh.shop"], "orders", named("http"), 3),
    ];
    let changes = index.replace_routes(&relisted);
    assert!(
        changes.routes.contains(&route_key("gone")),
        "gone is reported"
    );
    let keys: Vec<_> = index
        .table()
        .routes
        .keys()
        .map(|k| k.name.as_str())
        .collect();
    assert_eq!(keys, ["fresh", "orders"]);
    assert!(index.status(&route_key("gone")).is_none());
    assert_eq!(
        orders_set(&index).endpoints.len(),
        2,
        "Services and slices kept"
    );
}

#[test]
fn replacing_services_and_slices_swaps_them() {
    let mut index = orders_index();
    index.replace_slices(vec![slice(
        "orders-z",
        "orders",
        &[("http", 9090)],
        vec![ep("10.0.0.9")],
    )]);
    assert_eq!(addrs(orders_set(&index)), ["10.0.0.9:9090"]);
    let changes = index.replace_services(Vec::<k8s_openapi::api::core::v1::Service>::new());
    assert!(changes.endpoint_sets.contains(&set_key("orders", 8080)));
    assert!(index.table().endpoint_sets.is_empty());
    assert_eq!(reasons(&index, "orders").1, Reason::ServiceNotFound);
}

#[test]
fn a_route_without_namespace_lands_in_default() {
    let mut index = Index::new();
    let mut bare = route("bare", &["bare"], "orders", num(80), 1);
    bare.metadata.namespace = None;
    index.apply_route(&bare);
    let mut orders = service("orders", &[("http", 80)]);
    orders.metadata.namespace = Some("default".to_owned());
    index.apply_service(&orders);
    let key = model::RouteKey {
        namespace: "default".to_owned(),
        name: "bare".to_owned(),
    };
    let backend = &index.table().routes[&key].rules[0].backends[0];
    assert_eq!(backend.endpoint_set.namespace, "default");
}

#[test]
fn unresolved_backends_keep_their_share_and_name_the_cause_for_both_port_forms() {
    let mut index = orders_index();
    let mut split = route("split", &["split.shop"], "orders", num(8080), 3);
    split.spec.rules[0]
        .backends
        .push(backend("gone", named("http"), 1));
    split.spec.rules[0]
        .backends
        .push(backend("gone", num(8080), 1));
    split.spec.rules[0]
        .backends
        .push(backend("orders", named("grpc"), 1));
    index.apply_route(&split);
    let rule = &index.table().routes[&route_key("split")].rules[0];
    assert_eq!(rule.backends.len(), 1, "{rule:?}");
    let got: Vec<(&str, u32, &str)> = rule
        .unresolved
        .iter()
        .map(|u| (u.service.as_str(), u.weight, u.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("gone", 1, "ServiceNotFound"),
            ("gone", 1, "ServiceNotFound"),
            ("orders", 1, "PortNotFound"),
        ],
        "a named and a numeric port to a missing Service say the same"
    );
    assert_eq!(rule.unresolved[0].message, "service shop/gone not found");

    // The Service appears: the backends resolve.
    index.apply_service(&service("gone", &[("http", 8080)]));
    let rule = &index.table().routes[&route_key("split")].rules[0];
    assert_eq!(rule.backends.len(), 3, "{rule:?}");
    assert_eq!(rule.unresolved.len(), 1, "only the missing port is left");
}

/// The hand-written validators and the CRD's regex patterns accept the same strings.
#[test]
fn validators_agree_with_the_schema_patterns() {
    use crate::index::names::{is_dns_label, is_dns_subdomain, is_dns1035_label};
    type Check = (&'static str, fn(&str) -> bool);
    let checks: [Check; 3] = [
        (crd::HOST_PATTERN, is_dns_subdomain),
        (crd::PORT_NAME_PATTERN, is_dns_label),
        (crd::SERVICE_NAME_PATTERN, is_dns1035_label),
    ];
    let alphabet = ["a", "z", "0", "9", "-", ".", "A", ":", " ", "*", "_"];
    let mut inputs = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..4 {
        frontier = (frontier.iter())
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        inputs.extend(frontier.iter().cloned());
    }
    for (pattern, check) in checks {
        let re = regex::Regex::new(pattern).expect("compiles");
        for input in &inputs {
            assert_eq!(re.is_match(input), check(input), "{pattern} on {input:?}");
        }
    }
    assert!(!is_dns_label(&"a".repeat(64)), "labels stop at 63");
    let long = format!("{}aa", "a.".repeat(126));
    assert_eq!(long.len(), 254);
    assert!(!is_dns_subdomain(&long), "names stop at 253");
    assert!(is_dns_subdomain(&long[2..]), "252 is fine");
}

/// A Route's `retries.httpStatuses` and `backoff` become its retries, as an HTTPRoute
/// rule's `retry` does; the default lists 502, 503 and 504.
#[test]
fn route_retry_statuses_and_backoff() {
    let mut index = orders_index();
    let table_route = &index.table().routes[&route_key("orders")];
    assert_eq!(table_route.retries.http_statuses, [502, 503, 504]);
    let mut retried = route("retried", &["retried.shop"], "orders", num(8080), 1);
    retried.spec.retries.http_statuses = vec![503, 500, 503];
    retried.spec.retries.backoff = Some("250ms".to_owned());
    index.apply_route(&retried);
    let retries = &index.table().routes[&route_key("retried")].retries;
    assert_eq!(retries.http_statuses, [500, 503], "ascending, once");
    assert_eq!(retries.backoff, std::time::Duration::from_millis(250));
}
