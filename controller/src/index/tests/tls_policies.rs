//! BackendTLSPolicy: a policy on a Service (port) makes every route's backend to it
//! TLS (Routes, HTTPRoutes, implicit routes), conflicts follow the spec, and a bad
//! reference is that policy's status only: every route keeps serving.

use fairway_proto::model::UpstreamTls;
use serde_json::{Value, json};

use super::gamma::{group, http_route, service_parent};
use super::tls::{ca_pem, config_map};
use super::*;
use crate::backendtlspolicy::BackendTLSPolicy;
use crate::crd::{CaCertificateRef, CaKind, UpstreamTlsSpec};
use crate::index::{ConditionStatus, Reason};

/// A policy in `shop`, created `created` seconds after the epoch.
fn policy(name: &str, created: i64, targets: Value, validation: Value) -> BackendTLSPolicy {
    let created = Timestamp::from_second(created).expect("valid").to_string();
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"namespace": "shop", "name": name, "generation": 2, "creationTimestamp": created},
        "spec": {"targetRefs": targets, "validation": validation},
    }))
    .expect("a BackendTLSPolicy")
}

fn target(service: &str, section: Option<&str>) -> Value {
    match section {
        Some(section) => {
            json!({"group": "", "kind": "Service", "name": service, "sectionName": section})
        }
        None => json!({"group": "", "kind": "Service", "name": service}),
    }
}

/// Validation with CA ConfigMap `ca` and `hostname`.
fn validation(ca: &str, hostname: &str) -> Value {
    json!({"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": ca}], "hostname": hostname})
}

/// The TLS of `route`'s backend set `orders:port`, if any.
fn tls(index: &Index, route: &RouteKey, port: u16) -> Option<UpstreamTls> {
    let entry = &index.table().routes[route];
    entry.upstream.tls.get(&set_key("orders", port)).cloned()
}

/// `(Accepted, ResolvedRefs)` of the policy's only ancestor.
fn policy_status(index: &Index, name: &str) -> [(ConditionStatus, Reason, String); 2] {
    let statuses = index.backend_tls_policy_statuses();
    let status = &statuses[&route_key(name)];
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.ancestors.len(), 1, "one target, one ancestor");
    let a = &status.ancestors[0];
    [&a.accepted, &a.resolved_refs].map(|c| (c.status, c.reason, c.message.clone()))
}

/// Route `orders` and an HTTPRoute on Service `orders`, both to `orders:8080`; Route
/// `payments` to `payments:8080`; CA ConfigMap `orders-ca` holding `pem`.
fn index_with(pem: &str) -> Index {
    let mut index = orders_index();
    index.apply_service(&service("payments", &[("http", 8080)]));
    index.apply_route(&route(
        "payments",
        &["payments.shop"],
        "payments",
        num(8080),
        1,
    ));
    let spec = json!({
        "parentRefs": [service_parent("orders")],
        "rules": [{"backendRefs": [{"name": "orders", "port": 8080}]}],
    });
    index.apply_http_route(&http_route("shop", "mesh", 5, spec));
    index.apply_config_map(&config_map("orders-ca", &[("ca.crt", pem)]));
    index
}

#[test]
fn a_policy_makes_every_route_to_its_service_tls_until_deleted() {
    let pem = ca_pem();
    let mut index = index_with(&pem);
    assert_eq!(
        tls(&index, &route_key("orders"), 8080),
        None,
        "plaintext first"
    );

    let p = policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "Orders.Example"),
    );
    let changes = index.apply_backend_tls_policy(&p);
    assert!(changes.routes.contains(&route_key("orders")) && changes.routes.contains(&group()));
    assert!(
        !changes.routes.contains(&route_key("payments")),
        "only routes to the target"
    );
    let want = UpstreamTls {
        ca_pem: pem.clone(),
        hostname: Some("orders.example".into()),
        cluster_domain: "cluster.local".into(),
        subject_alt_names: Vec::new(),
    };
    assert_eq!(
        tls(&index, &route_key("orders"), 8080),
        Some(want.clone()),
        "a Route"
    );
    assert_eq!(tls(&index, &group(), 8080), Some(want), "an HTTPRoute");
    let payments = &index.table().routes[&route_key("payments")];
    assert!(
        payments.upstream.tls.is_empty(),
        "another Service stays plaintext"
    );
    let [accepted, refs] = policy_status(&index, "orders-tls");
    assert_eq!(
        (accepted.0, accepted.1),
        (ConditionStatus::True, Reason::Accepted)
    );
    assert_eq!(
        (refs.0, refs.1),
        (ConditionStatus::True, Reason::ResolvedRefs)
    );

    let rotated = ca_pem();
    let changes = index.apply_config_map(&config_map("orders-ca", &[("ca.crt", &rotated)]));
    assert!(
        changes.routes.contains(&group()),
        "a CA change reaches every route to the target"
    );
    assert_eq!(tls(&index, &group(), 8080).map(|t| t.ca_pem), Some(rotated));

    index.delete_backend_tls_policy(&p);
    assert_eq!(
        tls(&index, &route_key("orders"), 8080),
        None,
        "back to plaintext"
    );
    assert_eq!(tls(&index, &group(), 8080), None);
    assert!(index.backend_tls_policy_statuses().is_empty());
}

