//! Services and EndpointSlices into endpoint sets.

use std::collections::BTreeSet;

use fairway_proto::model::Endpoint;
use k8s_openapi::api::core::v1::ObjectReference;

use super::*;
use crate::crd::EndpointCounts;
use crate::index::Changes;

#[test]
fn service_port_by_number_maps_to_the_slice_port_with_its_name() {
    let mut index = orders_index();
    // A second slice port with another name must not be picked for `http`.
    let pods = vec![ep("10.0.0.3")];
    index.apply_slice(&slice(
        "orders-b",
        "orders",
        &[("admin", 7000), ("http", 9090)],
        pods,
    ));
    let set = orders_set(&index);
    assert_eq!(
        addrs(set),
        ["10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090"],
        "pods listen on the slice port named like the Service port, not on 8080 or 7000"
    );
    assert_eq!(
        set.key,
        set_key("orders", 8080),
        "keyed by the Service port"
    );
}

#[test]
fn service_port_by_name_resolves_to_its_number() {
    let mut index = orders_index();
    index.apply_route(&route(
        "by-name",
        &["named.shop"],
        "orders",
        named("http"),
        2,
    ));
    let table = index.table();
    let backends = &table.routes[&route_key("by-name")].rules[0].backends;
    assert_eq!(backends[0].endpoint_set, set_key("orders", 8080));
    assert_eq!(table.endpoint_sets.len(), 1, "both routes share one set");
}

#[test]
fn unnamed_service_port_maps_to_the_unnamed_slice_port() {
    let mut index = Index::new();
    index.apply_route(&route("plain", &["plain.shop"], "plain", num(80), 1));
    index.apply_service(&service("plain", &[("", 80)]));
    let pods = vec![ep("10.0.1.1")];
    index.apply_slice(&slice("plain-a", "plain", &[("", 8080)], pods.clone()));
    // A slice with only a named port has nothing for the unnamed Service port.
    index.apply_slice(&slice(
        "plain-b",
        "plain",
        &[("http", 8081)],
        vec![ep("10.0.1.2")],
    ));
    let set = &index.table().endpoint_sets[&set_key("plain", 80)];
    assert_eq!(addrs(set), ["10.0.1.1:8080"]);
}

#[test]
fn slices_of_a_service_merge_and_are_found_by_label() {
    let mut index = orders_index();
    let other = vec![ep("10.0.0.3")];
    index.apply_slice(&slice("orders-b", "orders", &[("http", 9090)], other));
    // Labelled for another Service, or not labelled: not part of `orders`.
    let stranger = vec![ep("10.9.9.9")];
    index.apply_slice(&slice(
        "billing-a",
        "billing",
        &[("http", 9090)],
        stranger.clone(),
    ));
    let mut unlabelled = slice("orders-x", "orders", &[("http", 9090)], stranger);
    unlabelled.metadata.labels = None;
    index.apply_slice(&unlabelled);
    assert_eq!(
        addrs(orders_set(&index)),
        ["10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090"]
    );

    index.delete_slice(&slice("orders-a", "orders", &[], vec![]));
    assert_eq!(addrs(orders_set(&index)), ["10.0.0.3:9090"]);
}

#[test]
fn relabelling_a_slice_moves_its_endpoints_to_the_other_service() {
    let mut index = orders_index();
    index.apply_route(&route(
        "billing",
        &["billing.shop"],
        "billing",
        num(8080),
        2,
    ));
    index.apply_service(&service("billing", &[("http", 8080)]));
    let pods = vec![ep("10.0.0.1"), ep("10.0.0.2")];
    let changes = index.apply_slice(&slice("orders-a", "billing", &[("http", 9090)], pods));
    assert_eq!(
        changes.endpoint_sets,
        BTreeSet::from([set_key("billing", 8080), set_key("orders", 8080)])
    );
    assert!(orders_set(&index).endpoints.is_empty());
    let billing = &index.table().endpoint_sets[&set_key("billing", 8080)];
    assert_eq!(billing.endpoints.len(), 2);
}

#[test]
fn an_address_listed_twice_appears_once_with_its_most_usable_conditions() {
    let mut index = orders_index();
    let stale = vec![ep_with("10.0.0.1", Some(false), Some(false), Some(true))];
    index.apply_slice(&slice("orders-0", "orders", &[("http", 9090)], stale));
    let twice = vec![ep("10.0.0.3"), ep("10.0.0.3")];
    index.apply_slice(&slice("orders-b", "orders", &[("http", 9090)], twice));
    let set = orders_set(&index);
    assert_eq!(
        addrs(set),
        ["10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090"]
    );
    assert!(
        set.endpoints[&addr("10.0.0.1:9090")].ready,
        "the ready listing wins"
    );
    let counts = index
        .status(&route_key("orders"))
        .expect("status")
        .endpoints;
    assert_eq!(counts.total, 3, "duplicates are counted once");
}

