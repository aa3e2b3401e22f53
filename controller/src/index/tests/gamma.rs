//! HTTPRoutes attached to Services (GAMMA): the same table entries as Routes, the
//! Service's DNS names, Gateway API precedence inside a Service, section 9 against
//! Routes, and a status per parent that names what is not served.

use fairway_proto::model::{self, Backend};
use serde_json::{Value, json};

use super::*;
use crate::httproute::HTTPRoute;
use crate::index::{ConditionStatus, Reason};

/// An HTTPRoute from its JSON, as the apiserver (or a static file) would give it.
pub(super) fn http_route(namespace: &str, name: &str, created: i64, spec: Value) -> HTTPRoute {
    let created = Timestamp::from_second(created).expect("valid").to_string();
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "namespace": namespace, "name": name, "generation": 3,
            "creationTimestamp": created,
        },
        "spec": spec,
    }))
    .expect("an HTTPRoute")
}

pub(super) fn service_parent(name: &str) -> Value {
    json!({"group": "", "kind": "Service", "name": name})
}

/// An HTTPRoute in `shop` attached to Service `orders`, `prefix` -> `backend:port`.
fn orders_route(name: &str, created: i64, prefix: &str, backend: &str, port: i32) -> HTTPRoute {
    http_route(
        "shop",
        name,
        created,
        json!({
            "parentRefs": [service_parent("orders")],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "backendRefs": [{"name": backend, "port": port}],
            }],
        }),
    )
}

pub(super) fn group() -> RouteKey {
    route_key("service:orders")
}

/// `orders` (8080) and `orders-v2` (8080) in `shop`, each with one pod.
pub(super) fn services_index() -> Index {
    let mut index = Index::new();
    for (name, ip) in [("orders", "10.0.0.1"), ("orders-v2", "10.0.0.2")] {
        index.apply_service(&service(name, &[("http", 8080)]));
        let slice = slice(&format!("{name}-a"), name, &[("http", 9090)], vec![ep(ip)]);
        index.apply_slice(&slice);
    }
    index
}

/// `(Accepted, ResolvedRefs)` of the route's only parent: status, reason, message.
pub(super) fn parent_status(index: &Index, name: &str) -> [(ConditionStatus, Reason, String); 2] {
    let statuses = index.http_route_statuses();
    let status = &statuses[&route_key(name)];
    assert_eq!(status.parents.len(), 1, "one Service parent");
    assert_eq!(status.observed_generation, Some(3));
    let p = &status.parents[0];
    [&p.accepted, &p.resolved_refs].map(|c| (c.status, c.reason, c.message.clone()))
}

fn prefixes(index: &Index) -> Vec<String> {
    let route = &index.table().routes[&group()];
    route.rules.iter().map(|r| r.path_prefix.clone()).collect()
}

#[test]
fn a_producer_route_serves_the_service_names_like_a_route() {
    let mut index = services_index();
    index.apply_http_route(&orders_route("split", 10, "/", "orders-v2", 8080));
    let served = &*index.table().routes[&group()];
    assert_eq!(
        served.hosts,
        [
            "orders",
            "orders.shop",
            "orders.shop.svc",
            "orders.shop.svc.cluster.local"
        ],
        "the Service's DNS names, with no Route and no opt-in"
    );
    assert_eq!(
        served.rules,
        vec![model::Rule {
            path_prefix: "/".to_owned(),
            matching: Default::default(),
            timeouts: None,
            retries: None,
            filters: Default::default(),
            backends: vec![Backend {
                endpoint_set: set_key("orders-v2", 8080),
                weight: 1,
            }],
            unresolved: Vec::new(),
        }]
    );
    assert_eq!(
        served.timeouts,
        model::Timeouts::default(),
        "a Route's defaults"
    );
    assert!(
        index
            .table()
            .endpoint_sets
            .contains_key(&set_key("orders-v2", 8080)),
        "the backend's endpoints are in the table"
    );
    let [accepted, resolved] = parent_status(&index, "split");
    assert_eq!(
        (accepted.0, accepted.1),
        (ConditionStatus::True, Reason::Accepted)
    );
    assert_eq!(
        (resolved.0, resolved.1),
        (ConditionStatus::True, Reason::ResolvedRefs)
    );
    assert!(
        index.status(&group()).is_none() && !index.statuses().contains_key(&group()),
        "a group has no Route object to write a status to"
    );

    index.delete_http_route(&orders_route("split", 10, "/", "orders-v2", 8080));
    assert!(
        !index.table().routes.contains_key(&group()),
        "gone with its last member"
    );
    assert!(index.table().endpoint_sets.is_empty(), "its sets with it");
}

