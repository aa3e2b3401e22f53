//! Implicit Routes: Services served without a Route (issue 17, design.md 9).

use super::*;
use crate::index::IMPLICIT_LABEL;

fn labelled(mut svc: Service) -> Service {
    svc.metadata.labels = Some([(IMPLICIT_LABEL.to_owned(), "enabled".to_owned())].into());
    svc
}

fn with_ip(mut svc: Service, ip: &str) -> Service {
    let spec = svc.spec.as_mut().expect("spec");
    spec.cluster_ip = Some(ip.to_owned());
    spec.cluster_ips = Some(vec![ip.to_owned()]);
    svc
}

fn implicit_key(name: &str) -> RouteKey {
    RouteKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn billing_index(all: bool, svc: Service) -> Index {
    let mut index = Index::new().with_implicit_services(all);
    index.apply_service(&svc);
    index.apply_slice(&slice(
        "billing-a",
        "billing",
        &[("http", 9090)],
        vec![ep("10.0.1.1")],
    ));
    index
}

#[test]
fn a_labelled_service_answers_for_its_names_and_cluster_ip_with_the_port() {
    let svc = with_ip(
        labelled(service("billing", &[("http", 8080), ("admin", 9000)])),
        "10.96.0.20",
    );
    let index = billing_index(false, svc);
    let route = index
        .table()
        .routes
        .get(&implicit_key("billing:8080"))
        .expect("implicit Route");
    assert_eq!(
        route.hosts,
        [
            "billing.shop:8080",
            "billing.shop.svc:8080",
            "billing.shop.svc.cluster.local:8080",
            "10.96.0.20:8080"
        ]
    );
    assert_eq!(
        route.rules[0].backends[0].endpoint_set,
        set_key("billing", 8080)
    );
    assert_eq!(route.load_balancer, Default::default(), "default settings");
    assert!(
        index
            .table()
            .routes
            .contains_key(&implicit_key("billing:9000")),
        "one per port"
    );
    let set = index
        .table()
        .endpoint_sets
        .get(&set_key("billing", 8080))
        .expect("its set is sent");
    assert_eq!(addrs(set), ["10.0.1.1:9090"]);
    assert!(
        index.statuses().is_empty(),
        "no Route object, so no status to write"
    );
}

#[test]
fn services_are_implicit_only_when_labelled_or_with_the_flag() {
    let plain = service("billing", &[("http", 8080)]);
    let index = billing_index(false, plain.clone());
    assert!(index.table().routes.is_empty(), "off by default");
    assert!(index.table().endpoint_sets.is_empty());
    let index = billing_index(true, plain);
    assert!(
        index
            .table()
            .routes
            .contains_key(&implicit_key("billing:8080")),
        "--implicit-services"
    );
}

#[test]
fn dropping_the_label_or_the_service_takes_its_routes_and_unused_sets_out() {
    let mut index = billing_index(false, labelled(service("billing", &[("http", 8080)])));
    let changes = index.apply_service(&service("billing", &[("http", 8080)]));
    assert!(changes.routes.contains(&implicit_key("billing:8080")));
    assert!(index.table().routes.is_empty());
    assert!(index.table().endpoint_sets.is_empty(), "no user left");

    let mut index = billing_index(false, labelled(service("billing", &[("http", 8080)])));
    index.delete_service(&labelled(service("billing", &[("http", 8080)])));
    assert!(index.table().routes.is_empty());
}

#[test]
fn an_explicit_route_shares_the_set_and_keeps_it_when_the_implicit_one_goes() {
    let mut index = orders_index();
    index.apply_service(&labelled(service("orders", &[("http", 8080)])));
    assert!(
        index
            .table()
            .routes
            .contains_key(&implicit_key("orders:8080"))
    );
    assert!(
        index.table().routes.contains_key(&route_key("orders")),
        "the explicit Route stays"
    );
    index.apply_service(&service("orders", &[("http", 8080)]));
    assert!(
        !index
            .table()
            .routes
            .contains_key(&implicit_key("orders:8080"))
    );
    assert_eq!(
        addrs(orders_set(&index)),
        ["10.0.0.1:9090", "10.0.0.2:9090"],
        "still used by the Route"
    );
}

#[test]
fn a_relist_rebuilds_the_implicit_routes() {
    let mut index = Index::new().with_implicit_services(true);
    index.replace_services([service("billing", &[("http", 8080)])]);
    assert!(
        index
            .table()
            .routes
            .contains_key(&implicit_key("billing:8080"))
    );
    index.replace_services(Vec::<Service>::new());
    assert!(index.table().routes.is_empty());
}

#[test]
fn a_labelled_namespace_serves_each_of_its_services_until_the_label_goes() {
    let plain = || service("billing", &[("http", 8080)]);
    let mut index = billing_index(false, plain());
    let key = implicit_key("billing:8080");
    assert!(!index.table().routes.contains_key(&key), "not opted in");

    let changes = index.set_namespace_opt_in("shop", true);
    assert!(changes.routes.contains(&key), "{changes:?}");
    assert!(
        changes.endpoint_sets.contains(&set_key("billing", 8080)),
        "its set is served with it: {changes:?}"
    );
    assert!(index.table().routes.contains_key(&key));
    assert!(
        index.set_namespace_opt_in("shop", true).routes.is_empty(),
        "the same label again changes nothing"
    );
    assert!(
        index.set_namespace_opt_in("other", true).routes.is_empty(),
        "another namespace's label leaves this one's Services alone"
    );

    // A Service created later in the namespace is implicit at once.
    index.apply_service(&service("orders", &[("http", 8080)]));
    let orders = implicit_key("orders:8080");
    assert!(index.table().routes.contains_key(&orders));

    let changes = index.set_namespace_opt_in("shop", false);
    assert!(changes.routes.contains(&key) && changes.routes.contains(&orders));
    assert!(!index.table().routes.contains_key(&key));
    assert!(!index.table().routes.contains_key(&orders));
}

#[test]
fn a_relist_of_namespaces_changes_only_those_that_left_or_joined() {
    let mut index = billing_index(false, service("billing", &[("http", 8080)]));
    let key = implicit_key("billing:8080");
    index.replace_namespace_opt_ins(["shop".to_owned()].into());
    assert!(index.table().routes.contains_key(&key));
    let again = index.replace_namespace_opt_ins(["shop".to_owned(), "other".to_owned()].into());
    assert!(again.routes.is_empty(), "{again:?}");
    index.replace_namespace_opt_ins(["other".to_owned()].into());
    assert!(!index.table().routes.contains_key(&key), "shop left");
}

#[test]
fn a_labelled_service_stays_implicit_when_its_namespace_leaves() {
    let mut index = billing_index(false, labelled(service("billing", &[("http", 8080)])));
    index.set_namespace_opt_in("shop", true);
    index.set_namespace_opt_in("shop", false);
    assert!(
        index
            .table()
            .routes
            .contains_key(&implicit_key("billing:8080")),
        "its own label still opts it in"
    );
}