#[test]
fn a_port_named_by_section_name_beats_the_whole_service() {
    let mut index = Index::new();
    index.apply_service(&service("orders", &[("http", 8080), ("https", 8443)]));
    let mut both = route("orders", &["orders.shop"], "orders", num(8080), 1);
    both.spec.rules[0]
        .backends
        .push(backend("orders", named("https"), 1));
    index.apply_route(&both);
    let whole = policy(
        "whole",
        10,
        json!([target("orders", None)]),
        validation("ca", "whole.example"),
    );
    let port = policy(
        "port",
        20,
        json!([target("orders", Some("https"))]),
        validation("ca", "port.example"),
    );
    index.apply_backend_tls_policy(&whole);
    index.apply_backend_tls_policy(&port);
    let hostname = |port| tls(&index, &route_key("orders"), port).and_then(|t| t.hostname);
    assert_eq!(hostname(8080).as_deref(), Some("whole.example"));
    assert_eq!(
        hostname(8443).as_deref(),
        Some("port.example"),
        "the newer but narrower one"
    );
    for name in ["whole", "port"] {
        let [accepted, _] = policy_status(&index, name);
        assert_eq!(
            accepted.1,
            Reason::NoValidCACertificate,
            "{name}: not a conflict"
        );
    }
}

#[test]
fn conflicts_go_to_the_oldest_then_the_first_name() {
    let pem = ca_pem();
    let mut index = index_with(&pem);
    let newer = policy(
        "a-newer",
        20,
        json!([target("orders", None)]),
        validation("orders-ca", "newer.example"),
    );
    let older = policy(
        "z-older",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "older.example"),
    );
    let tie = policy(
        "b-tie",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "tie.example"),
    );
    for p in [&newer, &older, &tie] {
        index.apply_backend_tls_policy(p);
    }
    let hostname = |index: &Index| tls(index, &route_key("orders"), 8080).and_then(|t| t.hostname);
    assert_eq!(
        hostname(&index).as_deref(),
        Some("tie.example"),
        "oldest, then shop/b-tie < shop/z-older"
    );
    for loser in ["a-newer", "z-older"] {
        let [accepted, _] = policy_status(&index, loser);
        assert_eq!(
            (accepted.0, accepted.1),
            (ConditionStatus::False, Reason::Conflicted),
            "{loser}"
        );
        assert!(accepted.2.contains("shop/b-tie"), "{}", accepted.2);
    }
    index.delete_backend_tls_policy(&tie);
    assert_eq!(hostname(&index).as_deref(), Some("older.example"));
    assert_eq!(policy_status(&index, "z-older")[0].1, Reason::Accepted);
}