#[test]
fn unset_conditions_follow_the_api_defaults() {
    let mut index = orders_index();
    let pods = vec![
        ep("10.0.0.1"),                                     // all unset: ready, serving
        ep_with("10.0.0.2", Some(false), None, None),       // serving unset = ready = false
        ep_with("10.0.0.3", Some(true), None, Some(false)), // serving unset = ready = true
    ];
    index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    let set = orders_set(&index);
    let one = &set.endpoints[&addr("10.0.0.1:9090")];
    assert!(one.ready && one.serving && !one.terminating);
    assert!(
        !set.endpoints.contains_key(&addr("10.0.0.2:9090")),
        "not ready and (by default) not serving: dropped"
    );
    assert!(set.endpoints[&addr("10.0.0.3:9090")].serving);
}

#[test]
fn serving_terminating_endpoints_are_kept_as_terminating() {
    let mut index = orders_index();
    let pods = vec![
        ep("10.0.0.1"),
        ep_with("10.0.0.2", Some(false), Some(true), Some(true)),
    ];
    index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    let draining = &orders_set(&index).endpoints[&addr("10.0.0.2:9090")];
    assert_eq!(
        (draining.ready, draining.serving, draining.terminating),
        (false, true, true),
        "kept for the KEP-1669 fallback"
    );
}

#[test]
fn endpoints_neither_ready_nor_serving_are_dropped_but_counted() {
    let mut index = orders_index();
    let pods = vec![
        ep("10.0.0.1"),
        ep_with("10.0.0.2", Some(false), Some(true), Some(true)),
        ep_with("10.0.0.3", Some(false), Some(false), Some(false)),
        ep_with("10.0.0.4", Some(false), Some(false), Some(true)),
    ];
    index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    assert_eq!(
        addrs(orders_set(&index)),
        ["10.0.0.1:9090", "10.0.0.2:9090"]
    );
    let counts = index
        .status(&route_key("orders"))
        .expect("status")
        .endpoints;
    assert_eq!(
        counts,
        EndpointCounts {
            ready: 1,
            serving: 2,
            total: 4
        }
    );
}

#[test]
fn ipv4_and_ipv6_slices_both_count_and_fqdn_slices_do_not() {
    let mut index = orders_index();
    let mut v6 = slice(
        "orders-v6",
        "orders",
        &[("http", 9090)],
        vec![ep("fd00::1")],
    );
    v6.address_type = "IPv6".to_owned();
    index.apply_slice(&v6);
    let mut fqdn = slice(
        "orders-dns",
        "orders",
        &[("http", 9090)],
        vec![ep("pod.example")],
    );
    fqdn.address_type = "FQDN".to_owned();
    index.apply_slice(&fqdn);
    // An IPv6 address in an IPv4 slice is malformed: skipped.
    let wrong = vec![ep("fd00::2"), ep("not-an-ip")];
    index.apply_slice(&slice("orders-bad", "orders", &[("http", 9090)], wrong));
    assert_eq!(
        addrs(orders_set(&index)),
        ["10.0.0.1:9090", "10.0.0.2:9090", "[fd00::1]:9090"]
    );
}

#[test]
fn zone_node_pod_and_hints_are_carried() {
    let mut index = orders_index();
    let mut not_a_pod = ep("10.0.0.2");
    not_a_pod.target_ref = Some(ObjectReference {
        kind: Some("Node".to_owned()),
        name: Some("gateway-vm".to_owned()),
        ..ObjectReference::default()
    });
    let pods = vec![
        ep_placed(
            "10.0.0.1",
            "zone-a",
            "node-1",
            "orders-7d9f",
            &["zone-a", "zone-b"],
        ),
        not_a_pod,
    ];
    index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    let set = orders_set(&index);
    let placed = &set.endpoints[&addr("10.0.0.1:9090")];
    assert_eq!(
        placed,
        &Endpoint {
            addr: addr("10.0.0.1:9090"),
            ready: true,
            serving: true,
            terminating: false,
            zone: Some("zone-a".to_owned()),
            node: Some("node-1".to_owned()),
            pod: Some("orders-7d9f".to_owned()),
            hints_for_zones: vec!["zone-a".to_owned(), "zone-b".to_owned()],
            hints_for_nodes: vec!["node-1".to_owned()],
        }
    );
    assert_eq!(
        set.endpoints[&addr("10.0.0.2:9090")].pod,
        None,
        "a targetRef that is not a Pod names no pod"
    );
}

#[test]
fn app_protocol_of_the_service_port_is_carried() {
    let mut index = orders_index();
    let mut grpc = service("orders", &[("http", 8080)]);
    let ports = grpc
        .spec
        .as_mut()
        .and_then(|s| s.ports.as_mut())
        .expect("ports");
    ports[0].app_protocol = Some("kubernetes.io/h2c".to_owned());
    index.apply_service(&grpc);
    assert_eq!(
        orders_set(&index).app_protocol.as_deref(),
        Some("kubernetes.io/h2c")
    );
}

