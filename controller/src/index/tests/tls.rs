//! `upstream.tls`: the CA comes from a ConfigMap, follows its changes, and a missing
//! or broken one is this Route's condition only.

use std::collections::BTreeMap;

use fairway_proto::model::UpstreamTls;
use k8s_openapi::api::core::v1::ConfigMap;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;
use crate::crd::{CaCertificateRef, CaKind, UpstreamTlsSpec};
use crate::index::{ConditionStatus, Reason};

pub(super) fn ca_pem() -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    params.self_signed(&key).expect("self-signed").pem()
}

pub(super) fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = (data.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ConfigMap {
        metadata: meta("shop", name),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// `orders_index()` plus Route `secure` to the same Service, TLS with CA `orders-ca`.
fn index_with_tls_route(hostname: Option<&str>) -> Index {
    let mut index = orders_index();
    let mut secure = route("secure", &["secure.shop"], "orders", num(8080), 2);
    secure.spec.upstream.tls = Some(UpstreamTlsSpec {
        ca_certificate_refs: vec![CaCertificateRef {
            kind: CaKind::ConfigMap,
            name: "orders-ca".into(),
        }],
        hostname: hostname.map(str::to_owned),
    });
    index.apply_route(&secure);
    index
}

fn tls_of(index: &Index) -> UpstreamTls {
    let route = index.table().routes.get(&route_key("secure"));
    let tls = route.and_then(|r| r.upstream.tls.get(&set_key("orders", 8080)).cloned());
    tls.expect("a TLS Route stays in the table, CA or not")
}

fn refs(index: &Index, name: &str) -> (ConditionStatus, Reason, String) {
    let status = index.status(&route_key(name)).expect("a status");
    let refs = status.resolved_refs;
    (refs.status, refs.reason, refs.message)
}

#[test]
fn a_missing_ca_refuses_connections_and_is_this_routes_condition_only() {
    let index = index_with_tls_route(None);
    assert_eq!(
        tls_of(&index).ca_pem,
        "",
        "no CA: the proxies trust nothing"
    );
    let (status, reason, message) = refs(&index, "secure");
    assert_eq!(
        (status, reason),
        (ConditionStatus::False, Reason::InvalidCACertificateRef)
    );
    assert!(message.contains("shop/orders-ca not found"), "{message}");
    let plain = refs(&index, "orders");
    assert_eq!(
        plain.0,
        ConditionStatus::True,
        "the other Route is unaffected"
    );
    let orders = &index.table().routes[&route_key("orders")];
    assert!(orders.upstream.tls.is_empty());
}

#[test]
fn the_ca_arrives_and_changes_as_a_route_update() {
    let mut index = index_with_tls_route(None);
    let first = ca_pem();
    let changes = index.apply_config_map(&config_map("orders-ca", &[("ca.crt", &first)]));
    assert!(changes.routes.contains(&route_key("secure")));
    assert!(
        !changes.routes.contains(&route_key("orders")),
        "only the Route naming it"
    );
    let tls = tls_of(&index);
    assert_eq!(
        tls,
        UpstreamTls {
            ca_pem: first.clone(),
            hostname: None,
            cluster_domain: "cluster.local".into(),
            subject_alt_names: Vec::new(),
        }
    );
    assert_eq!(refs(&index, "secure").0, ConditionStatus::True);

    let same = index.apply_config_map(&config_map("orders-ca", &[("ca.crt", &first)]));
    assert!(same.is_empty(), "an unchanged bundle changes nothing");

    let second = ca_pem();
    index.apply_config_map(&config_map("orders-ca", &[("ca.crt", &second)]));
    assert_eq!(
        tls_of(&index).ca_pem,
        second,
        "a rotated CA reaches the table"
    );

    index.delete_config_map(&config_map("orders-ca", &[]));
    assert_eq!(tls_of(&index).ca_pem, "");
    assert_eq!(refs(&index, "secure").1, Reason::InvalidCACertificateRef);
}

#[test]
fn a_bad_bundle_is_reported_and_trusts_nothing() {
    let cases = [
        (vec![("ca.crt", "not a certificate")], "no PEM certificate"),
        (vec![("other", "x")], "has no key ca.crt"),
    ];
    for (data, says) in cases {
        let mut index = index_with_tls_route(Some("api.example"));
        index.apply_config_map(&config_map("orders-ca", &data));
        assert_eq!(tls_of(&index).ca_pem, "", "{says}");
        assert_eq!(tls_of(&index).hostname.as_deref(), Some("api.example"));
        let (status, _, message) = refs(&index, "secure");
        assert_eq!(status, ConditionStatus::False);
        assert!(message.contains(says), "{message} should say {says}");
    }
}

#[test]
fn a_relist_replaces_the_bundles() {
    let mut index = index_with_tls_route(None);
    let pem = ca_pem();
    let unrelated = config_map("settings", &[("app.conf", "x")]);
    let listed = [
        config_map("orders-ca", &[("ca.crt", &pem)]),
        unrelated.clone(),
    ];
    let changes = index.replace_config_maps(listed.iter());
    assert!(changes.routes.contains(&route_key("secure")));
    assert_eq!(tls_of(&index).ca_pem, pem);
    assert!(
        index.apply_config_map(&unrelated).is_empty(),
        "no ca.crt, not kept"
    );
    index.replace_config_maps(std::iter::empty::<ConfigMap>());
    assert_eq!(tls_of(&index).ca_pem, "", "gone from the relist");
}

#[test]
fn health_checks_are_refused_over_tls() {
    let mut index = index_with_tls_route(None);
    let mut both = route("both", &["both.shop"], "orders", num(8080), 3);
    both.spec.upstream.tls = Some(UpstreamTlsSpec {
        ca_certificate_refs: vec![CaCertificateRef {
            kind: CaKind::ConfigMap,
            name: "orders-ca".into(),
        }],
        hostname: None,
    });
    both.spec.health_check = Some(crd::HealthCheckSpec {
        grpc: Some(Default::default()),
    });
    both.spec.upstream.protocol = crd::UpstreamProtocol::Http2;
    index.apply_route(&both);
    let status = index.status(&route_key("both")).expect("a status");
    assert_eq!(status.accepted.reason, Reason::InvalidSpec);
    assert!(
        status.accepted.message.contains("healthCheck"),
        "{}",
        status.accepted.message
    );
}