#[test]
fn the_crd_defaults_apply_without_an_apiserver() {
    let mut index = services_index();
    // No match (PathPrefix /), no kind (Service), no weight (1).
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{"backendRefs": [{"name": "orders", "port": 8080}]}],
    });
    index.apply_http_route(&http_route("shop", "bare", 1, spec));
    let rules = &index.table().routes[&group()].rules;
    assert_eq!(rules[0].path_prefix, "/");
    assert_eq!(rules[0].backends[0].weight, 1);

    // No rules at all: one rule matching everything, with no backends: `500`.
    let spec = json!({"parentRefs": [service_parent("orders-v2")]});
    index.apply_http_route(&http_route("shop", "empty", 1, spec));
    let rules = &index.table().routes[&route_key("service:orders-v2")].rules;
    assert_eq!(rules.len(), 1);
    assert!(rules[0].backends.is_empty());
    assert_eq!(rules[0].unresolved[0].reason, "NoBackendRefs");
}

#[test]
fn routes_of_one_service_merge_and_the_older_wins_a_shared_path() {
    let mut index = services_index();
    index.apply_http_route(&orders_route("newer", 20, "/", "orders-v2", 8080));
    index.apply_http_route(&orders_route("older", 10, "/", "orders", 8080));
    index.apply_http_route(&orders_route("api", 30, "/api", "orders-v2", 8080));
    assert_eq!(prefixes(&index), ["/", "/api"], "one rule per path");
    let root = &index.table().routes[&group()].rules[0];
    assert_eq!(
        root.backends[0].endpoint_set,
        set_key("orders", 8080),
        "the older route's rule takes `/`"
    );
    for name in ["newer", "older", "api"] {
        assert_eq!(parent_status(&index, name)[0].1, Reason::Accepted, "{name}");
    }
    // The same second: namespace/name decides.
    let mut index = services_index();
    index.apply_http_route(&orders_route("b", 10, "/", "orders-v2", 8080));
    index.apply_http_route(&orders_route("a", 10, "/", "orders", 8080));
    let root = &index.table().routes[&group()].rules[0];
    assert_eq!(root.backends[0].endpoint_set, set_key("orders", 8080));
}

#[test]
fn a_consumer_route_is_reported_not_served() {
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [{"group": "", "kind": "Service", "name": "orders", "namespace": "shop"}],
        "rules": [{"backendRefs": [{"name": "orders", "port": 8080}]}],
    });
    index.apply_http_route(&http_route("web", "mine", 1, spec));
    assert!(
        index.table().routes.is_empty(),
        "not served on a DaemonSet proxy"
    );
    let statuses = index.http_route_statuses();
    let accepted = &statuses[&RouteKey {
        namespace: "web".to_owned(),
        name: "mine".to_owned(),
    }]
        .parents[0]
        .accepted;
    assert_eq!(accepted.status, ConditionStatus::False);
    assert_eq!(accepted.reason, Reason::UnsupportedValue);
    assert!(
        accepted.message.contains("consumer route"),
        "{}",
        accepted.message
    );
}