#[test]
fn a_bad_reference_is_the_policys_status_and_refuses_only_its_targets() {
    let mut index = index_with(&ca_pem());
    let mesh_before = super::gamma::parent_status(&index, "mesh");
    let missing = policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        validation("absent", "orders.example"),
    );
    index.apply_backend_tls_policy(&missing);
    let got = tls(&index, &route_key("orders"), 8080).expect("TLS, never plaintext");
    assert_eq!(got.ca_pem, "", "nothing trusted: every connection refused");
    let [accepted, refs] = policy_status(&index, "orders-tls");
    assert_eq!(
        (accepted.0, accepted.1),
        (ConditionStatus::False, Reason::NoValidCACertificate)
    );
    assert_eq!(
        (refs.0, refs.1),
        (ConditionStatus::False, Reason::InvalidCACertificateRef)
    );
    assert!(refs.2.contains("shop/absent not found"), "{}", refs.2);
    for route in ["orders", "payments"] {
        let status = index.status(&route_key(route)).expect("a status");
        assert_eq!(
            status.resolved_refs.status,
            ConditionStatus::True,
            "{route} is unaffected"
        );
        assert!(
            index.table().routes.contains_key(&route_key(route)),
            "{route} keeps serving"
        );
    }
    assert_eq!(
        super::gamma::parent_status(&index, "mesh"),
        mesh_before,
        "the HTTPRoute's status does not carry the policy's fault"
    );

    let pem = ca_pem();
    let changes = index.apply_config_map(&config_map("absent", &[("ca.crt", &pem)]));
    assert!(
        changes.routes.contains(&route_key("orders")),
        "the CA arriving re-resolves"
    );
    assert_eq!(
        tls(&index, &route_key("orders"), 8080).map(|t| t.ca_pem),
        Some(pem)
    );
    assert_eq!(
        policy_status(&index, "orders-tls")[1].1,
        Reason::ResolvedRefs
    );

    let secret = json!({"caCertificateRefs": [{"group": "", "kind": "Secret", "name": "absent"}], "hostname": "orders.example"});
    index.apply_backend_tls_policy(&policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        secret,
    ));
    let [_, refs] = policy_status(&index, "orders-tls");
    assert_eq!(
        (refs.0, refs.1),
        (ConditionStatus::False, Reason::InvalidKind),
        "{}",
        refs.2
    );
    assert_eq!(
        tls(&index, &route_key("orders"), 8080).map(|t| t.ca_pem),
        Some(String::new())
    );
}

#[test]
fn what_fairway_cannot_verify_is_reported_invalid_and_refused() {
    let pem = ca_pem();
    let cases = [
        (
            json!({"wellKnownCACertificates": "System", "hostname": "orders.example"}),
            "wellKnownCACertificates",
        ),
        (
            json!({"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "orders-ca"}], "hostname": "orders.example",
                   "subjectAltNames": [{"type": "URI", "uri": "spiffe://cluster.local/ns/shop/sa/orders"}]}),
            "URI subject alt names",
        ),
        (validation("orders-ca", "not a name!"), "hostname"),
    ];
    for (validation, says) in cases {
        let mut index = index_with(&pem);
        index.apply_backend_tls_policy(&policy(
            "orders-tls",
            10,
            json!([target("orders", None)]),
            validation,
        ));
        let [accepted, _] = policy_status(&index, "orders-tls");
        assert_eq!(
            (accepted.0, accepted.1),
            (ConditionStatus::False, Reason::Invalid)
        );
        assert!(
            accepted.2.contains(says),
            "{} should name {says}",
            accepted.2
        );
        let got = tls(&index, &route_key("orders"), 8080).expect("still TLS");
        assert_eq!(got.ca_pem, "", "refused rather than half-verified");
    }
}

#[test]
fn hostname_subject_alt_names_replace_the_hostname() {
    let pem = ca_pem();
    let mut index = index_with(&pem);
    let v = json!({"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "orders-ca"}], "hostname": "sni.example",
                   "subjectAltNames": [{"type": "Hostname", "hostname": "Orders.Shop.Svc.Cluster.Local"}]});
    index.apply_backend_tls_policy(&policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        v,
    ));
    let got = tls(&index, &route_key("orders"), 8080).expect("TLS");
    assert_eq!(got.hostname.as_deref(), Some("sni.example"));
    assert_eq!(got.subject_alt_names, ["orders.shop.svc.cluster.local"]);
    assert_eq!(policy_status(&index, "orders-tls")[0].1, Reason::Accepted);
}

#[test]
fn a_routes_own_upstream_tls_wins_over_a_policy() {
    let pem = ca_pem();
    let mut index = index_with(&pem);
    let mut own = route("own", &["own.shop"], "orders", num(8080), 3);
    own.spec.upstream.tls = Some(UpstreamTlsSpec {
        ca_certificate_refs: vec![CaCertificateRef {
            kind: CaKind::ConfigMap,
            name: "orders-ca".into(),
        }],
        hostname: Some("own.example".into()),
    });
    index.apply_route(&own);
    index.apply_backend_tls_policy(&policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "policy.example"),
    ));
    let hostname = |route: &str| tls(&index, &route_key(route), 8080).and_then(|t| t.hostname);
    assert_eq!(
        hostname("own").as_deref(),
        Some("own.example"),
        "the Route's own block"
    );
    assert_eq!(
        hostname("orders").as_deref(),
        Some("policy.example"),
        "the policy elsewhere"
    );
}

