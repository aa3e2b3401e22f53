//! Computed statuses and their conversion to the Route's `status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::EndpointCounts;
use crate::index::{ACCEPTED, ConditionStatus, RESOLVED_REFS, Reason};

fn time(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("valid"))
}

#[test]
fn counts_sum_over_distinct_sets() {
    let mut index = orders_index();
    index.apply_route(&route("billing", &["billing.shop"], "billing", num(80), 2));
    index.apply_service(&service("billing", &[("", 80)]));
    index.apply_slice(&slice(
        "billing-a",
        "billing",
        &[("", 8080)],
        vec![ep("10.0.1.1")],
    ));
    let mut both = route("both", &["both.shop"], "orders", num(8080), 3);
    both.spec.rules[0]
        .backends
        .push(backend("billing", num(80), 0));
    // The same set twice counts once.
    both.spec.rules[0]
        .backends
        .push(backend("orders", named("http"), 5));
    index.apply_route(&both);
    let counts = index.status(&route_key("both")).expect("status").endpoints;
    assert_eq!(
        counts,
        EndpointCounts {
            ready: 3,
            serving: 3,
            total: 3
        }
    );
}

#[test]
fn routes_out_of_the_table_count_nothing() {
    let mut index = orders_index();
    index.apply_route(&route("loser", &["orders.shop"], "orders", num(8080), 9));
    let status = index.status(&route_key("loser")).expect("status");
    assert_eq!(status.endpoints, EndpointCounts::default());
}

#[test]
fn statuses_cover_every_route_with_its_generation() {
    let mut index = orders_index();
    let mut broken = route("broken", &["broken.shop"], "orders", num(8080), 2);
    broken.spec.upstream.idle_timeout = "forever".to_owned();
    broken.metadata.generation = Some(4);
    index.apply_route(&broken);
    let all = index.statuses();
    let names: Vec<_> = all.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["broken", "orders"]);
    assert_eq!(all[&route_key("broken")].observed_generation, Some(4));
    assert_eq!(all[&route_key("orders")].observed_generation, Some(1));
}

#[test]
fn route_status_has_both_conditions_and_keeps_unmoved_transition_times() {
    let mut index = Index::new();
    index.apply_route(&route("orders", &["orders.shop"], "orders", num(8080), 1));
    let computed = index.status(&route_key("orders")).expect("status");
    let first = computed.to_route_status(None, &time(100));
    let summary: Vec<_> = (first.conditions.iter())
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (ACCEPTED, "True", "Accepted"),
            (RESOLVED_REFS, "False", "ServiceNotFound")
        ]
    );
    assert!(
        first
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
    assert_eq!(first.observed_generation, Some(1));
    assert_eq!(first.endpoints, Some(EndpointCounts::default()));

    index.apply_service(&service("orders", &[("http", 8080)]));
    let computed = index.status(&route_key("orders")).expect("status");
    let second = computed.to_route_status(Some(&first), &time(200));
    let times: Vec<_> = (second.conditions.iter())
        .map(|c| (c.type_.as_str(), c.last_transition_time.clone()))
        .collect();
    assert_eq!(
        times,
        [(ACCEPTED, time(100)), (RESOLVED_REFS, time(200))],
        "Accepted did not move; ResolvedRefs flipped to True at 200"
    );
}

#[test]
fn reasons_and_statuses_spell_as_kubernetes_expects() {
    let all = [
        (Reason::Accepted, "Accepted"),
        (Reason::InvalidSpec, "InvalidSpec"),
        (Reason::HostConflict, "HostConflict"),
        (Reason::HostNotPermitted, "HostNotPermitted"),
        (Reason::ResolvedRefs, "ResolvedRefs"),
        (Reason::ServiceNotFound, "ServiceNotFound"),
        (Reason::PortNotFound, "PortNotFound"),
    ];
    for (reason, text) in all {
        assert_eq!(reason.as_str(), text);
    }
    assert_eq!(ConditionStatus::Unknown.as_str(), "Unknown");
}

#[test]
fn a_missing_service_outranks_a_missing_port_and_all_are_named() {
    let mut index = orders_index();
    let mut two = route("two", &["two.shop"], "orders", num(1), 2);
    two.spec.rules[0]
        .backends
        .push(backend("ghost", num(80), 1));
    index.apply_route(&two);
    let refs = index
        .status(&route_key("two"))
        .expect("status")
        .resolved_refs;
    assert_eq!(refs.reason, Reason::ServiceNotFound);
    assert_eq!(
        refs.message,
        "service shop/orders has no TCP port 1; service shop/ghost not found"
    );
}