#[test]
fn unsupported_fields_are_named_and_other_routes_keep_serving() {
    let mut index = services_index();
    index.apply_http_route(&orders_route("good", 1, "/", "orders", 8080));
    let cases = [
        (
            json!({"filters": [{"type": "RequestHeaderModifier"}]}),
            "spec.rules[0].filters",
        ),
        (
            json!({"matches": [{"path": {"type": "RegularExpression", "value": "/(x"}}]}),
            "spec.rules[0].matches[0].path.value: invalid regular expression",
        ),
        (
            json!({"matches": [{"headers": [{"type": "RegularExpression", "name": "x", "value": "["}]}]}),
            "spec.rules[0].matches[0].headers[0].value: invalid regular expression",
        ),
        (
            json!({"matches": [{"method": "BREW"}]}),
            "spec.rules[0].matches[0].method",
        ),
        (
            json!({"sessionPersistence": {"type": "Cookie"}}),
            "spec.rules[0].sessionPersistence",
        ),
        (
            json!({"timeouts": {"request": "1s", "backendRequest": "2s"}}),
            "spec.rules[0].timeouts.backendRequest: must not be longer than request",
        ),
    ];
    for (rule, field) in cases {
        let spec = json!({"parentRefs": [service_parent("orders-v2")], "rules": [rule]});
        index.apply_http_route(&http_route("shop", "odd", 1, spec));
        let [accepted, resolved] = parent_status(&index, "odd");
        assert_eq!(
            (accepted.0, accepted.1),
            (ConditionStatus::False, Reason::UnsupportedValue)
        );
        assert!(accepted.2.starts_with(field), "{field}: {}", accepted.2);
        assert_eq!(resolved.0, ConditionStatus::Unknown);
        assert!(
            !index
                .table()
                .routes
                .contains_key(&route_key("service:orders-v2")),
            "never served with a field silently ignored ({field})"
        );
        assert_eq!(prefixes(&index), ["/"], "the other route keeps serving");
    }
    let spec = json!({
        "parentRefs": [{"group": "", "kind": "Service", "name": "orders-v2", "port": 8080}],
    });
    index.apply_http_route(&http_route("shop", "odd", 1, spec));
    assert!(
        parent_status(&index, "odd")[0]
            .2
            .starts_with("spec.parentRefs[0].port")
    );
}

#[test]
fn backend_refs_resolve_with_gateway_api_reasons() {
    let mut index = services_index();
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{"backendRefs": [
            {"name": "orders", "port": 8080, "weight": 3},
            {"name": "missing", "port": 8080},
            {"name": "other", "namespace": "elsewhere", "port": 8080},
            {"group": "example.com", "kind": "Bucket", "name": "b"},
        ]}],
    });
    index.apply_http_route(&http_route("shop", "mixed", 1, spec));
    let [accepted, resolved] = parent_status(&index, "mixed");
    assert_eq!(
        accepted.1,
        Reason::Accepted,
        "served, with the bad refs answered 500"
    );
    assert_eq!(
        (resolved.0, resolved.1),
        (ConditionStatus::False, Reason::BackendNotFound),
        "the first failing backendRef's reason"
    );
    for part in [
        "service shop/missing not found",
        "ReferenceGrants",
        "only Services",
    ] {
        assert!(
            resolved.2.contains(part),
            "every failure named: {}",
            resolved.2
        );
    }
    let rule = &index.table().routes[&group()].rules[0];
    assert_eq!(rule.backends.len(), 1, "only orders resolves");
    assert_eq!(rule.backends[0].weight, 3);
    let reasons: Vec<&str> = rule.unresolved.iter().map(|u| u.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["RefNotPermitted", "InvalidKind", "ServiceNotFound"],
        "each keeps its share, answered 500 with its reason"
    );

    let spec = json!({
        "parentRefs": [service_parent("orders-v2")],
        "rules": [{"backendRefs": [{"name": "gone", "port": 80}]}],
    });
    index.apply_http_route(&http_route("shop", "lost", 1, spec));
    assert_eq!(parent_status(&index, "lost")[1].1, Reason::BackendNotFound);
}

