//! Host claims (design.md section 9): a Service's namespaced names belong to its
//! namespace; between permitted claims the oldest wins, ties by namespace/name.

use super::*;
use crate::index::hosts::owning_namespace;
use crate::index::{ConditionStatus, Reason};

/// A Route `namespace/name` claiming `hosts`, created at second `created`.
fn route_in(namespace: &str, name: &str, hosts: &[&str], created: i64) -> crd::Route {
    let mut r = route(name, hosts, "orders", num(8080), created);
    r.metadata.namespace = Some(namespace.to_owned());
    r
}

fn service_in(namespace: &str, name: &str) -> Service {
    let mut s = service(name, &[("http", 8080)]);
    s.metadata.namespace = Some(namespace.to_owned());
    s
}

fn key(namespace: &str, name: &str) -> RouteKey {
    RouteKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// The hosts `namespace/name` serves (none when it is out of the table) and its
/// `Accepted` reason and message.
fn outcome(index: &Index, namespace: &str, name: &str) -> (Vec<String>, Reason, String) {
    let key = key(namespace, name);
    let hosts = index
        .table()
        .routes
        .get(&key)
        .map(|r| r.hosts.clone())
        .unwrap_or_default();
    let status = index.status(&key).expect("the index knows the route");
    (hosts, status.accepted.reason, status.accepted.message)
}

#[test]
fn which_hosts_belong_to_a_namespace() {
    let mut index = Index::new();
    index.apply_service(&service_in("shop", "orders"));
    let cases: [(&str, &str, Option<&str>); 12] = [
        (
            "orders.shop.svc.cluster.local",
            "cluster.local",
            Some("shop"),
        ),
        (
            "anything.shop.svc.cluster.local",
            "cluster.local",
            Some("shop"),
        ),
        ("orders.shop.svc", "cluster.local", Some("shop")),
        ("a.b.shop.svc", "cluster.local", Some("shop")),
        // Whether or not the Service exists yet.
        ("later.shop.svc", "cluster.local", Some("shop")),
        // Another domain: the default one is an ordinary name there.
        ("orders.shop.svc.cluster.local", "corp.example", None),
        ("orders.shop.svc.corp.example", "corp.example", Some("shop")),
        // Two labels: reserved only while the Service exists.
        ("orders.shop", "cluster.local", Some("shop")),
        ("payments.shop", "cluster.local", None),
        ("example.com", "cluster.local", None),
        // Not a Service name: no label before the namespace, or no `.svc`.
        ("shop.svc", "cluster.local", None),
        ("orders.shop.example", "cluster.local", None),
    ];
    for (host, domain, want) in cases {
        assert_eq!(
            owning_namespace(host, domain, &index.endpoints),
            want,
            "owner of {host} with cluster domain {domain}"
        );
    }
}

#[test]
fn a_service_name_of_another_namespace_is_not_permitted() {
    let mut index = Index::new();
    index.apply_service(&service_in("shop", "orders"));
    // Older than every rightful claimant: age never protects a forbidden claim.
    index.apply_route(&route_in(
        "intruder",
        "grab",
        &[
            "orders.shop.svc.cluster.local",
            "orders.shop",
            "grab.example",
        ],
        1,
    ));
    let (hosts, reason, message) = outcome(&index, "intruder", "grab");
    assert_eq!(hosts, ["grab.example"], "keeps its other hosts");
    assert_eq!(reason, Reason::HostNotPermitted);
    assert_eq!(
        message,
        "host orders.shop.svc.cluster.local is a Service name of namespace shop: only \
         Routes in shop may claim it; host orders.shop is a Service name of namespace \
         shop: only Routes in shop may claim it"
    );
    let status = index.status(&key("intruder", "grab")).expect("status");
    assert_eq!(status.accepted.status, ConditionStatus::False);

    // A newer Route in the owning namespace gets the names; the intruder is no contest.
    index.apply_route(&route_in(
        "shop",
        "orders",
        &["orders.shop.svc.cluster.local", "orders.shop"],
        9,
    ));
    let (hosts, reason, _) = outcome(&index, "shop", "orders");
    assert_eq!(hosts, ["orders.shop.svc.cluster.local", "orders.shop"]);
    assert_eq!(reason, Reason::Accepted);
}

#[test]
fn a_two_label_name_is_re_decided_when_its_service_comes_and_goes() {
    let mut index = Index::new();
    index.apply_route(&route_in("web", "site", &["orders.shop", "site.web"], 1));
    assert_eq!(
        outcome(&index, "web", "site").0,
        ["orders.shop", "site.web"],
        "no Service orders in shop: an outside name anyone may claim"
    );

    let changes = index.apply_service(&service_in("shop", "orders"));
    assert!(
        changes.routes.contains(&key("web", "site")),
        "a Service event re-decides the Routes claiming its two-label name"
    );
    let (hosts, reason, message) = outcome(&index, "web", "site");
    assert_eq!(hosts, ["site.web"]);
    assert_eq!(reason, Reason::HostNotPermitted);
    assert!(message.contains("namespace shop"), "{message}");

    index.delete_service(&service_in("shop", "orders"));
    let (hosts, reason, _) = outcome(&index, "web", "site");
    assert_eq!(hosts, ["orders.shop", "site.web"]);
    assert_eq!(reason, Reason::Accepted);
}

#[test]
fn the_cluster_domain_decides_which_long_names_are_reserved() {
    let mut index = Index::with_cluster_domain("corp.example");
    let hosts = [
        "orders.shop.svc.cluster.local",
        "orders.shop.svc.corp.example",
    ];
    index.apply_route(&route_in("web", "site", &hosts, 1));
    let (hosts, reason, message) = outcome(&index, "web", "site");
    assert_eq!(hosts, ["orders.shop.svc.cluster.local"]);
    assert_eq!(reason, Reason::HostNotPermitted);
    assert!(message.starts_with("host orders.shop.svc.corp.example "));
}

#[test]
fn contests_between_permitted_claims() {
    // (description, claims as (namespace, name, created), winner, loser's message)
    let cases = [
        (
            "the older route wins",
            [("shop", "b", 1), ("shop", "a", 5)],
            ("shop", "b"),
            "host same.example is served by older route shop/b",
        ),
        (
            "a same-second tie goes by namespace/name and never says older",
            [("shop", "b", 7), ("shop", "a", 7)],
            ("shop", "a"),
            "host same.example is served by route shop/a, created in the same second: \
             the tie is broken by namespace/name",
        ),
        (
            "namespaces order before names",
            [("a-ns", "z", 7), ("b-ns", "a", 7)],
            ("a-ns", "z"),
            "host same.example is served by route a-ns/z, created in the same second: \
             the tie is broken by namespace/name",
        ),
    ];
    for (description, claims, winner, message) in cases {
        let mut index = Index::new();
        for (namespace, name, created) in claims {
            index.apply_route(&route_in(namespace, name, &["same.example"], created));
        }
        let (loser_ns, loser) = claims
            .iter()
            .map(|(ns, n, _)| (*ns, *n))
            .find(|c| *c != winner)
            .expect("two claims");
        let (hosts, reason, _) = outcome(&index, winner.0, winner.1);
        assert_eq!(
            (hosts, reason),
            (vec!["same.example".to_owned()], Reason::Accepted),
            "{description}: winner"
        );
        let (hosts, reason, got) = outcome(&index, loser_ns, loser);
        assert!(hosts.is_empty(), "{description}: the loser serves nothing");
        assert_eq!(reason, Reason::HostConflict, "{description}");
        assert_eq!(got, message, "{description}");
    }
}

#[test]
fn the_same_second_is_a_tie_even_when_timestamps_differ_below_it() {
    let mut index = Index::new();
    let mut early = route_in("shop", "b", &["same.example"], 7);
    let mut late = route_in("shop", "a", &["same.example"], 7);
    let at = |ms: i64| {
        Some(Time(
            Timestamp::from_millisecond(7_000 + ms).expect("valid"),
        ))
    };
    // The apiserver stores whole seconds; a static file may not. Either way, within one
    // second nobody can say which came first.
    early.metadata.creation_timestamp = at(100);
    late.metadata.creation_timestamp = at(900);
    index.apply_route(&early);
    index.apply_route(&late);
    assert_eq!(outcome(&index, "shop", "a").1, Reason::Accepted, "by name");
    let (_, reason, message) = outcome(&index, "shop", "b");
    assert_eq!(reason, Reason::HostConflict);
    assert!(
        message.contains("tie is broken by namespace/name") && !message.contains("older"),
        "{message}"
    );
}