#[test]
fn non_tcp_ports_are_ignored() {
    let mut index = Index::new();
    index.apply_route(&route("dns", &["dns.shop"], "dns", num(53), 1));
    let mut udp = service("dns", &[("dns", 53)]);
    let ports = udp
        .spec
        .as_mut()
        .and_then(|s| s.ports.as_mut())
        .expect("ports");
    ports[0].protocol = Some("UDP".to_owned());
    index.apply_service(&udp);
    assert!(index.table().endpoint_sets.is_empty());
    let status = index.status(&route_key("dns")).expect("status");
    assert_eq!(
        status.resolved_refs.reason,
        crate::index::Reason::PortNotFound
    );
}

#[test]
fn a_service_without_slices_has_an_empty_present_set() {
    let mut index = Index::new();
    index.apply_route(&route("orders", &["orders.shop"], "orders", num(8080), 1));
    index.apply_service(&service("orders", &[("http", 8080)]));
    let set = orders_set(&index);
    assert!(set.endpoints.is_empty(), "known Service, no pods yet");
}

#[test]
fn a_slice_change_rebuilds_only_its_services_sets() {
    let mut index = orders_index();
    index.apply_route(&route("billing", &["billing.shop"], "billing", num(80), 2));
    index.apply_service(&service("billing", &[("", 80)]));
    index.apply_route(&route("both", &["both.shop"], "orders", num(8080), 3));
    let pods = vec![ep("10.0.0.1"), ep("10.0.0.3")];
    let changes = index.apply_slice(&slice("orders-a", "orders", &[("http", 9090)], pods));
    assert_eq!(
        changes,
        Changes {
            routes: [route_key("both"), route_key("orders")].into(),
            endpoint_sets: [set_key("orders", 8080)].into(),
        },
        "billing is untouched; the routes listed are the set's users (their counts moved)"
    );
    // A slice of a Service no Route uses changes nothing.
    let unused = index.apply_slice(&slice("cart-a", "cart", &[("", 80)], vec![ep("10.0.2.1")]));
    assert!(unused.is_empty(), "{unused:?}");
}

#[test]
fn endpoint_sets_are_shared_and_leave_with_their_last_user() {
    let mut index = orders_index();
    index.apply_route(&route(
        "orders-too",
        &["orders2.shop"],
        "orders",
        num(8080),
        2,
    ));
    assert_eq!(
        index.table().endpoint_sets.len(),
        1,
        "one set for two routes"
    );

    index.delete_route(&route("orders", &[], "orders", num(8080), 1));
    assert!(
        index
            .table()
            .endpoint_sets
            .contains_key(&set_key("orders", 8080))
    );
    let changes = index.delete_route(&route("orders-too", &[], "orders", num(8080), 2));
    assert!(
        index.table().endpoint_sets.is_empty(),
        "no Route uses orders:8080 any more"
    );
    assert!(changes.endpoint_sets.contains(&set_key("orders", 8080)));
    assert!(index.table().routes.is_empty());
}

#[test]
fn sets_appear_only_when_referenced() {
    let mut index = Index::new();
    index.apply_service(&service("orders", &[("http", 8080)]));
    index.apply_slice(&slice(
        "orders-a",
        "orders",
        &[("http", 9090)],
        vec![ep("10.0.0.1")],
    ));
    assert!(
        index.table().endpoint_sets.is_empty(),
        "no Route uses orders yet"
    );
    index.apply_route(&route("orders", &["orders.shop"], "orders", num(8080), 1));
    assert_eq!(addrs(orders_set(&index)), ["10.0.0.1:9090"]);
}

/// `orders` with these ClusterIPs (`clusterIPs`, and `clusterIP` as the apiserver
/// fills it: the first of them).
fn orders_with_ips(ips: &[&str]) -> k8s_openapi::api::core::v1::Service {
    let mut svc = service("orders", &[("http", 8080)]);
    let spec = svc.spec.as_mut().expect("spec");
    spec.cluster_ip = ips.first().map(|ip| (*ip).to_owned());
    spec.cluster_ips = Some(ips.iter().map(|ip| (*ip).to_owned()).collect());
    svc
}

#[test]
fn a_services_cluster_ips_travel_with_its_sets_for_sidecars() {
    let mut index = orders_index();
    assert!(
        orders_set(&index).cluster_ips.is_empty(),
        "no ClusterIP yet"
    );

    let changes = index.apply_service(&orders_with_ips(&["fd00::10", "10.96.0.10"]));
    assert!(changes.endpoint_sets.contains(&set_key("orders", 8080)));
    let ips: Vec<String> = orders_set(&index)
        .cluster_ips
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(ips, ["10.96.0.10", "fd00::10"], "both families, sorted");

    // Headless: `None` is no address, so a sidecar passes such connections through.
    index.apply_service(&orders_with_ips(&["None"]));
    assert!(orders_set(&index).cluster_ips.is_empty());
}