#[test]
fn a_route_and_the_http_routes_of_a_name_contest_by_age() {
    let mut index = services_index();
    let host = "orders.shop.svc.cluster.local";
    index.apply_route(&route("old-route", &[host], "orders", num(8080), 5));
    index.apply_http_route(&orders_route("gamma", 10, "/", "orders-v2", 8080));
    let gamma = &index.table().routes[&group()];
    assert!(
        !gamma.hosts.iter().any(|h| h == host),
        "the older Route keeps {host}"
    );
    assert_eq!(
        gamma.hosts.len(),
        3,
        "the group keeps the Service's other names"
    );
    let [accepted, _] = parent_status(&index, "gamma");
    assert_eq!(
        (accepted.0, accepted.1),
        (ConditionStatus::False, Reason::HostConflict)
    );
    assert!(accepted.2.contains("shop/old-route"), "{}", accepted.2);

    // An older HTTPRoute joins: the group is now older than the Route and takes it.
    index.apply_http_route(&orders_route("oldest", 1, "/x", "orders", 8080));
    assert!(
        index.table().routes[&group()]
            .hosts
            .iter()
            .any(|h| h == host)
    );
    assert_eq!(
        index
            .status(&route_key("old-route"))
            .expect("known")
            .accepted
            .reason,
        Reason::HostConflict
    );
}

#[test]
fn a_group_exists_only_while_its_service_does() {
    let mut index = Index::new();
    index.apply_http_route(&orders_route("early", 1, "/", "orders", 8080));
    assert!(index.table().routes.is_empty());
    assert_eq!(
        parent_status(&index, "early")[0].1,
        Reason::NoMatchingParent
    );
    index.apply_service(&service("orders", &[("http", 8080)]));
    assert!(
        index.table().routes.contains_key(&group()),
        "served once it exists"
    );
    assert_eq!(parent_status(&index, "early")[0].1, Reason::Accepted);
    index.delete_service(&service("orders", &[("http", 8080)]));
    assert!(index.table().routes.is_empty());
}

#[test]
fn gateway_parents_are_not_ours_and_relists_keep_groups() {
    let mut index = services_index();
    let spec = json!({"parentRefs": [{"name": "public-gateway"}], "rules": [{}]});
    index.apply_http_route(&http_route("shop", "north-south", 1, spec));
    assert!(
        index.http_route_statuses().is_empty(),
        "no status for another's parent"
    );
    assert!(index.table().routes.is_empty());

    index.apply_http_route(&orders_route("gamma", 1, "/", "orders", 8080));
    index.replace_routes(vec![route("r", &["r.example"], "orders", num(8080), 1)]);
    assert!(
        index.table().routes.contains_key(&group()),
        "a relist of Routes keeps the HTTPRoute groups"
    );
    index.replace_http_routes(Vec::<HTTPRoute>::new());
    assert!(!index.table().routes.contains_key(&group()));
    assert!(index.table().routes.contains_key(&route_key("r")));
}

/// A backend Service that is not a parent, arriving after the group (by watch event or
/// relist), resolves: the group is re-resolved like any Route using that Service.
#[test]
fn a_backend_service_arriving_later_resolves() {
    let spec = || {
        json!({"parentRefs": [service_parent("orders")],
               "rules": [{"backendRefs": [{"name": "later", "port": 8080}]}]})
    };
    let unresolved = |index: &Index| {
        let rules = &index.table().routes[&group()].rules;
        rules[0]
            .unresolved
            .iter()
            .map(|u| u.reason.clone())
            .collect::<Vec<_>>()
    };
    // Watch events: route, parent, then the backend's Service.
    let mut index = Index::new();
    index.apply_http_route(&http_route("shop", "r", 1, spec()));
    index.apply_service(&service("orders", &[("http", 8080)]));
    assert_eq!(unresolved(&index), ["ServiceNotFound"]);
    index.apply_service(&service("later", &[("http", 8080)]));
    assert!(
        unresolved(&index).is_empty(),
        "watch: {:?}",
        unresolved(&index)
    );
    // Relists, in the order a controller's watchers may finish them.
    let mut index = Index::new();
    index.replace_http_routes([http_route("shop", "r", 1, spec())]);
    index.replace_services([
        service("orders", &[("http", 8080)]),
        service("later", &[("http", 8080)]),
    ]);
    assert!(
        unresolved(&index).is_empty(),
        "relist: {:?}",
        unresolved(&index)
    );
    let mut index = Index::new();
    index.replace_services([
        service("orders", &[("http", 8080)]),
        service("later", &[("http", 8080)]),
    ]);
    index.replace_http_routes([http_route("shop", "r", 1, spec())]);
    assert!(
        unresolved(&index).is_empty(),
        "services first: {:?}",
        unresolved(&index)
    );
}