#[test]
fn a_missing_target_is_reported_and_found_when_it_arrives() {
    let mut index = index_with(&ca_pem());
    let p = policy(
        "late",
        10,
        json!([target("later", None)]),
        validation("orders-ca", "later.example"),
    );
    index.apply_backend_tls_policy(&p);
    let [accepted, _] = policy_status(&index, "late");
    assert_eq!(
        (accepted.0, accepted.1),
        (ConditionStatus::False, Reason::TargetNotFound)
    );
    index.apply_service(&service("later", &[("http", 8080)]));
    assert_eq!(policy_status(&index, "late")[0].1, Reason::Accepted);
    let port = policy(
        "late",
        10,
        json!([target("later", Some("grpc"))]),
        validation("orders-ca", "later.example"),
    );
    index.apply_backend_tls_policy(&port);
    let [accepted, _] = policy_status(&index, "late");
    assert_eq!(accepted.1, Reason::TargetNotFound);
    assert!(
        accepted.2.contains("no TCP port named grpc"),
        "{}",
        accepted.2
    );
}

#[test]
fn a_relist_replaces_every_policy() {
    let mut index = index_with(&ca_pem());
    let p = policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "orders.example"),
    );
    index.replace_backend_tls_policies([&p]);
    assert!(tls(&index, &route_key("orders"), 8080).is_some());
    let changes = index.replace_backend_tls_policies(std::iter::empty::<BackendTLSPolicy>());
    assert!(changes.routes.contains(&route_key("orders")));
    assert_eq!(tls(&index, &route_key("orders"), 8080), None);
}

#[test]
fn an_implicit_route_follows_the_policy_on_its_port() {
    let mut index = Index::new().with_implicit_services(true);
    index.apply_service(&service("orders", &[("http", 8080), ("admin", 9000)]));
    let key = |port: &str| route_key(&format!("orders:{port}"));
    let tls_on = |index: &Index, port: &str, number: u16| {
        let route = &index.table().routes[&key(port)];
        route.upstream.tls.get(&set_key("orders", number)).cloned()
    };
    let p = policy(
        "orders-tls",
        10,
        json!([target("orders", Some("http"))]),
        validation("ca", "orders.example"),
    );
    let changes = index.apply_backend_tls_policy(&p);
    assert!(changes.routes.contains(&key("8080")), "{changes:?}");
    let got = tls_on(&index, "8080", 8080).expect("the named port is TLS");
    assert_eq!(got.hostname.as_deref(), Some("orders.example"));
    assert_eq!(
        tls_on(&index, "9000", 9000),
        None,
        "the other port is not targeted"
    );
    index.delete_backend_tls_policy(&p);
    assert_eq!(tls_on(&index, "8080", 8080), None);
}

#[test]
fn health_checks_stop_where_a_policy_makes_the_backend_tls_and_the_route_says_so() {
    let mut index = index_with(&ca_pem());
    let mut checked = route("checked", &["checked.shop"], "orders", num(8080), 3);
    checked.spec.health_check = Some(crd::HealthCheckSpec {
        grpc: Some(Default::default()),
    });
    checked.spec.upstream.protocol = crd::UpstreamProtocol::Http2;
    index.apply_route(&checked);
    let entry = |index: &Index| index.table().routes[&route_key("checked")].clone();
    assert!(entry(&index).health_check.is_some(), "plaintext: probed");
    index.apply_backend_tls_policy(&policy(
        "orders-tls",
        10,
        json!([target("orders", None)]),
        validation("orders-ca", "orders.example"),
    ));
    assert!(
        entry(&index).health_check.is_none(),
        "probes do not speak TLS yet"
    );
    assert!(!entry(&index).upstream.tls.is_empty(), "the requests do");
    let refs = index
        .status(&route_key("checked"))
        .expect("a status")
        .resolved_refs;
    assert_eq!(refs.status, ConditionStatus::True, "its refs resolve");
    assert!(
        refs.message.contains("healthCheck is off"),
        "{}",
        refs.message
    );
}
